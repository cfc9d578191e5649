//! `pio bench` and `pio compare`: run or read benchmark reports, print and plot them.

use crate::specs;
use crate::BenchArgs;
use anyhow::{Context, Result};
use pio::{errln, outln, WeightsSource};
use std::path::PathBuf;

pub(crate) fn bench(a: BenchArgs) -> Result<()> {
    use pio::bench::runner::ModelSource;
    if a.mode != crate::BenchMode::Latency {
        return crate::serving::bench_serving(a);
    }
    // Output paths first: a finished benchmark must never be lost to a bad path.
    if let Some(p) = &a.json {
        pio::cli::check_output_file(p, "--json")?;
    }
    if let Some(d) = &a.plots {
        pio::cli::check_output_folder(d, "--plots")?;
    }
    let mut specs = a
        .spec
        .iter()
        .map(|s| specs::source_of(s).map(ModelSource::Spec))
        .collect::<Result<Vec<_>>>()?;
    specs.extend(a.artifact.iter().cloned().map(ModelSource::Artifact));
    if specs.is_empty() {
        // With checkpoint directories in --weights and no spec: one model per checkpoint.
        let weights: Vec<WeightsSource> = a
            .weights
            .iter()
            .map(|w| WeightsSource::from_arg(w, 0))
            .collect();
        for w in &weights {
            specs.push(ModelSource::Spec(specs::spec_source(None, w)?));
        }
        specs.dedup();
        if specs.is_empty() {
            specs.push(ModelSource::Spec(specs::spec_source(
                None,
                &WeightsSource::Random { seed: 0 },
            )?));
        }
    }
    let others = read_reports(&a.compare)?;
    let opts = pio::bench::runner::BenchOptions {
        specs,
        weights: a
            .weights
            .iter()
            .map(|w| WeightsSource::from_arg(w, 0))
            .collect(),
        fit_to_model: a.prompt_len.is_none() && a.context.is_none(),
        prompt_lens: a.prompt_len.unwrap_or_else(|| vec![128, 2048]),
        gen: a.gen,
        contexts: a.context.unwrap_or_else(|| vec![128, 1024, 4096, 16384]),
        repeats: a.repeats,
        warmup: a.warmup,
        device: a.device,
        tensor_parallel: a.tp.map_or(1, |n| n as usize),
        progress: true,
    };
    let report = pio::bench::runner::run(&opts)?;
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        errln!("wrote {}", path.display());
    }
    show(&report, &others, a.plots.as_deref())
}

/// `pio compare`: the same output as `pio bench` from a saved report.
pub(crate) fn compare(
    ours: &std::path::Path,
    others: &[PathBuf],
    plots: Option<&std::path::Path>,
) -> Result<()> {
    if let Some(d) = plots {
        pio::cli::check_output_folder(d, "--plots")?;
    }
    let ours = read_reports(&[ours.to_path_buf()])?.remove(0);
    show(&ours, &read_reports(others)?, plots)
}

/// Reads bench reports (JSON); reports of one engine are merged into one.
fn read_reports(paths: &[PathBuf]) -> Result<Vec<pio::bench::report::BenchReport>> {
    let reports = paths
        .iter()
        .map(|p| {
            let text = pio_artifact::read::read_bounded_text(p, pio_artifact::read::MAX_JSON_BYTES)
                .with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a bench report", p.display()))
        })
        .collect::<Result<_>>()?;
    Ok(pio::bench::compare::merge_by_engine(reports))
}

/// pio's markdown table, a ratio table against each other report, and the plots with all of them.
fn show(
    ours: &pio::bench::report::BenchReport,
    others: &[pio::bench::report::BenchReport],
    plots: Option<&std::path::Path>,
) -> Result<()> {
    outln!("{}", pio::bench::report::markdown(ours))?;
    for other in others {
        outln!(
            "pio vs {}:\n{}",
            other.engine,
            pio::bench::compare::ratio_table(ours, other)
        )?;
    }
    if let Some(dir) = plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut all = vec![ours];
        all.extend(others.iter());
        for f in pio::bench::plot::write_plots(&all, dir)? {
            errln!("wrote {}", f.display());
        }
    }
    Ok(())
}
