//! The fusion rules' safety nets shown matches they must refuse (issue 19): an intermediate
//! that is used outside the match, and shapes that break a rule's legality condition. Each
//! graph is verified after the pass and the refused ops must still be there.

mod common;

use common::{leaf, node};
use pio_compiler::ir::*;
use pio_compiler::pass::{Fuse, Pass};

fn fuse(mut g: Graph) -> Graph {
    verify::verify(&g, None).unwrap();
    let mut rounds = 0;
    while Fuse::default().run(&mut g).unwrap() {
        rounds += 1;
        assert!(rounds < 20);
    }
    verify::verify(&g, Some("fuse")).unwrap();
    g
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.ids().filter(|&id| pred(&g.node(id).op)).count()
}

/// `h = rmsnorm(x)`, `y = linear(h, w)`: fusable into norm_linear, unless `h` is also used
/// elsewhere (here by a residual add), in which case the rmsnorm must stay.
fn norm_then_linear(h_used_outside: bool) -> Graph {
    let mut g = Graph::new("t", vec![]);
    let x = leaf(&mut g, "x", &[1, 1, 8]);
    let nw = leaf(&mut g, "nw", &[8]);
    let w = leaf(&mut g, "w", &[8, 8]);
    let h = node(&mut g, "h", Op::RmsNorm { eps: 1e-6 }, &[1, 1, 8], &[x, nw]);
    let y = node(&mut g, "y", Op::Linear, &[1, 1, 8], &[h, w]);
    let out = if h_used_outside {
        node(&mut g, "z", Op::Add, &[1, 1, 8], &[y, h])
    } else {
        y
    };
    node(
        &mut g,
        "logits",
        Op::Output(OutputRole::Logits),
        &[1, 1, 8],
        &[out],
    );
    g
}

#[test]
fn a_norm_whose_output_is_used_elsewhere_is_not_fused_away() {
    // The control: alone, the pair fuses.
    let alone = fuse(norm_then_linear(false));
    assert_eq!(count(&alone, |o| matches!(o, Op::RmsNorm { .. })), 0);
    assert_eq!(count(&alone, |o| matches!(o, Op::NormLinear { .. })), 1);
    // With an outside use the rmsnorm is kept (and the add still reads it).
    let g = fuse(norm_then_linear(true));
    assert_eq!(
        count(&g, |o| matches!(o, Op::RmsNorm { .. })),
        1,
        "{}",
        print::print(&g)
    );
}

/// `y = norm_linear(x, nw, W[16, 8])`, `gate`/`up` slices of it, `silu(gate) * up`.
fn swiglu(gate_start: usize, up_start: usize, len: usize) -> Graph {
    let mut g = Graph::new("t", vec![]);
    let x = leaf(&mut g, "x", &[1, 1, 8]);
    let nw = leaf(&mut g, "nw", &[8]);
    let w = leaf(&mut g, "w", &[16, 8]);
    let y = node(
        &mut g,
        "y",
        Op::NormLinear { eps: 1e-6 },
        &[1, 1, 16],
        &[x, nw, w],
    );
    let slice = |g: &mut Graph, name: &str, start: usize| {
        node(g, name, Op::Slice { start, len }, &[1, 1, len], &[y])
    };
    let gate = slice(&mut g, "gate", gate_start);
    let up = slice(&mut g, "up", up_start);
    let act = node(&mut g, "act", Op::Silu, &[1, 1, len], &[gate]);
    let root = node(&mut g, "root", Op::Mul, &[1, 1, len], &[act, up]);
    node(
        &mut g,
        "logits",
        Op::Output(OutputRole::Logits),
        &[1, 1, len],
        &[root],
    );
    g
}

#[test]
fn swiglu_fuses_only_gate_first_halves() {
    let fused = |g: &Graph| count(g, |o| matches!(o, Op::NormLinearSwiGlu { .. }));
    // The control: gate = first half, up = second half.
    assert_eq!(fused(&fuse(swiglu(0, 8, 8))), 1);
    // Swapped halves, overlapping slices, and slices that are not halves are refused.
    for (gate, up, len) in [(8, 0, 8), (0, 4, 8), (0, 4, 4), (0, 8, 4)] {
        let g = fuse(swiglu(gate, up, len));
        assert_eq!(
            fused(&g),
            0,
            "gate {gate}, up {up}, len {len}:\n{}",
            print::print(&g)
        );
    }
}

