//! The executor's weights: each stored tensor loaded once through the caller's loader, widened
//! to f32; concatenated weights joined; a tensor-parallel rank's sharded weights asked for as
//! that rank's part only.

use super::{InterpError, Rank, Tensor};
use crate::ir::{Graph, NodeId, Op, Shard};
use std::collections::HashMap;
use std::sync::Arc;

/// Which part of a weight a tensor-parallel rank holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankPart {
    pub shard: Shard,
    pub ranks: usize,
    pub rank: usize,
}

/// Supplies weights by checkpoint name, widened to f32: for `(name, shape, None)` the whole
/// tensor of `shape`; for `(name, shape, Some(part))` only the rank's part of the tensor whose
/// whole shape is `shape` (a checkpoint reader takes it straight from the file).
pub type PartLoader<'a> =
    dyn FnMut(&str, &[usize], Option<&RankPart>) -> Result<Vec<f32>, String> + 'a;

/// A [`PartLoader`] over a loader of whole tensors: each part cut out of the whole (simple, not
/// frugal: for random weights and tests).
pub fn slicing(
    mut load: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, String>,
) -> impl FnMut(&str, &[usize], Option<&RankPart>) -> Result<Vec<f32>, String> {
    move |name, shape, part| {
        let whole = load(name, shape)?;
        match part {
            None => Ok(whole),
            Some(p) => p
                .shard
                .slice(&whole, shape, p.ranks, p.rank)
                .map_err(|e| e.to_string()),
        }
    }
}

/// Every weight of `graph`, by node.
pub(super) fn weights(
    graph: &Graph,
    order: &[NodeId],
    load: &mut PartLoader<'_>,
    rank: Option<&Rank>,
) -> Result<HashMap<NodeId, Arc<Tensor>>, InterpError> {
    let mut weights = HashMap::new();
    for &id in order {
        let n = graph.node(id);
        let Op::Weight(b) = &n.op else { continue };
        let shape =
            n.ty.shape.as_fixed().ok_or_else(|| {
                InterpError::Graph(format!("weight {} has a symbolic shape", n.name))
            })?;
        let err = |message| InterpError::Weight {
            name: n.name.clone(),
            hf: b.hf_name.clone(),
            message,
        };
        let sharded = graph.is_sharded();
        // One checkpoint tensor of `rows` rows here (the rank's part of it where `shard` splits).
        let mut tensor = |name: &str, rows: usize, shard: Option<Shard>| {
            let mut here = shape.clone();
            here[0] = rows;
            match (shard.filter(|_| sharded), rank) {
                (Some(shard), Some(r)) => {
                    let axis = shard.axis.index();
                    let mut whole = here.clone();
                    whole[axis] =
                        pio_artifact::shard::global_extent(here[axis], shard.groups, r.ranks);
                    let part = RankPart {
                        shard,
                        ranks: r.ranks,
                        rank: r.rank,
                    };
                    load(name, &whole, Some(&part))
                }
                _ => load(name, &here, None),
            }
        };
        let data = if b.concat.is_empty() {
            tensor(&b.hf_name, shape[0], b.shard).map_err(err)?
        } else {
            // Concatenated along the first axis at load time.
            let mut all = Vec::with_capacity(shape.iter().product());
            for p in &b.concat {
                all.extend(tensor(&p.hf_name, p.rows, p.shard).map_err(err)?);
            }
            all
        };
        if data.len() != shape.iter().product::<usize>() {
            return Err(err(format!("{} values for shape {shape:?}", data.len())));
        }
        weights.insert(id, Arc::new(Tensor::new(shape, data)));
    }
    Ok(weights)
}
