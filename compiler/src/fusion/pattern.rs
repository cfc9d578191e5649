//! A small pattern language over the IR: a tree of op kinds with named captures, matched at a
//! root node. Rules are written with it as data (see `rules.rs`).

use crate::ir::{Graph, NodeId, Op};

/// A pattern.
#[derive(Clone, Debug)]
pub enum Pat {
    /// Any value; a name used twice must bind the same node.
    Any(&'static str),
    /// A plain weight leaf (not concatenated, not tied to anything else).
    Weight(&'static str),
    /// An op of kind `kind` (its IR name) whose operands match `args`.
    Op {
        kind: &'static str,
        bind: &'static str,
        args: Vec<Pat>,
    },
}

pub fn any(bind: &'static str) -> Pat {
    Pat::Any(bind)
}

pub fn weight(bind: &'static str) -> Pat {
    Pat::Weight(bind)
}

pub fn op(kind: &'static str, bind: &'static str, args: Vec<Pat>) -> Pat {
    Pat::Op { kind, bind, args }
}

/// The nodes a pattern bound, by capture name.
#[derive(Clone, Debug, Default)]
pub struct Match {
    pub binds: Vec<(&'static str, NodeId)>,
    /// The nodes matched by `Pat::Op` (the root first): the ones a rewrite replaces.
    pub ops: Vec<NodeId>,
}

impl Match {
    /// The node bound to `name` (rules only ask for names their pattern binds).
    pub fn get(&self, name: &str) -> NodeId {
        self.binds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("pattern has no capture '{name}'"))
    }

    fn bind(&mut self, name: &'static str, id: NodeId) -> bool {
        match self.binds.iter().find(|(n, _)| *n == name) {
            Some((_, prev)) => *prev == id,
            None => {
                self.binds.push((name, id));
                true
            }
        }
    }
}

/// Matches `pat` at `id`, extending `m`. Add and mul also match with operands swapped.
pub fn matches(g: &Graph, pat: &Pat, id: NodeId, m: &mut Match) -> bool {
    match pat {
        Pat::Any(name) => m.bind(name, id),
        Pat::Weight(name) => match &g.node(id).op {
            Op::Weight(b) if b.concat.is_empty() && b.tied.is_empty() => m.bind(name, id),
            _ => false,
        },
        Pat::Op { kind, bind, args } => {
            let node = g.node(id);
            if node.op.name() != *kind {
                return false;
            }
            let operands = g.operands(id);
            if operands.len() != args.len() {
                return false;
            }
            let commutative = matches!(node.op, Op::Add | Op::Mul);
            let orders: Vec<Vec<NodeId>> = if commutative && operands.len() == 2 {
                vec![operands.clone(), vec![operands[1], operands[0]]]
            } else {
                vec![operands]
            };
            for order in orders {
                let mut trial = m.clone();
                if !trial.bind(bind, id) {
                    continue;
                }
                trial.ops.push(id);
                if args
                    .iter()
                    .zip(&order)
                    .all(|(p, &a)| matches(g, p, a, &mut trial))
                {
                    *m = trial;
                    return true;
                }
            }
            false
        }
    }
}

/// The default legality condition: every matched op other than the root is used only inside
/// the match, so replacing the root makes them dead.
pub fn self_contained(g: &Graph, m: &Match) -> bool {
    m.ops.iter().skip(1).all(|&id| {
        let users = g.users(id);
        !users.is_empty() && users.iter().all(|u| m.ops.contains(u))
    })
}
