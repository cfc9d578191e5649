//! Hand-built IR graphs for the compiler's tests: f32 weights (ones) and ops of fixed shape.

use pio_compiler::ir::*;

pub fn f32t(dims: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::fixed(dims))
}

/// A plain weight named `name` (bound to `name.weight`, initialised to ones).
pub fn leaf(g: &mut Graph, name: &str, dims: &[usize]) -> NodeId {
    g.add(
        Node {
            name: name.into(),
            op: Op::Weight(WeightBinding {
                hf_name: format!("{name}.weight"),
                concat: vec![],
                tied: vec![],
                init: Init::Ones,
                shard: None,
            }),
            ty: f32t(dims),
        },
        &[],
    )
}

/// An f32 op node of shape `dims` over `args`.
pub fn node(g: &mut Graph, name: &str, op: Op, dims: &[usize], args: &[NodeId]) -> NodeId {
    g.add(
        Node {
            name: name.into(),
            op,
            ty: f32t(dims),
        },
        args,
    )
}
