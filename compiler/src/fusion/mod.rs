//! Fusion: declarative pattern rules decided on the IR only (never on buffer addresses or
//! runtime state). Every fused op has a decomposition into primitive ops ([`decompose`]), which
//! is its test oracle. The pass that applies the rules is [`crate::pass::Fuse`] (this module
//! knows nothing of the pass manager); `--no-fusion` skips it for differential testing.

mod decompose;
mod pattern;
mod rules;
mod siblings;

pub use decompose::decompose;
pub use pattern::{any, matches, op, self_contained, weight, Match, Pat};
pub use rules::{rules, Rule};
pub use siblings::merge_one as merge_sibling_projections;
