//! The checkpoint tensors a model needs, from its artifact, and how their bytes are made: read
//! from a weights directory (converted to bf16 where the checkpoint holds another dtype) or
//! drawn at random, seeded.

use crate::error::PioError;
use crate::options::WeightsSource;
use half::bf16;
use pio_artifact::{Artifact, DType, Init, WeightEntry, WeightPart};
use pio_compiler::ir::{Graph, Op};
use pio_runtime::weights::{self, WeightDir, WeightInit, WeightSpec};

fn weight_init(init: Init) -> WeightInit {
    match init {
        Init::Ones => WeightInit::Ones,
        Init::Normal { std } => WeightInit::Normal { std: std as f32 },
    }
}

/// The checkpoint tensors an artifact's weights are made of (tied names excluded); a
/// tensor-parallel artifact holds one rank's slices, the checkpoint the whole tensors.
pub fn artifact_weight_specs(a: &Artifact) -> Vec<WeightSpec> {
    let ranks = a.tensor_parallel.map_or(1, |tp| tp.ranks);
    a.weights
        .iter()
        .flat_map(|w| {
            w.parts.iter().map(move |p| WeightSpec {
                name: p.hf_name.clone(),
                shape: w.part_shape(p, ranks),
                init: weight_init(w.init),
            })
        })
        .collect()
}

/// Checkpoint names an artifact does not store separately (tied to another tensor).
pub fn artifact_tied_names(a: &Artifact) -> Vec<String> {
    a.weights.iter().flat_map(|w| w.tied.clone()).collect()
}

/// The checkpoint tensors a graph needs (tied names excluded).
pub fn weight_specs(g: &Graph) -> Vec<WeightSpec> {
    g.ids()
        .filter_map(|id| {
            let n = g.node(id);
            let Op::Weight(b) = &n.op else { return None };
            let shape = n.ty.shape.as_fixed()?;
            Some(WeightSpec {
                name: b.hf_name.clone(),
                shape,
                init: weight_init(b.init),
            })
        })
        .collect()
}

/// Opens a weights directory for an artifact: config.json agrees with the model, and every
/// tensor is present with its shape (all problems reported at once).
pub fn open_dir(a: &Artifact, dir: &std::path::Path) -> Result<WeightDir, PioError> {
    weights::check_config(
        &dir.join("config.json"),
        &a.model.hf_config,
        &a.model.hf_defaults,
    )?;
    let tied = artifact_tied_names(a);
    let tied: Vec<&str> = tied.iter().map(String::as_str).collect();
    Ok(WeightDir::open_with(dir, &artifact_weight_specs(a), &tied)?)
}

/// Fills one artifact weight's device bytes (bf16, its parts concatenated along the first axis)
/// from the checkpoint or from the seeded random source.
pub fn fill_bf16(
    w: &WeightEntry,
    out: &mut [u8],
    dir: Option<&WeightDir>,
    source: &WeightsSource,
) -> Result<(), String> {
    fill_rank_bf16(w, out, dir, source, None)
}

/// A tensor-parallel rank: rank `rank` of `ranks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rank {
    pub ranks: usize,
    pub rank: usize,
}

/// [`fill_bf16`] for one rank of a tensor-parallel artifact: each split part (`shard`) gets
/// the rank's slice of its checkpoint tensor, read from the memory map as the rank's rows or
/// columns only (never the whole tensor), or of the seeded random tensor made whole (so that
/// every rank cuts the same tensor). Parts without a split, and every part when `rank` is
/// None, are filled whole.
pub fn fill_rank_bf16(
    w: &WeightEntry,
    out: &mut [u8],
    dir: Option<&WeightDir>,
    source: &WeightsSource,
    rank: Option<Rank>,
) -> Result<(), String> {
    if w.dtype != DType::BF16 {
        return Err(format!(
            "the artifact stores it as {}; this runtime uploads bf16 weights only",
            w.dtype
        ));
    }
    let seed = match source {
        WeightsSource::Random { seed } => *seed,
        WeightsSource::Dir(_) => 0,
    };
    let cols: usize = w.shape[1..].iter().product();
    let mut at = 0usize;
    for part in &w.parts {
        let n = 2 * part.rows * cols;
        let dst = out
            .get_mut(at..at + n)
            .ok_or_else(|| format!("its parts need more than its {} bytes", w.bytes))?;
        match (part.shard, rank) {
            (Some(shard), Some(r)) => fill_part_slice(w, part, &shard, dst, dir, seed, r)?,
            _ => fill_part_whole(w, part, dst, dir, seed)?,
        }
        at += n;
    }
    if at != out.len() {
        return Err(format!("its parts fill {at} of its {} bytes", out.len()));
    }
    Ok(())
}

