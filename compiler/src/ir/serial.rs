//! The IR as JSON: a graph written as its nodes in schedule order, each with its operands as
//! indices into that list. The artifact carries the lowered graph this way for the CPU
//! executor; reading it back rebuilds the graph and runs the verifier, so a damaged file is an
//! error, never a wrong model.

use super::graph::{Graph, Node, NodeId};
use super::types::SymDim;
use crate::error::IrError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Serialize, Deserialize)]
struct GraphJson {
    name: String,
    dims: Vec<SymDim>,
    /// Tensor-parallel ranks of a sharded graph (absent: a whole graph).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    ranks: usize,
    nodes: Vec<NodeJson>,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n <= 1
}

#[derive(Serialize, Deserialize)]
struct NodeJson {
    #[serde(flatten)]
    node: Node,
    operands: Vec<usize>,
}

/// The graph as JSON, its nodes in schedule order (operands before users).
pub fn to_json(g: &Graph) -> String {
    let order = g.topo_order().unwrap_or_else(|_| g.ids().collect());
    let index: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let nodes = order
        .iter()
        .map(|&id| NodeJson {
            node: g.node(id).clone(),
            operands: g.operands(id).iter().map(|a| index[a]).collect(),
        })
        .collect();
    let data = GraphJson {
        name: g.name.clone(),
        dims: g.dims.clone(),
        ranks: g.ranks,
        nodes,
    };
    serde_json::to_string(&data).expect("IR values serialize")
}

/// Reads a graph written by [`to_json`] and verifies it.
pub fn from_json(text: &str) -> Result<Graph, IrError> {
    let bad = |message: String| IrError {
        pass: Some("reading the reference graph".into()),
        problems: vec![message],
    };
    let data: GraphJson = serde_json::from_str(text)
        .map_err(|e| bad(format!("line {} column {}: {e}", e.line(), e.column())))?;
    let mut g = Graph::new(data.name, data.dims);
    g.ranks = data.ranks.max(1);
    let mut ids: Vec<NodeId> = Vec::with_capacity(data.nodes.len());
    for (i, n) in data.nodes.into_iter().enumerate() {
        let mut args = Vec::with_capacity(n.operands.len());
        for &a in &n.operands {
            // Operands come before their users.
            let id = ids.get(a).copied().filter(|_| a < i).ok_or_else(|| {
                bad(format!(
                    "node {i} ('{}') uses node {a}, which is not before it",
                    n.node.name
                ))
            })?;
            args.push(id);
        }
        ids.push(g.add(n.node, &args));
    }
    super::verify::verify(&g, Some("reading the reference graph"))?;
    Ok(g)
}
