//! SVG plots of one or more benchmark reports (pio's and a reference engine's side by side).
//!
//! `decode.svg`: decode tokens/s against the context position, one line per model per engine,
//! plus a dashed line per model at its bandwidth floor. `prefill.svg`: prefill tokens/s against
//! the prompt length (log-scale x when the lengths span more than 10x).

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::report::BenchReport;

/// Why the plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot create the plot directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw {path}: {message}")]
    Draw { path: PathBuf, message: String },
}

/// Size of the plot itself, pixels; the legend column is added to the width.
const WIDTH: u32 = 960;
const HEIGHT: u32 = 640;

/// One line of a chart: its legend label and its points, sorted by x.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
}

/// A horizontal dashed line (a bandwidth floor).
struct Floor {
    label: String,
    y: f64,
    /// Index of the colour of the model's first line, so the floor matches it.
    color: usize,
}

/// Everything one chart needs besides its x coordinate.
struct Chart<'a> {
    path: &'a Path,
    title: String,
    x_label: &'a str,
    y_label: &'a str,
    lines: Vec<Line>,
    floors: Vec<Floor>,
}

/// Writes `decode.svg` and `prefill.svg` under `dir` (created if missing) and returns their paths.
pub fn write_plots(reports: &[&BenchReport], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let devices = device_names(reports);

    // Decode: one line per (model, engine); one floor per model (its first known value).
    let mut decode_lines = Vec::new();
    let mut floors: Vec<Floor> = Vec::new();
    let mut first_line_of_model: Vec<(String, usize)> = Vec::new();
    for r in reports {
        for m in &r.models {
            let mut points: Vec<(f64, f64)> = m
                .decode
                .iter()
                .map(|d| (d.context as f64, d.tokens_per_s.median))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let color = match first_line_of_model
                .iter()
                .find(|(name, _)| *name == m.model)
            {
                Some((_, c)) => *c,
                None => {
                    first_line_of_model.push((m.model.clone(), decode_lines.len()));
                    decode_lines.len()
                }
            };
            let floor = m.decode.iter().find_map(|d| d.bandwidth_floor_tokens_per_s);
            if let Some(y) = floor.filter(|y| y.is_finite()) {
                let label = format!("{} bandwidth floor", m.model);
                if !floors.iter().any(|f| f.label == label) {
                    floors.push(Floor { label, y, color });
                }
            }
            decode_lines.push(Line {
                label: format!("{} ({})", m.model, r.engine),
                points,
            });
        }
    }

    let mut prefill_lines = Vec::new();
    for r in reports {
        for m in &r.models {
            let mut points: Vec<(f64, f64)> = m
                .prefill
                .iter()
                .map(|p| (p.prompt_len as f64, p.tokens_per_s.median))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            prefill_lines.push(Line {
                label: format!("{} ({})", m.model, r.engine),
                points,
            });
        }
    }

    let decode_path = dir.join("decode.svg");
    let decode = Chart {
        path: &decode_path,
        title: format!("Decode speed on {devices}"),
        x_label: "context position (tokens)",
        y_label: "decode (tokens/s)",
        lines: decode_lines,
        floors,
    };
    let (_, hi) = x_extent(&decode.lines);
    draw(&decode, 0.0..pad_hi(hi))?;

    let prefill_path = dir.join("prefill.svg");
    let prefill = Chart {
        path: &prefill_path,
        title: format!("Prefill speed on {devices}"),
        x_label: "prompt length (tokens)",
        y_label: "prefill (tokens/s)",
        lines: prefill_lines,
        floors: Vec::new(),
    };
    let (lo, hi) = x_extent(&prefill.lines);
    if lo > 0.0 && hi > 10.0 * lo {
        // Spans more than a decade: log scale, a little margin on both sides.
        // Ticks at the measured prompt lengths.
        let mut ticks: Vec<f64> = prefill
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .collect();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        draw(
            &prefill,
            (lo / 1.25..hi * 1.25).log_scale().with_key_points(ticks),
        )?;
    } else {
        draw(&prefill, 0.0..pad_hi(hi))?;
    }

    Ok(vec![decode_path, prefill_path])
}

