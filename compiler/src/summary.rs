//! Figures about a lowered graph: what `pio list` and `pio-compile` report.

use crate::ir::{Graph, Op};
use serde::Serialize;

/// Size figures of a model graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub model: String,
    pub nodes: usize,
    pub layers: usize,
    /// Parameters, each stored tensor once (tied tensors are not counted twice).
    pub params: u64,
    /// Bytes of the stored weights in the spec's dtype.
    pub weight_bytes: u64,
    /// KV-cache bytes per token of context (per sequence).
    pub kv_bytes_per_token: u64,
    /// Upper bound of the context (the `ctx` dim), if declared.
    pub max_context: Option<usize>,
}

/// Computes the summary of a graph.
pub fn summarize(g: &Graph) -> Summary {
    let mut params = 0u64;
    let mut weight_bytes = 0u64;
    let mut kv = 0u64;
    let mut layers = std::collections::BTreeSet::new();
    for id in g.ids() {
        let n = g.node(id);
        match &n.op {
            Op::Weight(_) => {
                let count = n.ty.shape.fixed_product() as u64;
                params += count;
                weight_bytes += count * n.ty.dtype.size() as u64;
            }
            Op::KvAppend { layer, .. } => {
                layers.insert(*layer);
                kv += (n.ty.shape.fixed_product() * n.ty.dtype.size()) as u64;
            }
            _ => {}
        }
    }
    Summary {
        model: g.name.clone(),
        nodes: g.node_count(),
        layers: layers.len(),
        params,
        weight_bytes,
        kv_bytes_per_token: kv,
        max_context: g.context_bound(),
    }
}

/// `596049920` -> `596,049,920`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub use pio_artifact::bytes_human;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(596049920), "596,049,920");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(bytes_human(1_192_099_840), "1.19 GB");
        assert_eq!(bytes_human(512), "512 B");
    }
}
