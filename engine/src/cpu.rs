//! The CPU backend: the artifact's reference graph (the lowered IR, before any pass) run by the
//! compiler's f32 reference executor, with the same weights.

use crate::error::PioError;
use crate::options::WeightsSource;
use crate::weights::artifact_weight_specs;
use pio_artifact::Artifact;
use pio_compiler::interp::{CpuExecutor, PagedSeq};
use pio_compiler::ir::OutputRole;
use pio_runtime::generate::{BoxError, Forward};
use pio_runtime::weights;

/// A bar over the f32 bytes of the weights, for loads big enough to take a while (the
/// 0.6B's 2.4 GB take ~20 s); none for small ones or when not asked.
fn progress_bar(
    progress: bool,
    total: u64,
    source: &WeightsSource,
) -> Option<indicatif::ProgressBar> {
    (progress && total > 64 << 20).then(|| {
        let what = match source {
            WeightsSource::Random { .. } => "making random weights",
            WeightsSource::Dir(_) => "loading weights",
        };
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} (f32, CPU) {{bar:40}} {{binary_bytes}}/{{binary_total_bytes}} {{elapsed}}"
            ))
            .expect("static template"),
        );
        b
    })
}

/// The CPU reference executor as a model.
pub struct CpuBackend(CpuExecutor);

impl CpuBackend {
    /// Builds the executor from the artifact's reference graph, its KV cache bounded by the
    /// artifact's context, with the weights of `source`; `progress` draws a bar for loads of
    /// more than a second or so.
    pub fn load(
        a: &Artifact,
        source: &WeightsSource,
        progress: bool,
    ) -> Result<CpuBackend, PioError> {
        let text = a.reference_graph.text().map_err(|e| PioError::File {
            path: a.reference_graph.file.clone().into(),
            message: format!("not UTF-8: {e}"),
        })?;
        let graph = pio_compiler::ir::serial::from_json(text)?;
        let specs = artifact_weight_specs(a);
        let bar = progress_bar(progress, crate::footprint::cpu_bytes(a), source);
        let advance = |values: &[f32]| {
            if let Some(b) = &bar {
                b.inc(4 * values.len() as u64);
            }
        };
        let mut exec = match source {
            WeightsSource::Random { seed } => {
                let mut load = |name: &str, _: &[usize]| {
                    let s = specs
                        .iter()
                        .find(|s| s.name == name)
                        .ok_or_else(|| format!("the artifact has no weight {name}"))?;
                    let values = weights::random_tensor_f32(*seed, s).map_err(|e| e.to_string())?;
                    advance(&values);
                    Ok(values)
                };
                CpuExecutor::new(graph, &mut load)?
            }
            WeightsSource::Dir(dir) => {
                let wd = crate::weights::open_dir(a, dir)?;
                let mut load = |name: &str, _: &[usize]| {
                    let values = wd.tensor_f32(name).map_err(|e| e.to_string())?;
                    advance(&values);
                    Ok(values)
                };
                CpuExecutor::new(graph, &mut load)?
            }
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        exec.set_context_bound(a.max_context)?;
        Ok(CpuBackend(exec))
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Gives the executor a paged KV cache for the batching engine.
    pub fn enable_paged_cache(
        &mut self,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<(), PioError> {
        Ok(self.0.enable_paged_cache(num_blocks, block_size)?)
    }

    /// Runs a batch of sequences (the same number of new tokens each) over the paged cache;
    /// returns each sequence's last-token logits, in order.
    pub fn forward_paged(&mut self, seqs: &[PagedSeq<'_>]) -> Result<Vec<Vec<f32>>, PioError> {
        let out = self.0.step_paged(seqs)?;
        let logits = out
            .get(&OutputRole::Logits)
            .ok_or_else(|| PioError::Device("the reference graph has no logits output".into()))?;
        let per_seq = logits.data.len() / seqs.len().max(1);
        let vocab = logits.shape.last().copied().unwrap_or(0);
        Ok(logits
            .data
            .chunks(per_seq.max(1))
            .map(|rows| rows[rows.len() - vocab..].to_vec())
            .collect())
    }

    /// Runs `tokens` after the cached ones and returns every one of their logits rows.
    pub fn step_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, PioError> {
        let out = self.0.step(tokens)?;
        let logits = out
            .get(&OutputRole::Logits)
            .ok_or_else(|| PioError::Device("the reference graph has no logits output".into()))?;
        Ok(logits.rows().map(<[f32]>::to_vec).collect())
    }
}

impl Forward for CpuBackend {
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError> {
        Ok(self.step_logits(tokens)?.pop().unwrap_or_default())
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn cached_len(&self) -> usize {
        self.0.cached_len()
    }

    fn context_bound(&self) -> usize {
        self.0.context_bound()
    }
}
