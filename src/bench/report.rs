//! The benchmark report: what `pio bench` measures, as JSON (schema:
//! `benches/bench-schema.json`) and as a markdown table.

use serde::{Deserialize, Serialize};

/// Version of the report format.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole `pio bench` run: the machine, the settings and one entry per spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema_version: u32,
    /// "pio" (or "hf-transformers-eager", "hf-transformers-compile" for the reference script).
    pub engine: String,
    pub machine: Machine,
    pub settings: Settings,
    pub models: Vec<ModelBench>,
}

/// Where the numbers come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// "cpu" or the GPU's name.
    pub device: String,
    pub driver: Option<String>,
    pub cuda: Option<String>,
    /// git commit of the build, when known.
    pub commit: Option<String>,
    pub date: String,
    /// Measured device-to-device copy bandwidth (bytes read + written per second), GPU only.
    pub copy_bandwidth_bytes_per_s: Option<f64>,
}

/// Every setting of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub weights: String,
    pub prompt_lens: Vec<usize>,
    pub gen: usize,
    pub contexts: Vec<usize>,
    pub repeats: usize,
    pub warmup: usize,
    pub dtype: String,
    pub batch: usize,
    /// Tensor-parallel ranks (absent in older reports: 1).
    #[serde(default = "one_rank")]
    pub tensor_parallel: usize,
}

fn one_rank() -> usize {
    1
}

/// A statistic over the repeats.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Median, min and max of `xs` (NaN-free; empty gives zeros).
    pub fn of(xs: &[f64]) -> Stat {
        if xs.is_empty() {
            return Stat {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// One model's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBench {
    pub model: String,
    pub spec: String,
    pub params: u64,
    pub weight_bytes: u64,
    /// Spec to runnable model with an empty kernel cache (GPU: passes, codegen, NVRTC), seconds.
    pub compile_cold_s: f64,
    /// The same with a warm kernel cache.
    pub compile_warm_s: f64,
    /// Weights from disk (or generated) to the device, seconds.
    pub load_s: f64,
    pub prefill: Vec<PrefillBench>,
    pub decode: Vec<DecodeBench>,
    pub memory: Memory,
}

/// Prefill of one prompt length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrefillBench {
    pub prompt_len: usize,
    /// Time to first token (prefill + first sample), milliseconds.
    pub ttft_ms: Stat,
    pub tokens_per_s: Stat,
}

/// Decode at one context position (tokens already in the KV cache).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodeBench {
    pub context: usize,
    pub tokens_per_s: Stat,
    /// The floor at batch 1: weight bytes over the measured copy bandwidth (GPU only).
    pub bandwidth_floor_tokens_per_s: Option<f64>,
}

/// Peak memory and its split, bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// What the engine allocated (pio: every static allocation; its peak).
    pub peak: u64,
    /// Total minus free device memory as the driver reports it (CUDA context included).
    pub device_in_use: Option<u64>,
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
    pub workspace: u64,
}

fn fmt_stat(s: &Stat) -> String {
    if s.max - s.min < 0.005 * s.median.abs().max(1e-9) {
        format!("{:.1}", s.median)
    } else {
        format!("{:.1} ({:.1}–{:.1})", s.median, s.min, s.max)
    }
}

/// A readable markdown summary (one table per kind of figure, like llama-bench's).
pub fn markdown(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pio bench on {} ({}), commit {}, {} repeats, batch {}, {}\n",
        r.machine.device,
        r.machine.date,
        r.machine.commit.as_deref().unwrap_or("unknown"),
        r.settings.repeats,
        r.settings.batch,
        r.settings.dtype
    );
    let _ = writeln!(out, "| model | params | compile cold / warm (s) | load (s) | peak memory (GB) | weights / KV / activations (GB) | device in use (GB) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let gb = |b: u64| b as f64 / 1e9;
    for m in &r.models {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} / {:.2} | {:.2} | {:.2} | {:.2} / {:.2} / {:.3} | {} |",
            m.model,
            pio_compiler::summary::thousands(m.params),
            m.compile_cold_s,
            m.compile_warm_s,
            m.load_s,
            gb(m.memory.peak),
            gb(m.memory.weights),
            gb(m.memory.kv_cache),
            gb(m.memory.activations),
            m.memory
                .device_in_use
                .map_or("–".to_string(), |b| format!("{:.2}", gb(b)))
        );
    }
    let _ = writeln!(out, "\n| model | prompt | TTFT (ms) | prefill (tokens/s) |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for m in &r.models {
        for p in &m.prefill {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.model,
                p.prompt_len,
                fmt_stat(&p.ttft_ms),
                fmt_stat(&p.tokens_per_s)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| model | context | decode (tokens/s) | bandwidth floor |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for m in &r.models {
        for d in &m.decode {
            let floor = d
                .bandwidth_floor_tokens_per_s
                .map(|f| format!("{f:.0}"))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.model,
                d.context,
                fmt_stat(&d.tokens_per_s),
                floor
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Stat::of(&[1.0, 3.0]).median, 2.0);
        assert_eq!(fmt_stat(&Stat::of(&[10.0, 10.0])), "10.0");
        assert_eq!(fmt_stat(&Stat::of(&[9.0, 10.0, 12.0])), "10.0 (9.0–12.0)");
    }
}