fn part(name: &str, rows: usize) -> ConcatPart {
    ConcatPart {
        hf_name: name.into(),
        rows,
        shard: None,
    }
}

/// A weight that is tied to another or concatenated from parts is not a plain weight: the
/// norm rules bind their norm weight only to a plain one.
#[test]
fn norm_weights_that_are_tied_or_concatenated_are_not_bound() {
    for (concat, tied) in [
        (vec![part("a", 4), part("b", 4)], vec![]),
        (vec![], vec!["other.weight".to_string()]),
    ] {
        let mut g = norm_then_linear(false);
        let nw = g.ids().find(|&id| g.node(id).name == "nw").unwrap();
        let Op::Weight(b) = &mut g.node_mut(nw).op else {
            unreachable!()
        };
        b.concat = concat.clone();
        b.tied = tied.clone();
        let g = fuse(g);
        assert_eq!(
            count(&g, |o| matches!(o, Op::NormLinear { .. })),
            0,
            "concat {concat:?}, tied {tied:?}"
        );
    }
}

/// Only add and mul match with their operands swapped: `linear(a, rmsnorm(x))` is not
/// `norm_linear(x, .., a)`, although both orders type-check here.
#[test]
fn only_commutative_ops_match_with_swapped_operands() {
    let mut g = Graph::new("t", vec![]);
    let a = leaf(&mut g, "a", &[8, 8]);
    let x = leaf(&mut g, "x", &[8, 8]);
    let nw = leaf(&mut g, "nw", &[8]);
    let h = node(&mut g, "h", Op::RmsNorm { eps: 1e-6 }, &[8, 8], &[x, nw]);
    let y = node(&mut g, "y", Op::Linear, &[8, 8], &[a, h]);
    node(
        &mut g,
        "logits",
        Op::Output(OutputRole::Logits),
        &[8, 8],
        &[y],
    );
    let g = fuse(g);
    assert_eq!(
        count(&g, |o| matches!(o, Op::NormLinear { .. })),
        0,
        "{}",
        print::print(&g)
    );
    // The control: the residual add of linear_add matches in either operand order.
    for swapped in [false, true] {
        let mut g = Graph::new("t", vec![]);
        let x = leaf(&mut g, "x", &[1, 1, 8]);
        let w = leaf(&mut g, "w", &[8, 8]);
        let r = leaf(&mut g, "r", &[1, 1, 8]);
        let y = node(&mut g, "y", Op::Linear, &[1, 1, 8], &[x, w]);
        let args = if swapped { [r, y] } else { [y, r] };
        let z = node(&mut g, "z", Op::Add, &[1, 1, 8], &args);
        node(
            &mut g,
            "logits",
            Op::Output(OutputRole::Logits),
            &[1, 1, 8],
            &[z],
        );
        let g = fuse(g);
        assert_eq!(
            count(&g, |o| matches!(o, Op::LinearAdd)),
            1,
            "swapped {swapped}"
        );
    }
}

/// `y = linear(x, w)`, `z = bias_add(y, b)`: fusable into linear_bias, unless the product
/// without its bias is also used elsewhere.
fn linear_then_bias(y_used_outside: bool) -> Graph {
    let mut g = Graph::new("t", vec![]);
    let x = leaf(&mut g, "x", &[1, 1, 8]);
    let w = leaf(&mut g, "w", &[8, 8]);
    let b = leaf(&mut g, "b", &[8]);
    let y = node(&mut g, "y", Op::Linear, &[1, 1, 8], &[x, w]);
    let z = node(&mut g, "z", Op::BiasAdd, &[1, 1, 8], &[y, b]);
    let out = if y_used_outside {
        node(&mut g, "s", Op::Add, &[1, 1, 8], &[z, y])
    } else {
        z
    };
    node(
        &mut g,
        "logits",
        Op::Output(OutputRole::Logits),
        &[1, 1, 8],
        &[out],
    );
    g
}

#[test]
fn a_product_used_without_its_bias_keeps_the_bias_apart() {
    let alone = fuse(linear_then_bias(false));
    assert_eq!(count(&alone, |o| matches!(o, Op::LinearBias)), 1);
    assert_eq!(count(&alone, |o| matches!(o, Op::BiasAdd)), 0);
    let g = fuse(linear_then_bias(true));
    assert_eq!(
        count(&g, |o| matches!(o, Op::BiasAdd)),
        1,
        "{}",
        print::print(&g)
    );
    assert_eq!(count(&g, |o| matches!(o, Op::LinearBias)), 0);
}

