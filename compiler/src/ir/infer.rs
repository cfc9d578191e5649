//! Dtype and shape inference: the type of an op's result from its operands' types. Errors name
//! the op and every shape involved.

use super::op::Op;
use super::types::{DType, Dim, Shape, TensorType};

/// The IR's symbolic dimension of a KV cache's sequence axis: tokens cached after the step.
/// A spec that appends to a cache declares it under `dims` (lowering checks, with the line).
pub const CTX: &str = "ctx";
/// The IR's symbolic dimension of sequences in a step.
pub const BATCH: &str = "batch";

/// Infers the result type of `op` applied to `args`. Leaves (inputs, weights) carry declared
/// types and are not inferred: they return `Ok(None)`.
pub fn infer(op: &Op, args: &[&TensorType]) -> Result<Option<TensorType>, String> {
    if op.is_leaf() {
        return Ok(None);
    }
    if args.len() != op.arity() {
        return Err(format!(
            "{} takes {} operand(s), got {}",
            op.name(),
            op.arity(),
            args.len()
        ));
    }
    let name = op.name();
    let float = |i: usize, what: &str| -> Result<(), String> {
        if args[i].dtype.is_float() {
            Ok(())
        } else {
            Err(format!(
                "{name}: {what} must be a float tensor, got {}",
                args[i]
            ))
        }
    };
    let same_dtype = |i: usize, j: usize| -> Result<(), String> {
        if args[i].dtype == args[j].dtype {
            Ok(())
        } else {
            Err(format!("{name}: dtypes differ: {} vs {}", args[i], args[j]))
        }
    };
    let rank = |i: usize, r: usize, what: &str| -> Result<(), String> {
        if args[i].shape.rank() == r {
            Ok(())
        } else {
            Err(format!(
                "{name}: {what} must have rank {r}, got {}",
                args[i].shape
            ))
        }
    };
    let ty = match op {
        Op::Input(_) | Op::Weight(_) => unreachable!("leaves return early"),
        Op::Embed | Op::EmbedShard { .. } => {
            let (table, ids) = (args[0], args[1]);
            float(0, "the table")?;
            rank(0, 2, "the table")?;
            if ids.dtype != DType::I32 {
                return Err(format!("{name}: ids must be i32, got {ids}"));
            }
            let mut shape = ids.shape.0.clone();
            shape.push(table.shape.0[1].clone());
            TensorType::new(table.dtype, Shape(shape))
        }
        Op::Linear => {
            let (x, w) = (args[0], args[1]);
            float(0, "the input")?;
            same_dtype(0, 1)?;
            rank(1, 2, "the weight")?;
            if x.shape.rank() == 0 || x.shape.last() != Some(&w.shape.0[1]) {
                return Err(format!(
                    "linear: input {} does not match weight {} (last input dim must equal the weight's second dim)",
                    x.shape, w.shape
                ));
            }
            let mut shape = x.shape.0.clone();
            *shape.last_mut().expect("rank checked") = w.shape.0[0].clone();
            TensorType::new(x.dtype, Shape(shape))
        }
        Op::MatMul => {
            let (a, b) = (args[0], args[1]);
            float(0, "a")?;
            same_dtype(0, 1)?;
            rank(1, 2, "b")?;
            if a.shape.rank() < 2 || a.shape.last() != Some(&b.shape.0[0]) {
                return Err(format!(
                    "matmul: shapes {} and {} do not chain (a's last dim must equal b's first)",
                    a.shape, b.shape
                ));
            }
            let mut shape = a.shape.0.clone();
            *shape.last_mut().expect("rank checked") = b.shape.0[1].clone();
            TensorType::new(a.dtype, Shape(shape))
        }
        Op::RmsNorm { eps } => {
            let (x, w) = (args[0], args[1]);
            float(0, "the input")?;
            same_dtype(0, 1)?;
            rank(1, 1, "the weight")?;
            if x.shape.last() != Some(&w.shape.0[0]) {
                return Err(format!(
                    "rmsnorm: weight {} does not match the last dim of input {}",
                    w.shape, x.shape
                ));
            }
            if !(*eps > 0.0 && eps.is_finite()) {
                return Err(format!("rmsnorm: eps must be a positive number, got {eps}"));
            }
            x.clone()
        }
        Op::Rope { rope } => {
            let (x, pos) = (args[0], args[1]);
            float(0, "the input")?;
            rank(0, 4, "the input [batch, seq, heads, head_dim]")?;
            if pos.dtype != DType::I32 || pos.shape.0[..] != x.shape.0[..2] {
                return Err(format!(
                    "rope: positions {pos} must be i32 with the input's first two dims {}",
                    x.shape
                ));
            }
            match &x.shape.0[3] {
                Dim::Fixed(d) if d % 2 == 0 => {}
                d => {
                    return Err(format!(
                        "rope: head_dim must be a fixed even number, got {d}"
                    ))
                }
            }
            if !(rope.theta > 0.0 && rope.theta.is_finite()) {
                return Err(format!(
                    "rope: theta must be a positive number, got {}",
                    rope.theta
                ));
            }
            rope.scaling.validate().map_err(|e| format!("rope: {e}"))?;
            x.clone()
        }
        Op::KvAppend { .. } => {
            let x = args[0];
            float(0, "the input")?;
            rank(0, 4, "the input [batch, seq, kv_heads, head_dim]")?;
            let mut shape = x.shape.0.clone();
            shape[1] = Dim::Sym(CTX.into());
            TensorType::new(x.dtype, Shape(shape))
        }
        Op::Attention { scale } => {
            let (q, k, v, pos) = (args[0], args[1], args[2], args[3]);
            float(0, "q")?;
            same_dtype(0, 1)?;
            same_dtype(0, 2)?;
            rank(0, 4, "q [batch, seq, heads, head_dim]")?;
            rank(1, 4, "k [batch, ctx, kv_heads, head_dim]")?;
            if k.shape != v.shape {
                return Err(format!("attention: k {} and v {} differ", k.shape, v.shape));
            }
            if q.shape.0[0] != k.shape.0[0] || q.shape.0[3] != k.shape.0[3] {
                return Err(format!(
                    "attention: q {} and k {} differ in batch or head_dim",
                    q.shape, k.shape
                ));
            }
            match (&q.shape.0[2], &k.shape.0[2]) {
                (Dim::Fixed(h), Dim::Fixed(kvh)) if *kvh > 0 && h % kvh == 0 => {}
                (h, kvh) => {
                    return Err(format!(
                        "attention: query heads ({h}) must be a multiple of kv heads ({kvh})"
                    ))
                }
            }
            if pos.dtype != DType::I32 || pos.shape.0[..] != q.shape.0[..2] {
                return Err(format!(
                    "attention: positions {pos} must be i32 with q's first two dims {}",
                    q.shape
                ));
            }
            if !(*scale > 0.0 && scale.is_finite()) {
                return Err(format!(
                    "attention: scale must be a positive number, got {scale}"
                ));
            }
            q.clone()
        }
        Op::Silu => {
            float(0, "the input")?;
            args[0].clone()
        }
        Op::BiasAdd => {
            let (x, b) = (args[0], args[1]);
            float(0, "the input")?;
            same_dtype(0, 1)?;
            rank(1, 1, "the bias")?;
            if x.shape.last() != Some(&b.shape.0[0]) {
                return Err(format!(
                    "bias_add: bias {} does not match the last dim of input {}",
                    b.shape, x.shape
                ));
            }
            x.clone()
        }
        Op::Mul | Op::Add => {
            float(0, "a")?;
            if args[0] != args[1] {
                return Err(format!(
                    "{name}: operand types differ: {} vs {}",
                    args[0], args[1]
                ));
            }
            args[0].clone()
        }
        Op::Reshape { shape } => {
            let x = args[0];
            if x.shape.symbols() != shape.symbols()
                || x.shape.fixed_product() != shape.fixed_product()
            {
                return Err(format!(
                    "reshape: cannot reshape {} to {} (element counts differ)",
                    x.shape, shape
                ));
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Output(_) | Op::AllReduce { .. } => args[0].clone(),
        Op::AllGather { ranks } => {
            let x = args[0];
            let Some(Dim::Fixed(n)) = x.shape.last() else {
                return Err(format!(
                    "all_gather: the last dim of {} must be fixed",
                    x.shape
                ));
            };
            let mut shape = x.shape.0.clone();
            *shape.last_mut().expect("checked") = Dim::Fixed(n * ranks);
            TensorType::new(x.dtype, Shape(shape))
        }
        Op::KvWrite { .. } => {
            let (x, pos) = (args[0], args[1]);
            float(0, "the input")?;
            rank(0, 4, "the input [batch, seq, kv_heads, head_dim]")?;
            positions_match(name, pos, x)?;
            let mut shape = x.shape.0.clone();
            shape[1] = Dim::Sym(CTX.into());
            TensorType::new(x.dtype, Shape(shape))
        }
        Op::Slice { start, len } => {
            let x = args[0];
            match x.shape.last() {
                Some(Dim::Fixed(n)) if start + len <= *n && *len > 0 => {}
                d => {
                    return Err(format!(
                        "slice: features {start}..{} do not fit the last dim {}",
                        start + len,
                        d.map(|d| d.to_string()).unwrap_or_default()
                    ))
                }
            }
            let mut shape = x.shape.0.clone();
            *shape.last_mut().expect("checked") = Dim::Fixed(*len);
            TensorType::new(x.dtype, Shape(shape))
        }
        Op::NormLinear { .. }
        | Op::NormLinearSwiGlu { .. }
        | Op::LinearBias
        | Op::NormLinearBias { .. }
        | Op::LinearAdd
        | Op::SiluMul
        | Op::NormRope { .. }
        | Op::NormRopeKvWrite { .. }
        | Op::RopeKvWrite { .. } => super::infer_fused::infer_fused(op, args)?,
    };
    Ok(Some(ty))
}

pub(super) fn positions_match(name: &str, pos: &TensorType, x: &TensorType) -> Result<(), String> {
    if pos.dtype != DType::I32 || pos.shape.0[..] != x.shape.0[..2] {
        return Err(format!(
            "{name}: positions {pos} must be i32 with the input's first two dims {}",
            x.shape
        ));
    }
    Ok(())
}

/// The result of a gate/up product `[.., 2I]` halved to `[.., I]`.
pub(super) fn swiglu_halve(name: &str, mut t: TensorType) -> Result<TensorType, String> {
    match t.shape.0.last_mut() {
        Some(Dim::Fixed(n)) if *n % 2 == 0 => {
            *n /= 2;
            Ok(t)
        }
        _ => Err(format!(
            "{name}: the gate/up weight must have an even number of rows, got {}",
            t.shape
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::op::{CacheKind, Rope};

    fn t(dtype: DType, dims: &[&str]) -> TensorType {
        TensorType::new(
            dtype,
            Shape(
                dims.iter()
                    .map(|d| match d.parse::<usize>() {
                        Ok(n) => Dim::Fixed(n),
                        Err(_) => Dim::Sym(d.to_string()),
                    })
                    .collect(),
            ),
        )
    }
    use DType::{BF16, F32, I32};

    fn ok(op: Op, args: &[&TensorType]) -> TensorType {
        infer(&op, args).unwrap().unwrap()
    }
    fn err(op: Op, args: &[&TensorType]) -> String {
        infer(&op, args).unwrap_err()
    }

    #[test]
    fn leaves_are_not_inferred() {
        assert_eq!(
            infer(&Op::Input(crate::ir::InputRole::TokenIds), &[]),
            Ok(None)
        );
    }

    #[test]
    fn embed() {
        let table = t(BF16, &["512", "64"]);
        let ids = t(I32, &["batch", "seq"]);
        assert_eq!(
            ok(Op::Embed, &[&table, &ids]),
            t(BF16, &["batch", "seq", "64"])
        );
        assert!(err(Op::Embed, &[&table, &t(F32, &["batch", "seq"])]).contains("ids must be i32"));
        assert!(err(Op::Embed, &[&t(BF16, &["64"]), &ids]).contains("rank 2"));
    }

    #[test]
    fn linear_and_matmul() {
        let x = t(BF16, &["batch", "seq", "64"]);
        let w = t(BF16, &["128", "64"]);
        assert_eq!(ok(Op::Linear, &[&x, &w]), t(BF16, &["batch", "seq", "128"]));
        let e = err(Op::Linear, &[&x, &t(BF16, &["64", "128"])]);
        assert_eq!(e, "linear: input [batch, seq, 64] does not match weight [64, 128] (last input dim must equal the weight's second dim)");
        assert!(err(Op::Linear, &[&x, &t(F32, &["128", "64"])]).contains("dtypes differ"));
        let b = t(BF16, &["64", "32"]);
        assert_eq!(ok(Op::MatMul, &[&x, &b]), t(BF16, &["batch", "seq", "32"]));
        assert!(err(Op::MatMul, &[&x, &w]).contains("do not chain"));
    }

    #[test]
    fn rmsnorm() {
        let x = t(BF16, &["batch", "seq", "4", "32"]);
        let w = t(BF16, &["32"]);
        assert_eq!(ok(Op::RmsNorm { eps: 1e-6 }, &[&x, &w]), x);
        assert!(err(Op::RmsNorm { eps: 1e-6 }, &[&x, &t(BF16, &["64"])]).contains("does not match"));
        assert!(err(Op::RmsNorm { eps: 0.0 }, &[&x, &w]).contains("eps"));
    }

    #[test]
    fn rope() {
        let x = t(BF16, &["batch", "seq", "4", "32"]);
        let pos = t(I32, &["batch", "seq"]);
        assert_eq!(
            ok(
                Op::Rope {
                    rope: Rope::plain(1e6)
                },
                &[&x, &pos]
            ),
            x
        );
        let odd = t(BF16, &["batch", "seq", "4", "33"]);
        assert!(err(
            Op::Rope {
                rope: Rope::plain(1e6)
            },
            &[&odd, &pos]
        )
        .contains("even"));
        assert!(err(
            Op::Rope {
                rope: Rope::plain(1e6)
            },
            &[&x, &t(I32, &["seq"])]
        )
        .contains("positions"));
        assert!(err(
            Op::Rope {
                rope: Rope::plain(-1.0)
            },
            &[&x, &pos]
        )
        .contains("theta"));
    }

    #[test]
    fn kv_append() {
        let k = t(BF16, &["batch", "seq", "2", "32"]);
        let op = Op::KvAppend {
            layer: 0,
            cache: CacheKind::K,
        };
        assert_eq!(ok(op.clone(), &[&k]), t(BF16, &["batch", "ctx", "2", "32"]));
        assert!(err(op, &[&t(BF16, &["batch", "seq", "64"])]).contains("rank 4"));
    }

    #[test]
    fn attention() {
        let q = t(BF16, &["batch", "seq", "4", "32"]);
        let k = t(BF16, &["batch", "ctx", "2", "32"]);
        let pos = t(I32, &["batch", "seq"]);
        let op = Op::Attention { scale: 0.17 };
        assert_eq!(ok(op.clone(), &[&q, &k, &k, &pos]), q);
        let k3 = t(BF16, &["batch", "ctx", "3", "32"]);
        assert!(err(op.clone(), &[&q, &k3, &k3, &pos]).contains("multiple of kv heads"));
        let k64 = t(BF16, &["batch", "ctx", "2", "64"]);
        assert!(err(op.clone(), &[&q, &k64, &k64, &pos]).contains("head_dim"));
        assert!(err(op, &[&q, &k, &k64, &pos]).contains("differ"));
    }

    #[test]
    fn elementwise() {
        let a = t(BF16, &["batch", "seq", "64"]);
        assert_eq!(ok(Op::Silu, &[&a]), a);
        assert_eq!(ok(Op::Mul, &[&a, &a]), a);
        assert_eq!(ok(Op::Add, &[&a, &a]), a);
        let b = t(BF16, &["batch", "seq", "128"]);
        assert_eq!(
            err(Op::Add, &[&a, &b]),
            "add: operand types differ: bf16[batch, seq, 64] vs bf16[batch, seq, 128]"
        );
        assert!(err(Op::Silu, &[&t(I32, &["3"])]).contains("float"));
    }

    #[test]
    fn reshape() {
        let a = t(BF16, &["batch", "seq", "128"]);
        let to = t(BF16, &["batch", "seq", "4", "32"]).shape;
        assert_eq!(ok(Op::Reshape { shape: to }, &[&a]).shape.rank(), 4);
        let bad = t(BF16, &["batch", "seq", "4", "16"]).shape;
        assert!(err(Op::Reshape { shape: bad }, &[&a]).contains("element counts differ"));
        let moved = t(BF16, &["seq", "batch", "128"]).shape;
        assert!(err(
            Op::Reshape {
                shape: moved.clone()
            },
            &[&a]
        )
        .contains("cannot reshape"));
        let _ = moved;
    }

    #[test]
    fn fused_ops_agree_with_their_parts() {
        let x = t(BF16, &["batch", "seq", "64"]);
        let nw = t(BF16, &["64"]);
        let w = t(BF16, &["96", "64"]);
        assert_eq!(
            ok(Op::NormLinear { eps: 1e-6 }, &[&x, &nw, &w]),
            t(BF16, &["batch", "seq", "96"])
        );
        assert_eq!(
            ok(Op::NormLinearSwiGlu { eps: 1e-6 }, &[&x, &nw, &w]),
            t(BF16, &["batch", "seq", "48"])
        );
        let wo = t(BF16, &["64", "96"]);
        let h = t(BF16, &["batch", "seq", "96"]);
        assert_eq!(ok(Op::LinearAdd, &[&h, &wo, &x]), x);
        assert!(err(Op::LinearAdd, &[&h, &wo, &h]).contains("differ"));
        assert_eq!(ok(Op::SiluMul, &[&x, &x]), x);
        assert_eq!(
            ok(Op::Slice { start: 32, len: 32 }, &[&x]),
            t(BF16, &["batch", "seq", "32"])
        );
        assert!(err(Op::Slice { start: 40, len: 32 }, &[&x]).contains("do not fit"));
        let q = t(BF16, &["batch", "seq", "4", "32"]);
        let qn = t(BF16, &["32"]);
        let pos = t(I32, &["batch", "seq"]);
        assert_eq!(
            ok(
                Op::NormRope {
                    eps: 1e-6,
                    rope: Rope::plain(1e6)
                },
                &[&q, &qn, &pos]
            ),
            q
        );
        let k = t(BF16, &["batch", "seq", "2", "32"]);
        let kw = Op::NormRopeKvWrite {
            eps: 1e-6,
            rope: Rope::plain(1e6),
            layer: 0,
            cache: CacheKind::K,
        };
        assert_eq!(
            ok(kw, &[&k, &qn, &pos]),
            t(BF16, &["batch", "ctx", "2", "32"])
        );
        let w = Op::KvWrite {
            layer: 0,
            cache: CacheKind::V,
        };
        assert_eq!(
            ok(w.clone(), &[&k, &pos]),
            t(BF16, &["batch", "ctx", "2", "32"])
        );
        assert!(err(w, &[&k, &t(I32, &["seq"])]).contains("positions"));
    }

    #[test]
    fn output_and_arity() {
        let a = t(F32, &["3"]);
        assert_eq!(ok(Op::Output(crate::ir::OutputRole::Logits), &[&a]), a);
        assert_eq!(err(Op::Add, &[&a]), "add takes 2 operand(s), got 1");
    }
}