/// The devices of the reports, each once, in order ("unknown device" when there is none).
fn device_names(reports: &[&BenchReport]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        if !names.contains(&r.machine.device.as_str()) {
            names.push(&r.machine.device);
        }
    }
    if names.is_empty() {
        "unknown device".into()
    } else {
        names.join(" / ")
    }
}

/// Smallest and largest x over all lines; (0, 0) when there are no points.
fn x_extent(lines: &[Line]) -> (f64, f64) {
    let xs = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .filter(|x| x.is_finite())
    };
    match (xs().reduce(f64::min), xs().reduce(f64::max)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (0.0, 0.0),
    }
}

/// An upper axis bound a little above `hi` (1 when there is nothing to show).
fn pad_hi(hi: f64) -> f64 {
    if hi > 0.0 {
        hi * 1.05
    } else {
        1.0
    }
}

fn draw_error(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Distinct colours (the "tab10" palette), picked in order per line.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Draws one chart with the given x coordinate (linear or log) and y from 0 up to the largest
/// value (floors included), with the legend in a column right of the plot.
fn draw<X>(c: &Chart, x: X) -> Result<(), PlotError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<std::io::Error>| draw_error(c.path, e);
    let y_max = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(c.floors.iter().map(|f| f.y))
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    // Whole tokens/s for GPU figures, decimals for slow (CPU) ones.
    let y_decimals = if y_max >= 20.0 { 0 } else { 2 };

    // Legend entries: (label, colour, dashed).
    let entries: Vec<(&str, RGBColor, bool)> = c
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.label.as_str(), color(i), false))
        .chain(
            c.floors
                .iter()
                .map(|f| (f.label.as_str(), color(f.color), true)),
        )
        .collect();
    // The naive font metrics (no ttf) are rough: about 7 px a character at 14 px.
    let longest = entries
        .iter()
        .map(|e| e.0.chars().count())
        .max()
        .unwrap_or(0) as u32;
    let legend_w = (longest * 7 + 56).clamp(160, 460);

    let root = SVGBackend::new(c.path, (WIDTH + legend_w, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let body = root.titled(&c.title, ("sans-serif", 24)).map_err(err)?;
    let (plot_area, legend_area) = body.split_horizontally(WIDTH);

    let mut chart = ChartBuilder::on(&plot_area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label)
        .y_desc(c.y_label)
        .axis_desc_style(("sans-serif", 16))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.*}", y_decimals, v))
        .draw()
        .map_err(err)?;

    for (i, line) in c.lines.iter().enumerate() {
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style).point_size(4))
            .map_err(err)?;
    }
    // The x range as plotted, so a floor spans the whole chart.
    let x_range = chart.x_range();
    for floor in &c.floors {
        let ends = [(x_range.start, floor.y), (x_range.end, floor.y)];
        let style = color(floor.color).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(ends, 8, 6, style))
            .map_err(err)?;
    }

    // The legend: a stroke (dashed for floors) and the label, one entry a row.
    let font = ("sans-serif", 14).into_font().color(&BLACK);
    for (i, (label, col, dashed)) in entries.iter().enumerate() {
        let y = 28 + 24 * i as i32;
        let style = col.stroke_width(2);
        if *dashed {
            legend_area
                .draw(&PathElement::new(vec![(8, y), (16, y)], style))
                .map_err(err)?;
            legend_area
                .draw(&PathElement::new(vec![(22, y), (30, y)], style))
                .map_err(err)?;
        } else {
            legend_area
                .draw(&PathElement::new(vec![(8, y), (30, y)], style))
                .map_err(err)?;
            legend_area
                .draw(&Circle::new((19, y), 4, style))
                .map_err(err)?;
        }
        legend_area
            .draw(&Text::new(label.to_string(), (38, y - 8), font.clone()))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::report::{
        BenchReport, DecodeBench, Machine, Memory, ModelBench, PrefillBench, Settings, Stat,
        SCHEMA_VERSION,
    };

    /// A small report: `models` with three prompt lengths and three contexts each.
    pub(crate) fn sample_report(
        engine: &str,
        models: &[&str],
        scale: f64,
        floor: Option<f64>,
    ) -> BenchReport {
        let models = models
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let s = scale / (i + 1) as f64;
                ModelBench {
                    model: name.to_string(),
                    spec: format!("{}.yaml", name.to_lowercase()),
                    params: 596_049_920,
                    weight_bytes: 1_192_099_840,
                    compile_cold_s: 4.2,
                    compile_warm_s: 0.3,
                    load_s: 0.8,
                    prefill: [128usize, 512, 2048]
                        .iter()
                        .map(|&n| PrefillBench {
                            prompt_len: n,
                            ttft_ms: Stat::of(&[n as f64 / 40.0, n as f64 / 38.0]),
                            tokens_per_s: Stat::of(&[s * 40.0 + n as f64, s * 41.0 + n as f64]),
                        })
                        .collect(),
                    decode: [128usize, 1024, 4096]
                        .iter()
                        .map(|&c| DecodeBench {
                            context: c,
                            tokens_per_s: Stat::of(&[
                                s - c as f64 / 100.0,
                                s + 1.0 - c as f64 / 100.0,
                            ]),
                            bandwidth_floor_tokens_per_s: floor.map(|f| f / (i + 1) as f64),
                        })
                        .collect(),
                    memory: Memory {
                        device_in_use: None,
                        peak: 2_000_000_000,
                        weights: 1_192_099_840,
                        kv_cache: 469_762_048,
                        activations: 10_500_000,
                        workspace: 33_554_432,
                    },
                }
            })
            .collect();
        BenchReport {
            schema_version: SCHEMA_VERSION,
            engine: engine.into(),
            machine: Machine {
                device: "NVIDIA H100 80GB HBM3".into(),
                driver: Some("570.86".into()),
                cuda: None,
                commit: Some("a423c55".into()),
                date: "2026-11-26".into(),
                copy_bandwidth_bytes_per_s: floor.map(|_| 3.0e12),
            },
            settings: Settings {
                weights: "random".into(),
                prompt_lens: vec![128, 512, 2048],
                gen: 256,
                contexts: vec![128, 1024, 4096],
                repeats: 3,
                warmup: 1,
                dtype: "bf16".into(),
                batch: 1,
                tensor_parallel: 1,
            },
            models,
        }
    }

    #[test]
    fn writes_decode_and_prefill_svgs() {
        let ours = sample_report(
            "pio",
            &["Qwen3-0.6B", "Qwen3-4B-Instruct-2507"],
            900.0,
            Some(2540.0),
        );
        let theirs = sample_report("hf-transformers-eager", &["Qwen3-0.6B"], 120.0, None);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let paths = write_plots(&[&ours, &theirs], &out).unwrap();
        assert_eq!(paths, vec![out.join("decode.svg"), out.join("prefill.svg")]);

        let decode = std::fs::read_to_string(&paths[0]).unwrap();
        for needle in [
            "context position (tokens)",
            "decode (tokens/s)",
            "NVIDIA H100 80GB HBM3",
            "Qwen3-0.6B (pio)",
            "Qwen3-0.6B (hf-transformers-eager)",
            "Qwen3-4B-Instruct-2507 (pio)",
            "Qwen3-0.6B bandwidth floor",
            "Qwen3-4B-Instruct-2507 bandwidth floor",
        ] {
            assert!(decode.contains(needle), "decode.svg lacks {needle:?}");
        }
        let prefill = std::fs::read_to_string(&paths[1]).unwrap();
        for needle in [
            "prompt length (tokens)",
            "prefill (tokens/s)",
            "NVIDIA H100 80GB HBM3",
            "Qwen3-0.6B (pio)",
            "Qwen3-0.6B (hf-transformers-eager)",
            "Qwen3-4B-Instruct-2507 (pio)",
        ] {
            assert!(prefill.contains(needle), "prefill.svg lacks {needle:?}");
        }
        assert!(!prefill.contains("bandwidth floor"));
    }

    #[test]
    fn empty_and_single_point_reports_still_plot() {
        let mut r = sample_report("pio", &["Qwen3-tiny"], 10.0, None);
        r.models[0].prefill.truncate(1);
        r.models[0].decode.clear();
        let dir = tempfile::tempdir().unwrap();
        let paths = write_plots(&[&r], dir.path()).unwrap();
        assert!(paths.iter().all(|p| p.is_file()));
        let paths = write_plots(&[], dir.path()).unwrap();
        assert!(std::fs::read_to_string(&paths[0])
            .unwrap()
            .contains("unknown device"));
    }
}
