//! The IR graph: a petgraph `StableDiGraph` of [`Node`]s whose edges carry the operand slot.

use super::infer::{BATCH, CTX};
use super::op::{InputRole, Op, OutputRole};
use super::types::{Dim, SymDim, TensorType};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Identifies a node of a [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// One value of the graph: the op that makes it, its result type and a readable name
/// (`layers.3.q`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub ty: TensorType,
}

/// A model graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, usize>,
    /// The model's name (for printing).
    pub name: String,
    /// Symbolic dimensions with their upper bounds.
    pub dims: Vec<SymDim>,
    /// Tensor-parallel ranks the graph runs on: 1 (or 0) for a whole graph; more when the
    /// shard pass made it one rank's part ([`crate::pass::shard`]).
    pub ranks: usize,
}

impl Graph {
    pub fn new(name: impl Into<String>, dims: Vec<SymDim>) -> Self {
        Graph {
            g: StableDiGraph::default(),
            name: name.into(),
            dims,
            ranks: 1,
        }
    }

    /// Whether the graph is one rank's part of a tensor-parallel model.
    pub fn is_sharded(&self) -> bool {
        self.ranks > 1
    }

    /// Adds a node whose operands are `args`, in slot order.
    pub fn add(&mut self, node: Node, args: &[NodeId]) -> NodeId {
        let id = self.g.add_node(node);
        for (slot, &a) in args.iter().enumerate() {
            self.g.add_edge(a, id, slot);
        }
        id
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Node ids in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// A node's operands, in slot order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort();
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// The operand slots as stored (for the verifier: duplicates or gaps are bugs).
    pub fn operand_slots(&self, id: NodeId) -> Vec<usize> {
        let mut s: Vec<usize> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| *e.weight())
            .collect();
        s.sort();
        s
    }

    /// The nodes that use `id`, in insertion order, without repeats.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> = self.g.neighbors_directed(id, Direction::Outgoing).collect();
        u.sort();
        u.dedup();
        u
    }

    /// Nodes in a deterministic topological order (ties broken by insertion order), or the
    /// names of the nodes on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Vec<String>> {
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BinaryHeap<Reverse<NodeId>> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| Reverse(n))
            .collect();
        let mut order = Vec::with_capacity(self.g.node_count());
        while let Some(Reverse(n)) = ready.pop() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("node exists");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(e.target()));
                }
            }
        }
        if order.len() == self.g.node_count() {
            Ok(order)
        } else {
            // Name only the nodes on a cycle, not everything downstream of one.
            let mut on_cycle: Vec<NodeId> = petgraph::algo::tarjan_scc(&self.g)
                .into_iter()
                .filter(|scc| scc.len() > 1 || self.g.contains_edge(scc[0], scc[0]))
                .flatten()
                .collect();
            on_cycle.sort();
            Err(on_cycle
                .into_iter()
                .map(|n| self.g[n].name.clone())
                .collect())
        }
    }

    /// Output nodes, in insertion order.
    pub fn outputs(&self) -> Vec<NodeId> {
        self.ids()
            .filter(|&n| matches!(self.g[n].op, Op::Output(_)))
            .collect()
    }

    /// The input of a role, if the graph has one.
    pub fn input(&self, role: InputRole) -> Option<NodeId> {
        self.ids()
            .find(|&n| matches!(self.g[n].op, Op::Input(r) if r == role))
    }

    /// The output of a role, if the graph has one.
    pub fn output(&self, role: OutputRole) -> Option<NodeId> {
        self.ids()
            .find(|&n| matches!(self.g[n].op, Op::Output(r) if r == role))
    }

    /// Width of the logits: the last dim of the logits output (the LM head's rows).
    pub fn vocab_size(&self) -> Option<usize> {
        let id = self.output(OutputRole::Logits)?;
        match self.g[id].ty.shape.last() {
            Some(Dim::Fixed(n)) => Some(*n),
            _ => None,
        }
    }

    /// The bound of the KV cache's sequence axis (the IR's context dim, [`CTX`]).
    pub fn context_bound(&self) -> Option<usize> {
        self.dim_bound(CTX)
    }

    /// The bound of the batch axis (1 when the graph declares none).
    pub fn batch_bound(&self) -> usize {
        self.dim_bound(BATCH).unwrap_or(1)
    }

    /// Finds a node by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.ids().find(|&n| self.g[n].name == name)
    }

    /// Adds an edge without checks (for tests of the verifier and for passes).
    pub fn connect(&mut self, from: NodeId, to: NodeId, slot: usize) {
        self.g.add_edge(from, to, slot);
    }

    /// Makes every user of `old` use `new` instead (same slots).
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let edges: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (target, slot) in edges {
            if target == new {
                continue;
            }
            if let Some(e) = self.g.find_edge(old, target) {
                self.g.remove_edge(e);
            }
            self.g.add_edge(new, target, slot);
        }
    }

    /// Replaces a node's operands.
    pub fn set_operands(&mut self, id: NodeId, args: &[NodeId]) {
        let old: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (slot, &a) in args.iter().enumerate() {
            self.g.add_edge(a, id, slot);
        }
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, id: NodeId) {
        self.g.remove_node(id);
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    /// The bound of a symbolic dimension.
    pub fn dim_bound(&self, name: &str) -> Option<usize> {
        self.dims.iter().find(|d| d.name == name).map(|d| d.bound)
    }
}
