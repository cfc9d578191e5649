//! `PIO_PROFILE`: GPU time per phase and kernel family, measured with CUDA events around every
//! launch (the decode step then runs eagerly, so that each launch can be timed).

use super::device::{CudaError, Gpu, GpuTimer};
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
}
