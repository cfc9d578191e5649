//! Side-by-side comparison of two benchmark reports (pio against a reference engine).

use std::fmt::Write;

use super::report::BenchReport;

/// Reports of the same engine (e.g. one HF transformers run per model) as one report each:
/// the first report of an engine, with the models of the later ones appended (in order).
pub fn merge_by_engine(reports: Vec<BenchReport>) -> Vec<BenchReport> {
    let mut merged: Vec<BenchReport> = Vec::new();
    for r in reports {
        match merged.iter_mut().find(|m| m.engine == r.engine) {
            Some(m) => m.models.extend(r.models),
            None => merged.push(r),
        }
    }
    merged
}

/// `ours / theirs`, or a dash when `theirs` is not a positive number.
fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && theirs.is_finite() && ours.is_finite() {
        format!("{:.2}x", ours / theirs)
    } else {
        "–".into()
    }
}

/// A markdown table of the medians of both reports, per model present in both (matched by
/// `model`, in `ours`'s order): decode tokens/s at every context both measured, then prefill
/// tokens/s at every prompt length both measured, with the ratio ours/theirs.
pub fn ratio_table(ours: &BenchReport, theirs: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}) vs {} ({}); medians, ratio = {} / {}\n",
        ours.engine,
        ours.machine.device,
        theirs.engine,
        theirs.machine.device,
        ours.engine,
        theirs.engine
    );
    let _ = writeln!(
        out,
        "| model | figure | tokens | {} (tokens/s) | {} (tokens/s) | ratio |",
        ours.engine, theirs.engine
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    let mut rows = 0;
    for m in &ours.models {
        let Some(t) = theirs.models.iter().find(|t| t.model == m.model) else {
            continue;
        };
        for d in &m.decode {
            if let Some(td) = t.decode.iter().find(|td| td.context == d.context) {
                let (a, b) = (d.tokens_per_s.median, td.tokens_per_s.median);
                let _ = writeln!(
                    out,
                    "| {} | decode at context | {} | {:.1} | {:.1} | {} |",
                    m.model,
                    d.context,
                    a,
                    b,
                    ratio(a, b)
                );
                rows += 1;
            }
        }
        for p in &m.prefill {
            if let Some(tp) = t.prefill.iter().find(|tp| tp.prompt_len == p.prompt_len) {
                let (a, b) = (p.tokens_per_s.median, tp.tokens_per_s.median);
                let _ = writeln!(
                    out,
                    "| {} | prefill of prompt | {} | {:.1} | {:.1} | {} |",
                    m.model,
                    p.prompt_len,
                    a,
                    b,
                    ratio(a, b)
                );
                rows += 1;
            }
        }
    }
    if rows == 0 {
        let _ = writeln!(
            out,
            "\n(no model, context or prompt length measured by both)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plot::tests::sample_report;
    use crate::bench::report::Stat;

    #[test]
    fn ratio_table_matches_models_and_points() {
        let ours = sample_report(
            "pio",
            &["Qwen3-0.6B", "Qwen3-4B-Instruct-2507"],
            900.0,
            Some(2540.0),
        );
        let mut theirs = sample_report(
            "hf-transformers-compile",
            &["Qwen3-0.6B", "Qwen3-1.7B"],
            300.0,
            None,
        );
        // Theirs measured context 1024 and prompt 512 only; set known medians.
        let m = &mut theirs.models[0];
        m.decode.retain(|d| d.context == 1024);
        m.decode[0].tokens_per_s = Stat::of(&[200.0]);
        m.prefill.retain(|p| p.prompt_len == 512);
        m.prefill[0].tokens_per_s = Stat::of(&[0.0]);
        let ours_decode = ours.models[0]
            .decode
            .iter()
            .find(|d| d.context == 1024)
            .unwrap()
            .tokens_per_s
            .median;
        let ours_prefill = ours.models[0]
            .prefill
            .iter()
            .find(|p| p.prompt_len == 512)
            .unwrap()
            .tokens_per_s
            .median;

        let table = ratio_table(&ours, &theirs);
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| Qwen3")).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert_eq!(
            rows[0],
            format!(
                "| Qwen3-0.6B | decode at context | 1024 | {ours_decode:.1} | 200.0 | {:.2}x |",
                ours_decode / 200.0
            )
        );
        assert_eq!(
            rows[1],
            format!("| Qwen3-0.6B | prefill of prompt | 512 | {ours_prefill:.1} | 0.0 | – |")
        );
        assert!(table.contains("| pio (tokens/s) | hf-transformers-compile (tokens/s) | ratio |"));
        assert!(!table.contains("Qwen3-4B") && !table.contains("Qwen3-1.7B"));

        let none = ratio_table(&ours, &sample_report("x", &["Other"], 1.0, None));
        assert!(none.contains("no model"));
    }

    #[test]
    fn reports_of_one_engine_merge_in_order() {
        let merged = merge_by_engine(vec![
            sample_report("hf-transformers-eager", &["Qwen3-0.6B"], 48.0, None),
            sample_report("hf-transformers-compile", &["Qwen3-0.6B"], 318.0, None),
            sample_report(
                "hf-transformers-eager",
                &["Qwen3-4B-Instruct-2507"],
                36.0,
                None,
            ),
        ]);
        let names: Vec<(String, Vec<String>)> = merged
            .iter()
            .map(|r| {
                (
                    r.engine.clone(),
                    r.models.iter().map(|m| m.model.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "hf-transformers-eager".to_string(),
                    vec![
                        "Qwen3-0.6B".to_string(),
                        "Qwen3-4B-Instruct-2507".to_string()
                    ]
                ),
                (
                    "hf-transformers-compile".to_string(),
                    vec!["Qwen3-0.6B".to_string()]
                ),
            ]
        );
    }

    /// The JSON serde writes for a report validates against `benches/bench-schema.json`, and the
    /// schema rejects a report with a missing or mistyped field.
    #[test]
    fn report_json_matches_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/bench-schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();

        for report in [
            sample_report(
                "pio",
                &["Qwen3-0.6B", "Qwen3-4B-Instruct-2507"],
                900.0,
                Some(2540.0),
            ),
            sample_report("hf-transformers-eager", &["Qwen3-0.6B"], 120.0, None),
        ] {
            let json = serde_json::to_value(&report).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{errors:#?}");
        }

        let good = serde_json::to_value(sample_report("pio", &["Qwen3-0.6B"], 900.0, Some(2540.0)))
            .unwrap();
        let mut missing = good.clone();
        missing["models"][0]
            .as_object_mut()
            .unwrap()
            .remove("memory");
        assert!(!validator.is_valid(&missing));
        let mut mistyped = good.clone();
        mistyped["models"][0]["decode"][0]["tokens_per_s"]["median"] = "fast".into();
        assert!(!validator.is_valid(&mistyped));
        let mut extra = good.clone();
        extra["machine"]["gpu_count"] = 1.into();
        assert!(!validator.is_valid(&extra));
        let mut negative = good;
        negative["settings"]["gen"] = (-1).into();
        assert!(!validator.is_valid(&negative));
    }
}
