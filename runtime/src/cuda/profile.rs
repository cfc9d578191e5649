//! `PIO_PROFILE`: GPU time per phase and kernel family, measured with CUDA events around every
//! launch (the decode step then runs eagerly, so that each launch can be timed).

use super::device::{drv, CudaError, Gpu, GpuTimer};
use std::collections::BTreeMap;

pub use pio_artifact::Phase;

/// GPU time per (phase, kernel family), measured with CUDA events around every launch.
#[derive(Default)]
pub struct Profile {
    pub entries: BTreeMap<(String, String), (f64, u64)>,
}

impl Profile {
    /// Adds one launch of `ms` milliseconds to (phase, family).
    pub fn add(&mut self, phase: Phase, family: &str, ms: f64) {
        let e = self
            .entries
            .entry((phase.name().to_string(), family.to_string()))
            .or_default();
        e.0 += ms;
        e.1 += 1;
    }

    /// A table: phase, family, launches, total ms, share.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for phase in [
            Phase::Decode,
            Phase::Prefill,
            Phase::Paged,
            Phase::PagedChunk,
            Phase::PagedSingle,
        ]
        .map(Phase::name)
        {
            let total: f64 = self
                .entries
                .iter()
                .filter(|(k, _)| k.0 == phase)
                .map(|(_, v)| v.0)
                .sum();
            if total == 0.0 {
                continue;
            }
            out.push_str(&format!("{phase}: {total:.3} ms of GPU time\n"));
            let mut rows: Vec<_> = self.entries.iter().filter(|(k, _)| k.0 == phase).collect();
            rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
            for ((_, fam), (ms, n)) in rows {
                out.push_str(&format!(
                    "  {fam:<56} {n:>6} launches {ms:>10.3} ms {:>5.1}%  {:>8.2} us/launch\n",
                    100.0 * ms / total,
                    1e3 * ms / *n as f64
                ));
            }
        }
        out
    }
}

/// The profile's label of a launch: its kernel family and IR node with the layer numbers
/// dropped, e.g. "gemv layers.*.mlp.down_proj", so that every layer adds to one row.
pub(crate) fn label(family: &str, node: &str) -> String {
    let node: Vec<&str> = node
        .split('.')
        .map(|p| if p.parse::<u64>().is_ok() { "*" } else { p })
        .collect();
    format!("{family} {}", node.join("."))
}

/// A profile being recorded, with the one event pair that times every launch (each launch is
/// waited for before the next one, so the pair is reused).
pub(crate) struct Profiler {
    profile: Profile,
    timer: GpuTimer,
}

impl Profiler {
    pub(crate) fn new(gpu: &Gpu) -> Result<Profiler, CudaError> {
        Ok(Profiler {
            profile: Profile::default(),
            timer: GpuTimer::new(gpu)?,
        })
    }

    /// Runs `launch` (which queues one launch on the GPU's stream), waits for it and adds its
    /// GPU time to (phase, label).
    pub(crate) fn time(
        &mut self,
        gpu: &Gpu,
        phase: Phase,
        label: &str,
        launch: impl FnOnce() -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        self.timer.start(gpu)?;
        launch()?;
        let ms = self.timer.stop(gpu)?;
        self.profile.add(phase, label, ms);
        Ok(())
    }

    pub(crate) fn report(&self) -> String {
        self.profile.report()
    }
}

/// `PIO_PROFILER_CALLS`: the paged calls (counted from 0 since the model was loaded; an engine
/// step makes one for its decodes and one for its prefill chunks) that run between
/// `cuProfilerStart` and `cuProfilerStop`, so that `ncu --profile-from-start off` (or Nsight
/// Systems' `--capture-range=cudaProfilerApi`) sees chosen steps and not the loading, the GEMM
/// tuning or the warm-up. A list of calls and ranges: "40", "20-22,40".
#[derive(Default)]
pub(crate) struct ProfilerRange {
    calls: Vec<std::ops::RangeInclusive<u64>>,
    seen: u64,
}

impl ProfilerRange {
    /// From `PIO_PROFILER_CALLS` (empty when unset); a value that is not a list of calls is an
    /// error that names it.
    pub(crate) fn from_env() -> Result<ProfilerRange, CudaError> {
        let Some(v) = std::env::var_os("PIO_PROFILER_CALLS") else {
            return Ok(ProfilerRange::default());
        };
        let v = v.to_string_lossy();
        let calls = parse_calls(&v).map_err(|m| {
            CudaError::Other(format!(
                "PIO_PROFILER_CALLS={v:?}: {m} (expected paged call numbers and ranges, e.g. \"20-22,40\")"
            ))
        })?;
        Ok(ProfilerRange { calls, seen: 0 })
    }

    /// Counts a paged call; when it is one of the chosen, says so on stderr (with `what`) and
    /// starts the profiler. Returns whether it did.
    pub(crate) fn begin(&mut self, what: impl FnOnce() -> String) -> Result<bool, CudaError> {
        let call = self.seen;
        self.seen += 1;
        if !self.calls.iter().any(|r| r.contains(&call)) {
            return Ok(false);
        }
        eprintln!("profiler range: paged call {call}: {}", what());
        drv("profiler start", cudarc::driver::profiler_start())?;
        Ok(true)
    }

    /// Stops the profiler after a call that [`ProfilerRange::begin`] started it for.
    pub(crate) fn end(&self, started: bool) -> Result<(), CudaError> {
        if started {
            drv("profiler stop", cudarc::driver::profiler_stop())?;
        }
        Ok(())
    }
}

/// "20-22,40" as ranges of calls; an empty item, a number that does not parse or a range that
/// ends before it starts is an error.
fn parse_calls(v: &str) -> Result<Vec<std::ops::RangeInclusive<u64>>, String> {
    v.split(',')
        .map(|item| {
            let item = item.trim();
            let num = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{s:?} is not a call number"))
            };
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(item)?, num(item)?),
            };
            if b < a {
                return Err(format!("the range {item:?} ends before it starts"));
            }
            Ok(a..=b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fold_layers_and_the_report_sorts_by_time() {
        assert_eq!(
            label("gemv", "layers.12.mlp.down_proj"),
            "gemv layers.*.mlp.down_proj"
        );
        let mut p = Profile::default();
        p.add(Phase::Decode, "a", 1.0);
        p.add(Phase::Decode, "b", 3.0);
        p.add(Phase::Decode, "b", 1.0);
        let r = p.report();
        assert!(r.starts_with("decode: 5.000 ms of GPU time\n"), "{r}");
        assert!(r.find("  b").unwrap() < r.find("  a").unwrap(), "{r}");
        assert!(!r.contains("prefill"), "{r}");
    }

    #[test]
    fn profiler_calls_parse_as_numbers_and_ranges() {
        assert_eq!(parse_calls("40").unwrap(), vec![40..=40]);
        assert_eq!(parse_calls("20-22, 40").unwrap(), vec![20..=22, 40..=40]);
        for bad in ["", "x", "3-1", "1,,2", "-4", "2-"] {
            assert!(parse_calls(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_calls("3-1")
            .unwrap_err()
            .contains("ends before it starts"));
    }
}
