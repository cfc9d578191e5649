//! The readable launch list (`launches-*.txt` of `pio-compile`).

use pio_artifact::{Arg, CollectiveOp, Dim, Step};
use std::fmt::Write;

/// A readable launch list: one line per step.
pub fn listing(steps: &[Step]) -> String {
    let dim = |d: &Dim| match d {
        Dim::Fixed(n) => n.to_string(),
        Dim::PerToken(1) => "T".into(),
        Dim::PerToken(n) => format!("{n}T"),
        Dim::TokenTiles(n) => format!("T/{n}"),
        Dim::Split { target, max } => format!("split({target}/T,<={max})"),
        Dim::SplitTokens { target, max } => format!("T if split({target}/T,<={max}) > 1 else 0"),
    };
    let arg = |a: &Arg| match a {
        Arg::Ptr { region, offset } => format!("{region:?}+{offset}").to_lowercase(),
        Arg::Tokens => "T".into(),
        Arg::I32(v) => v.to_string(),
        Arg::Rank => "rank".into(),
    };
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let _ = match s {
            Step::Kernel(l) => writeln!(
                out,
                "{i:>4} {:<32} grid=({},{},{}) block={} smem={} args=[{}]  # {}",
                l.kernel,
                dim(&l.grid[0]),
                dim(&l.grid[1]),
                dim(&l.grid[2]),
                l.block[0],
                l.shared_bytes,
                l.args.iter().map(arg).collect::<Vec<_>>().join(", "),
                l.node
            ),
            Step::Gemm(gm) => writeln!(
                out,
                "{i:>4} {:<32} m={} n={} k={} a={} lda={} b={} c={} ldc={} beta={}{}  # {}",
                "cublas_gemm_bf16",
                dim(&gm.m),
                gm.n,
                gm.k,
                arg(&gm.a),
                gm.lda,
                arg(&gm.b),
                arg(&gm.c),
                gm.ldc,
                gm.beta,
                logits_mark(gm.logits),
                gm.node
            ),
            Step::Collective(c) => writeln!(
                out,
                "{i:>4} {:<32} rows={} row={} in={} out={}{}{}  # {}",
                match c.op {
                    CollectiveOp::AllReduce => "nccl_all_reduce_sum_bf16",
                    CollectiveOp::AllGather => "nccl_all_gather_bf16",
                },
                dim(&c.rows),
                c.row,
                arg(&c.input),
                arg(&c.output),
                c.scratch
                    .as_ref()
                    .map_or(String::new(), |s| format!(" scratch={}", arg(s))),
                logits_mark(c.logits),
                c.node
            ),
        };
    }
    out
}

/// A logits step's mark: it takes the step's last row only, unless every row is asked for.
fn logits_mark(logits: bool) -> &'static str {
    match logits {
        true => " logits=last-row",
        false => "",
    }
}
