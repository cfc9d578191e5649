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

/// A weight that is tied to another or concatenated from parts is not a plain weight: the
/// norm rules bind their norm weight only to a plain one.
#[test]
fn norm_weights_that_are_tied_or_concatenated_are_not_bound() {
    for (concat, tied) in [
        (vec![("a".to_string(), 4), ("b".to_string(), 4)], vec![]),
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
