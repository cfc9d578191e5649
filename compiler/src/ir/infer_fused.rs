//! Type inference of the fused ops: each is its decomposition's type, inferred part by part, so
//! that a fused op type-checks exactly when its primitives would.

use super::infer::{infer, swiglu_halve};
use super::op::Op;
use super::types::TensorType;

fn part(op: &Op, args: &[&TensorType]) -> Result<TensorType, String> {
    Ok(infer(op, args)?.expect("a fused op's parts are not leaves"))
}

/// The result type of a fused op (its arity already checked).
pub(super) fn infer_fused(op: &Op, args: &[&TensorType]) -> Result<TensorType, String> {
    Ok(match op {
        Op::NormLinear { eps } | Op::NormLinearSwiGlu { eps } => {
            let norm = part(&Op::RmsNorm { eps: *eps }, &[args[0], args[1]])?;
            let lin = part(&Op::Linear, &[&norm, args[2]])?;
            if matches!(op, Op::NormLinear { .. }) {
                lin
            } else {
                swiglu_halve(op.name(), lin)?
            }
        }
        Op::LinearBias => {
            let lin = part(&Op::Linear, &[args[0], args[1]])?;
            part(&Op::BiasAdd, &[&lin, args[2]])?
        }
        Op::NormLinearBias { eps } => {
            let norm = part(&Op::RmsNorm { eps: *eps }, &[args[0], args[1]])?;
            let lin = part(&Op::Linear, &[&norm, args[2]])?;
            part(&Op::BiasAdd, &[&lin, args[3]])?
        }
        Op::LinearAdd => {
            let lin = part(&Op::Linear, &[args[0], args[1]])?;
            part(&Op::Add, &[&lin, args[2]])?
        }
        Op::SiluMul => part(&Op::Mul, &[args[0], args[1]])?,
        Op::NormRope { eps, rope } => {
            let norm = part(&Op::RmsNorm { eps: *eps }, &[args[0], args[1]])?;
            part(&Op::Rope { rope: *rope }, &[&norm, args[2]])?
        }
        Op::NormRopeKvWrite {
            eps,
            rope,
            layer,
            cache,
        } => {
            let norm = part(&Op::RmsNorm { eps: *eps }, &[args[0], args[1]])?;
            let roped = part(&Op::Rope { rope: *rope }, &[&norm, args[2]])?;
            let write = Op::KvWrite {
                layer: *layer,
                cache: *cache,
            };
            part(&write, &[&roped, args[2]])?
        }
        Op::RopeKvWrite { rope, layer, cache } => {
            let roped = part(&Op::Rope { rope: *rope }, &[args[0], args[1]])?;
            let write = Op::KvWrite {
                layer: *layer,
                cache: *cache,
            };
            part(&write, &[&roped, args[1]])?
        }
        other => unreachable!("{} is not a fused op", other.name()),
    })
}