/// bf16 values as little-endian bytes.
fn le_bytes(values: impl IntoIterator<Item = bf16>) -> Vec<u8> {
    values.into_iter().flat_map(bf16::to_le_bytes).collect()
}

/// Rank `r`'s slice of a split part of `w` into `dst`.
fn fill_part_slice(
    w: &WeightEntry,
    part: &WeightPart,
    shard: &pio_artifact::Shard,
    dst: &mut [u8],
    dir: Option<&WeightDir>,
    seed: u64,
    r: Rank,
) -> Result<(), String> {
    let bytes = match dir {
        Some(wd) => {
            let (dtype, bytes) = wd
                .tensor_part_bytes(&part.hf_name, shard, r.ranks, r.rank)
                .map_err(|e| e.to_string())?;
            if dtype == weights::DType::BF16 {
                bytes
            } else {
                let f = wd
                    .tensor_part_f32(&part.hf_name, shard, r.ranks, r.rank)
                    .map_err(|e| e.to_string())?;
                le_bytes(f.into_iter().map(bf16::from_f32))
            }
        }
        None => {
            let whole = w.part_shape(part, r.ranks);
            let spec = WeightSpec {
                name: part.hf_name.clone(),
                shape: whole.clone(),
                init: weight_init(w.init),
            };
            let all = weights::random_tensor_bf16(seed, &spec).map_err(|e| e.to_string())?;
            le_bytes(
                shard
                    .slice(&all, &whole, r.ranks, r.rank)
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    if bytes.len() != dst.len() {
        return Err(format!(
            "{}: rank {} of {}: {} bytes for its {} bytes",
            part.hf_name,
            r.rank,
            r.ranks,
            bytes.len(),
            dst.len()
        ));
    }
    dst.copy_from_slice(&bytes);
    Ok(())
}

/// A part of `w`, whole, into `dst`.
fn fill_part_whole(
    w: &WeightEntry,
    part: &WeightPart,
    dst: &mut [u8],
    dir: Option<&WeightDir>,
    seed: u64,
) -> Result<(), String> {
    match dir {
        Some(wd) => {
            let (dtype, bytes) = wd.tensor_bytes(&part.hf_name).map_err(|e| e.to_string())?;
            if dtype == weights::DType::BF16 {
                if bytes.len() != dst.len() {
                    return Err(format!(
                        "{}: {} bytes for its {} bytes",
                        part.hf_name,
                        bytes.len(),
                        dst.len()
                    ));
                }
                dst.copy_from_slice(bytes);
            } else {
                let f = wd.tensor_f32(&part.hf_name).map_err(|e| e.to_string())?;
                for (d, v) in dst.chunks_mut(2).zip(f) {
                    d.copy_from_slice(&bf16::from_f32(v).to_le_bytes());
                }
            }
        }
        None => {
            let spec = WeightSpec {
                name: part.hf_name.clone(),
                shape: w.part_shape(part, 1),
                init: weight_init(w.init),
            };
            let values = weights::random_tensor_bf16(seed, &spec).map_err(|e| e.to_string())?;
            for (d, v) in dst.chunks_mut(2).zip(values) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    Ok(())
}
