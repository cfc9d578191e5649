//! The CPU backend: the artifact's reference graph (the lowered IR, before any pass) run by the
//! compiler's f32 reference executor, with the same weights; with tensor parallel, the shard
//! pass's graph of it run on simulated ranks (one thread each, collectives in memory).

use crate::error::PioError;
use crate::options::WeightsSource;
use crate::weights::artifact_weight_specs;
use pio_artifact::Artifact;
use pio_compiler::interp::load::slicing;
use pio_compiler::interp::{
    CpuExecutor, InterpError, PagedSeq, PartLoader, RankGroup, RankPart, Tensor,
};
use pio_compiler::ir::OutputRole;
use pio_runtime::generate::{BoxError, Forward};
use pio_runtime::weights;
use std::collections::HashMap;

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

/// The CPU reference executor as a model: the whole graph, or its ranks.
pub struct CpuBackend(Exec);

enum Exec {
    Whole(Box<CpuExecutor>),
    Ranks(RankGroup),
}

impl Exec {
    fn step(&mut self, tokens: &[u32]) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        match self {
            Exec::Whole(e) => e.step(tokens),
            Exec::Ranks(g) => g.step(tokens),
        }
    }

    fn step_paged(
        &mut self,
        seqs: &[PagedSeq<'_>],
    ) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        match self {
            Exec::Whole(e) => e.step_paged(seqs),
            Exec::Ranks(g) => g.step_paged(seqs),
        }
    }

    fn enable_paged_cache(&mut self, blocks: usize, block_size: usize) -> Result<(), InterpError> {
        match self {
            Exec::Whole(e) => e.enable_paged_cache(blocks, block_size),
            Exec::Ranks(g) => g.enable_paged_cache(blocks, block_size),
        }
    }

    fn set_context_bound(&mut self, n: usize) -> Result<(), InterpError> {
        match self {
            Exec::Whole(e) => e.set_context_bound(n),
            Exec::Ranks(g) => g.set_context_bound(n),
        }
    }

    fn reset(&mut self) {
        match self {
            Exec::Whole(e) => e.reset(),
            Exec::Ranks(g) => g.reset(),
        }
    }

    /// Rank 0's executor stands for all (they keep the same cache lengths).
    fn first(&self) -> &CpuExecutor {
        match self {
            Exec::Whole(e) => e,
            Exec::Ranks(g) => g.first(),
        }
    }
}

impl CpuBackend {
    /// Builds the executor from the artifact's reference graph, its KV cache bounded by the
    /// artifact's context, with the weights of `source`; `progress` draws a bar for loads of
    /// more than a second or so. `ranks` above 1 shards the graph over that many simulated
    /// tensor-parallel ranks (each loads every weight and keeps its slice).
    pub fn load(
        a: &Artifact,
        source: &WeightsSource,
        progress: bool,
        ranks: usize,
    ) -> Result<CpuBackend, PioError> {
        let text = a.reference_graph.text().map_err(|e| PioError::File {
            path: a.reference_graph.file.clone().into(),
            message: format!("not UTF-8: {e}"),
        })?;
        let mut graph = pio_compiler::ir::serial::from_json(text)?;
        pio_compiler::pass::shard::shard(&mut graph, ranks)?;
        let specs = artifact_weight_specs(a);
        // Random weights are made whole for every rank (then cut); a checkpoint's parts are read
        // straight from the memory map.
        let loaded_bytes = match source {
            WeightsSource::Random { .. } => ranks.max(1) as u64,
            WeightsSource::Dir(_) => 1,
        };
        let bar = progress_bar(
            progress,
            crate::footprint::cpu_bytes(a).saturating_mul(loaded_bytes),
            source,
        );
        let advance = |values: &[f32]| {
            if let Some(b) = &bar {
                b.inc(4 * values.len() as u64);
            }
        };
        let mut exec = match source {
            WeightsSource::Random { seed } => {
                let load = |name: &str, _: &[usize]| {
                    let s = specs
                        .iter()
                        .find(|s| s.name == name)
                        .ok_or_else(|| format!("the artifact has no weight {name}"))?;
                    let values = weights::random_tensor_f32(*seed, s).map_err(|e| e.to_string())?;
                    advance(&values);
                    Ok(values)
                };
                build(graph, &mut slicing(load))?
            }
            WeightsSource::Dir(dir) => {
                let wd = crate::weights::open_dir(a, dir)?;
                let mut load = |name: &str, _: &[usize], part: Option<&RankPart>| {
                    let values = match part {
                        None => wd.tensor_f32(name),
                        Some(p) => wd.tensor_part_f32(name, &p.shard, p.ranks, p.rank),
                    }
                    .map_err(|e| e.to_string())?;
                    advance(&values);
                    Ok(values)
                };
                build(graph, &mut load)?
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

    /// Runs a batch of sequences over the paged cache; returns each sequence's last-token
    /// logits, in order. The executor's steps take the same number of new tokens per sequence:
    /// a batch of differing lengths runs as one step per sequence (the same arithmetic).
    pub fn forward_paged(&mut self, seqs: &[PagedSeq<'_>]) -> Result<Vec<Vec<f32>>, PioError> {
        let ragged = seqs
            .windows(2)
            .any(|w| w[0].tokens.len() != w[1].tokens.len());
        if ragged {
            let mut logits = Vec::with_capacity(seqs.len());
            for s in seqs {
                logits.extend(self.forward_paged(std::slice::from_ref(s))?);
            }
            return Ok(logits);
        }
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

/// The whole graph's executor, or a rank group for a sharded one.
fn build(graph: pio_compiler::ir::Graph, load: &mut PartLoader<'_>) -> Result<Exec, InterpError> {
    Ok(if graph.is_sharded() {
        Exec::Ranks(RankGroup::new(graph, load)?)
    } else {
        let mut whole = |name: &str, shape: &[usize]| load(name, shape, None);
        Exec::Whole(Box::new(CpuExecutor::new(graph, &mut whole)?))
    })
}

impl Forward for CpuBackend {
    fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, BoxError> {
        Ok(self.step_logits(tokens)?.pop().unwrap_or_default())
    }

    fn reset(&mut self) {
        self.0.reset();
    }

    fn cached_len(&self) -> usize {
        self.0.first().cached_len()
    }

    fn context_bound(&self) -> usize {
        self.0.first().context_bound()
    }
}
