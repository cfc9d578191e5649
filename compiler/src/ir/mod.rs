//! The IR: a closed [`Op`] enum on a petgraph graph newtype, with type inference, a verifier,
//! a deterministic text printer and Graphviz export.

pub mod dot;
pub mod graph;
pub mod infer;
mod infer_fused;
pub mod op;
pub mod print;
pub mod serial;
pub mod types;
pub mod verify;

pub use graph::{Graph, Node, NodeId};
pub use op::{
    CacheKind, ConcatPart, Init, InputRole, Op, OutputRole, Rope, RopeScaling, Shard, ShardAxis,
    WeightBinding,
};
pub use types::{DType, Dim, Shape, SymDim, TensorType};
