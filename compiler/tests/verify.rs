//! The verifier's rejections: each broken graph gives its own message.

use pio_compiler::ir::verify::verify;
use pio_compiler::ir::*;

fn ty(dtype: DType, dims: &[usize]) -> TensorType {
    TensorType::new(dtype, Shape::fixed(dims))
}

fn weight(name: &str, dims: &[usize]) -> Node {
    Node {
        name: name.into(),
        op: Op::Weight(WeightBinding {
            hf_name: format!("{name}.weight"),
            tied: vec![],
            concat: vec![],
            init: Init::Ones,
            shard: None,
        }),
        ty: ty(DType::F32, dims),
    }
}

fn node(name: &str, op: Op, dims: &[usize]) -> Node {
    Node {
        name: name.into(),
        op,
        ty: ty(DType::F32, dims),
    }
}

/// a (weight [4]) -> silu -> output
fn small() -> (Graph, NodeId, NodeId, NodeId) {
    let mut g = Graph::new("t", vec![]);
    let a = g.add(weight("a", &[4]), &[]);
    let s = g.add(node("s", Op::Silu, &[4]), &[a]);
    let o = g.add(node("out", Op::Output(OutputRole::Logits), &[4]), &[s]);
    (g, a, s, o)
}

fn problems(g: &Graph) -> String {
    verify(g, Some("test")).unwrap_err().to_string()
}

#[test]
fn a_valid_graph_passes() {
    assert_eq!(verify(&small().0, None), Ok(()));
}

#[test]
fn cycle() {
    let (mut g, a, s, _) = small();
    let m = g.add(node("m", Op::Mul, &[4]), &[s, s]);
    g.connect(m, s, 1);
    let _ = a;
    let e = problems(&g);
    assert!(
        e.contains("IR verification failed after pass 'test'"),
        "{e}"
    );
    assert!(e.contains("cycle through s, m"), "{e}");
}

#[test]
fn wrong_arity() {
    let (mut g, a, _, _) = small();
    let bad = g.add(node("bad", Op::Add, &[4]), &[a]);
    g.add(node("o2", Op::Output(OutputRole::Logits), &[4]), &[bad]);
    assert!(problems(&g)
        .contains("node 'bad' (add): expects 2 operand(s) in slots 0..2, has slots [0]"));
}

#[test]
fn recorded_type_differs_from_inferred() {
    let (mut g, _, s, _) = small();
    g.node_mut(s).ty = ty(DType::F32, &[5]);
    let e = problems(&g);
    assert!(
        e.contains("node 's' (silu): recorded type f32[5] but operands give f32[4]"),
        "{e}"
    );
}

#[test]
fn dtype_mismatch() {
    let (mut g, a, _, _) = small();
    let b = g.add(
        Node {
            name: "b".into(),
            op: Op::Input(InputRole::TokenIds),
            ty: ty(DType::I32, &[4]),
        },
        &[],
    );
    let m = g.add(node("m", Op::Mul, &[4]), &[a, b]);
    g.add(node("o2", Op::Output(OutputRole::Logits), &[4]), &[m]);
    let e = problems(&g);
    assert!(
        e.contains("node 'm' (mul): mul: operand types differ: f32[4] vs i32[4]"),
        "{e}"
    );
}

#[test]
fn unbound_weight() {
    let (mut g, a, _, _) = small();
    if let Op::Weight(b) = &mut g.node_mut(a).op {
        b.hf_name.clear();
    }
    assert!(problems(&g).contains("node 'a' (weight): weight has no checkpoint binding"));
}

#[test]
fn one_checkpoint_tensor_bound_twice() {
    let (mut g, _, s, _) = small();
    let mut w = weight("b", &[4]);
    if let Op::Weight(b) = &mut w.op {
        b.hf_name = "a.weight".into();
    }
    let b = g.add(w, &[]);
    let m = g.add(node("m", Op::Mul, &[4]), &[s, b]);
    g.add(node("o2", Op::Output(OutputRole::Logits), &[4]), &[m]);
    let e = problems(&g);
    assert!(
        e.contains("checkpoint tensor 'a.weight' is also bound by 'a'"),
        "{e}"
    );
}

#[test]
fn dangling_value() {
    let (mut g, a, _, _) = small();
    g.add(node("unused", Op::Silu, &[4]), &[a]);
    assert!(problems(&g).contains("node 'unused' (silu): value is never used"));
}

#[test]
fn duplicate_names() {
    let (mut g, a, _, _) = small();
    let s2 = g.add(node("s", Op::Silu, &[4]), &[a]);
    g.add(node("o2", Op::Output(OutputRole::Logits), &[4]), &[s2]);
    assert!(problems(&g).contains("node name 's' is used 2 times"));
}

#[test]
fn undeclared_symbolic_dim() {
    let mut g = Graph::new("t", vec![]);
    let i = g.add(
        Node {
            name: "x".into(),
            op: Op::Input(InputRole::TokenIds),
            ty: TensorType::new(DType::F32, Shape(vec![Dim::Sym("seq".into())])),
        },
        &[],
    );
    let o = node("out", Op::Output(OutputRole::Logits), &[1]);
    let o = Node {
        ty: g.node(i).ty.clone(),
        ..o
    };
    g.add(o, &[i]);
    assert!(problems(&g).contains("node 'x' (input): symbolic dim 'seq' is not declared"));
}

#[test]
fn no_outputs_and_output_feeding_a_node() {
    let mut g = Graph::new("t", vec![]);
    g.add(weight("a", &[4]), &[]);
    let e = problems(&g);
    assert!(e.contains("the graph has no outputs"), "{e}");

    let (mut g, _, _, o) = small();
    let s2 = g.add(node("s2", Op::Silu, &[4]), &[o]);
    g.add(node("o2", Op::Output(OutputRole::Logits), &[4]), &[s2]);
    assert!(problems(&g).contains("node 'out' (output): an output must not feed other nodes"));
}

#[test]
fn the_real_specs_verify_and_count_exactly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
    for (file, params, kv, layers) in [
        ("qwen3-0.6b.yaml", 596_049_920u64, 114_688u64, 28usize),
        ("qwen3-4b-instruct-2507.yaml", 4_022_468_096, 147_456, 36),
        ("qwen3-tiny.yaml", 119_232, 512, 2),
    ] {
        let spec = pio_compiler::spec::load(&root.join(file)).unwrap();
        let g = pio_compiler::lower::lower(&spec).unwrap();
        verify(&g, None).unwrap();
        let s = pio_compiler::summary::summarize(&g);
        assert_eq!(
            (s.params, s.kv_bytes_per_token, s.layers),
            (params, kv, layers),
            "{file}"
        );
        assert_eq!(s.weight_bytes, 2 * params);
    }
}

#[test]
fn printing_is_deterministic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
    let spec = pio_compiler::spec::load(&root.join("qwen3-tiny.yaml")).unwrap();
    let a = print::print(&pio_compiler::lower::lower(&spec).unwrap());
    let b = print::print(&pio_compiler::lower::lower(&spec).unwrap());
    assert_eq!(a, b);
    assert!(a.starts_with("graph \"Qwen3-tiny\" dims batch<=1 seq<=512 ctx<=512\n"));
    let dot = dot::to_dot(&pio_compiler::lower::lower(&spec).unwrap());
    assert!(dot.starts_with("digraph \"Qwen3-tiny\" {") && dot.trim_end().ends_with('}'));
}
