//! `interp::eval_node`, the CPU side of the per-kernel GPU checks, evaluates each node as the
//! executor's whole-model step does: walking a graph node by node through it gives the
//! executor's logits to the bit (lowered graph) and, for the fused graph, the same logits
//! within f32 rounding (its fused nodes decomposed one by one).

use pio_compiler::interp::{eval_node, CpuExecutor, Tensor};
use pio_compiler::ir::{Graph, InputRole, Op, OutputRole};
use pio_compiler::pass::{default_pipeline, PassOptions};
use std::collections::HashMap;
use std::path::Path;

fn load(name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let n: usize = shape.iter().product();
    let mut h = 0xcbf29ce484222325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let base = if name.contains("norm") { 1.0 } else { 0.0 };
    Ok((0..n)
        .map(|i| {
            let x =
                (h ^ (i as u64).wrapping_mul(0x9E3779B97F4A7C15)).wrapping_mul(0xff51afd7ed558ccd);
            base + ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect())
}

const PROMPT: [u32; 6] = [3, 141, 59, 265, 35, 7];

/// The logits of a prefill of PROMPT from position 0, node by node through `eval_node`.
fn node_by_node(g: &Graph) -> Vec<f32> {
    let seq = PROMPT.len();
    let dims = |s: &str| if s == "batch" { 1 } else { seq };
    let mut values: HashMap<_, Tensor> = HashMap::new();
    let mut logits = None;
    for id in g.topo_order().unwrap() {
        let node = g.node(id);
        let shape = node.ty.shape.concrete(&dims);
        let value = match &node.op {
            Op::Input(InputRole::TokenIds) => {
                Tensor::new(shape, PROMPT.iter().map(|&t| t as f32).collect())
            }
            Op::Input(InputRole::Positions) => {
                Tensor::new(shape, (0..seq).map(|p| p as f32).collect())
            }
            Op::Weight(b) if b.concat.is_empty() => {
                Tensor::new(shape.clone(), load(&b.hf_name, &shape).unwrap())
            }
            // Concatenated along the first axis, as the executor loads it.
            Op::Weight(b) => {
                let mut data = Vec::new();
                for p in &b.concat {
                    let part_shape: Vec<usize> =
                        [p.rows].into_iter().chain(shape[1..].to_vec()).collect();
                    data.extend(load(&p.hf_name, &part_shape).unwrap());
                }
                Tensor::new(shape, data)
            }
            Op::Output(OutputRole::Logits) => {
                logits = Some(values[&g.operands(id)[0]].data.clone());
                continue;
            }
            _ => {
                let operands: Vec<Tensor> =
                    g.operands(id).iter().map(|a| values[a].clone()).collect();
                eval_node(g, id, &operands, &shape).unwrap()
            }
        };
        values.insert(id, value);
    }
    logits.expect("the graph has logits")
}

fn executor_logits(g: &Graph) -> Vec<f32> {
    let mut ex = CpuExecutor::new(g.clone(), &mut load).unwrap();
    ex.step(&PROMPT).unwrap()[&OutputRole::Logits].data.clone()
}

fn lowered() -> Graph {
    let spec = pio_compiler::spec::load(Path::new("../model-specs/qwen3-tiny.yaml")).unwrap();
    pio_compiler::lower::lower(&spec).unwrap()
}

#[test]
fn each_node_alone_computes_what_the_executor_does() {
    let g = lowered();
    assert_eq!(node_by_node(&g), executor_logits(&g));
}

#[test]
fn fused_nodes_alone_compute_their_decomposition() {
    let mut g = lowered();
    let want = executor_logits(&g);
    default_pipeline(PassOptions::default())
        .unwrap()
        .run(&mut g)
        .unwrap();
    assert!(g.ids().any(|id| g.node(id).op.is_fused()));
    let got = node_by_node(&g);
    let diff: f32 = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let scale: f32 = want.iter().map(|a| a.abs()).fold(0.0, f32::max);
    assert!(
        diff <= 1e-5 * scale.max(1.0),
        "max |diff| {diff}, scale {scale}"
    );
}

#[test]
fn wrong_operands_are_errors() {
    let g = lowered();
    let id = g
        .ids()
        .find(|&id| matches!(g.node(id).op, Op::RmsNorm { .. }))
        .unwrap();
    let e = eval_node(&g, id, &[], &[1, 1, 4]).unwrap_err().to_string();
    assert!(e.contains("0 operands given for 2 slots"), "{e}");
    let w = g
        .ids()
        .find(|&id| matches!(g.node(id).op, Op::Weight(_)))
        .unwrap();
    assert!(eval_node(&g, w, &[], &[1]).is_err());
}
