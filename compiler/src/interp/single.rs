//! One node evaluated alone on given operand values: the CPU side of a per-kernel check. The
//! node is copied into a graph of its own whose operands are constants of the given values
//! (and whose shapes are all concrete), fused ops are decomposed there as everywhere in the
//! executor, and the result is the same loops' as a whole-model step's.

use super::cache::Contiguous;
use super::{CpuExecutor, InterpError, StepInputs, Tensor};
use crate::ir::{Graph, Init, Node, NodeId, Op, OutputRole, Shape, TensorType, WeightBinding};

/// Evaluates node `id` of `g` on `operands` (its operands' values, in slot order) for a step
/// whose output has shape `out_shape`.
///
/// A KV-cache write's value is the rows it writes (`[batch, seq, kv_heads, head_dim]`, i.e.
/// `out_shape`), not the whole cache; an attention's key and value operands are the cache rows
/// it reads (`[batch, ctx, kv_heads, head_dim]`, each sequence's rows from position 0).
pub fn eval_node(
    g: &Graph,
    id: NodeId,
    operands: &[Tensor],
    out_shape: &[usize],
) -> Result<Tensor, InterpError> {
    let node = g.node(id);
    let args = g.operands(id);
    if args.len() != operands.len() {
        return Err(InterpError::Graph(format!(
            "{}: {} operands given for {} slots",
            node.name,
            operands.len(),
            args.len()
        )));
    }
    if matches!(node.op, Op::Input(_) | Op::Weight(_) | Op::Output(_)) {
        return Err(InterpError::Graph(format!(
            "{}: a {} computes nothing",
            node.name,
            node.op.name()
        )));
    }
    let mut alone = Graph::new(format!("{} alone", node.name), g.dims.clone());
    let mut slots = Vec::with_capacity(operands.len());
    for (i, (&a, t)) in args.iter().zip(operands).enumerate() {
        let source = g.node(a);
        let placeholder = Node {
            name: format!("operand{i}"),
            op: Op::Weight(WeightBinding {
                hf_name: format!("operand{i}"),
                concat: Vec::new(),
                tied: Vec::new(),
                init: Init::Ones,
                shard: None,
            }),
            ty: TensorType::new(source.ty.dtype, Shape::fixed(&t.shape)),
        };
        slots.push(alone.add(placeholder, &[]));
    }
    let ty = TensorType::new(node.ty.dtype, Shape::fixed(out_shape));
    let copy = alone.add(
        Node {
            name: node.name.clone(),
            op: node.op.clone(),
            ty: ty.clone(),
        },
        &slots,
    );
    alone.add(
        Node {
            name: "result".into(),
            op: Op::Output(OutputRole::Logits),
            ty,
        },
        &[copy],
    );
    let mut load = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
        let i: usize = name
            .strip_prefix("operand")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no operand '{name}'"))?;
        let t = &operands[i];
        if t.shape != shape {
            return Err(format!("shape {:?}, expected {shape:?}", t.shape));
        }
        Ok(t.data.clone())
    };
    let exec = CpuExecutor::new(alone, &mut load)?;
    let (batch, seq) = match out_shape {
        [b, s, ..] => (*b, *s),
        _ => (1, out_shape.first().copied().unwrap_or(1)),
    };
    let inputs = StepInputs {
        batch,
        seq,
        ctx: seq,
        tokens: &[],
        positions: &[],
    };
    let mut cache = Contiguous::default();
    let mut outputs = exec
        .program
        .run(&inputs, &mut cache.at(0, seq.max(1)), None)?;
    outputs
        .remove(&OutputRole::Logits)
        .ok_or_else(|| InterpError::Graph(format!("{}: no result", node.name)))
}