/// Two sibling linears of `x` with biases: merged with their biases concatenated when both
/// products are used only by their bias, and with plain slices (biases left alone) when one
/// product is also read without its bias.
fn sibling_biases(raw_used: bool) -> Graph {
    let mut g = Graph::new("t", vec![]);
    let x = leaf(&mut g, "x", &[1, 1, 8]);
    let (wq, wk) = (leaf(&mut g, "wq", &[8, 8]), leaf(&mut g, "wk", &[4, 8]));
    let (bq, bk) = (leaf(&mut g, "bq", &[8]), leaf(&mut g, "bk", &[4]));
    let q = node(&mut g, "q", Op::Linear, &[1, 1, 8], &[x, wq]);
    let k = node(&mut g, "k", Op::Linear, &[1, 1, 4], &[x, wk]);
    let qb = node(&mut g, "qb", Op::BiasAdd, &[1, 1, 8], &[q, bq]);
    let kb = node(&mut g, "kb", Op::BiasAdd, &[1, 1, 4], &[k, bk]);
    let w2 = leaf(&mut g, "w2", &[8, 4]);
    let k8 = node(&mut g, "k8", Op::Linear, &[1, 1, 8], &[kb, w2]);
    let mut sum = node(&mut g, "sum", Op::Add, &[1, 1, 8], &[qb, k8]);
    if raw_used {
        sum = node(&mut g, "sum2", Op::Add, &[1, 1, 8], &[sum, q]);
    }
    node(
        &mut g,
        "logits",
        Op::Output(OutputRole::Logits),
        &[1, 1, 8],
        &[sum],
    );
    g
}

#[test]
fn sibling_biases_merge_only_when_every_product_is_used_by_its_bias_alone() {
    let merged = fuse(sibling_biases(false));
    let concat = |g: &Graph| {
        count(
            g,
            |o| matches!(o, Op::Weight(w) if w.concat.len() == 2 && w.hf_name.contains("bq")),
        )
    };
    assert_eq!(concat(&merged), 1, "{}", print::print(&merged));
    assert_eq!(count(&merged, |o| matches!(o, Op::LinearBias)), 1);
    let apart = fuse(sibling_biases(true));
    assert_eq!(concat(&apart), 0, "{}", print::print(&apart));
    assert_eq!(count(&apart, |o| matches!(o, Op::BiasAdd)), 2);
}

/// `rope` then `kv_write`: fused into rope_kv_write, unless the roped keys are also read.
#[test]
fn roped_keys_used_elsewhere_keep_their_rope() {
    let build = |roped_used: bool| {
        let mut g = Graph::new(
            "t",
            vec![SymDim {
                name: "ctx".into(),
                bound: 4,
            }],
        );
        let x = leaf(&mut g, "x", &[1, 1, 2, 8]);
        let p = g.add(
            Node {
                name: "positions".into(),
                op: Op::Input(InputRole::Positions),
                ty: TensorType::new(DType::I32, Shape::fixed(&[1, 1])),
            },
            &[],
        );
        let rope = Op::Rope {
            rope: Rope::plain(1e4),
        };
        let r = node(&mut g, "r", rope, &[1, 1, 2, 8], &[x, p]);
        let kv = g.add(
            Node {
                name: "k_all".into(),
                op: Op::KvWrite {
                    layer: 0,
                    cache: CacheKind::K,
                },
                ty: TensorType::new(
                    DType::F32,
                    Shape(vec![
                        Dim::Fixed(1),
                        Dim::Sym("ctx".into()),
                        Dim::Fixed(2),
                        Dim::Fixed(8),
                    ]),
                ),
            },
            &[r, p],
        );
        let a = node(
            &mut g,
            "a",
            Op::Attention { scale: 0.5 },
            &[1, 1, 2, 8],
            &[if roped_used { r } else { x }, kv, kv, p],
        );
        node(
            &mut g,
            "logits",
            Op::Output(OutputRole::Logits),
            &[1, 1, 2, 8],
            &[a],
        );
        g
    };
    let alone = fuse(build(false));
    assert_eq!(count(&alone, |o| matches!(o, Op::RopeKvWrite { .. })), 1);
    let g = fuse(build(true));
    assert_eq!(
        count(&g, |o| matches!(o, Op::RopeKvWrite { .. })),
        0,
        "{}",
        print::print(&g)
    );
    assert_eq!(count(&g, |o| matches!(o, Op::Rope { .. })), 1);
}
