#!/usr/bin/env python3
"""Writes the broken-spec corpus in tests/specs/broken/ from mini.yaml and mini-variant.yaml.

Each case makes one file broken in one way (or a few, where the case is about reporting several
problems at once). The expected error text of each case is in broken/NAME.expected and is checked
by compiler/tests/broken_specs.rs (PIO_BLESS=1 rewrites the .expected files; review the diff by hand).
Run: python3 tests/specs/make_broken.py
"""
import os, pathlib

HERE = pathlib.Path(__file__).parent
OUT = HERE / "broken"
FAMILY = (HERE / "mini.yaml").read_text()
VARIANT = (HERE / "mini-variant.yaml").read_text().replace(
    "tokenizer: mini.yaml", "tokenizer: ../mini.yaml").replace(
    "chat_template: mini.yaml", "chat_template: ../mini.yaml")

def sub(text, find, repl):
    assert find in text, f"pattern not found: {find!r}"
    return text.replace(find, repl, 1)

# (name, which, list of (find, replace)) ; which: variant | family
CASES = [
    ("unknown-op", "family", [("h: {op: rmsnorm,", "h: {op: rmsnrom,")]),
    ("unknown-tensor", "family", [("o: {op: linear, in: [a3, wo]}", "o: {op: linear, in: [a4, wo]}")]),
    ("shape-mismatch-add", "family", [("x_out: {op: add, in: [x, o]}", "x_out: {op: add, in: [x, q]}")]),
    ("missing-weight-binding", "family", [('wk: {shape: [kv_heads*head_dim, hidden], hf: "model.layers.{layer}.k.weight"}', "wk: {shape: [kv_heads*head_dim, hidden]}")]),
    ("duplicate-tensor-name", "family", [("    q: {op: linear, in: [h, wq]}", "    norm: {op: linear, in: [h, wq]}"), ("q4: {op: reshape, in: [q]", "q4: {op: reshape, in: [norm]")]),
    ("duplicate-yaml-key", "family", [("    k: {op: linear, in: [h, wk]}", "    q: {op: linear, in: [h, wk]}")]),
    ("cycle", "family", [("h: {op: rmsnorm, in: [x, ln], eps: eps}", "h: {op: rmsnorm, in: [o, ln], eps: eps}")]),
    ("self-cycle", "family", [("q: {op: linear, in: [h, wq]}", "q: {op: linear, in: [q, wq]}")]),
    ("layer-binding-without-index", "family", [('hf: "model.layers.{layer}.q.weight"', 'hf: "model.layers.q.weight"')]),
    ("wrong-arity", "family", [("o: {op: linear, in: [a3, wo]}", "o: {op: linear, in: [a3, wo, wq, wq]}")]),
    ("bias-wrong-shape", "family", [("o: {op: linear, in: [a3, wo]}", "o: {op: linear, in: [a3, wo, wq]}")]),
    ("rope-scaling-attr-not-rope", "family", [("qr: {op: rope, in: [q4, positions], theta: theta}", "qr: {op: rope, in: [q4, positions], theta: theta, scaling: theta}")]),
    ("unknown-attribute", "family", [("q: {op: linear, in: [h, wq]}", "q: {op: linear, in: [h, wq], bias: true}")]),
    ("missing-attribute", "family", [("xf: {op: rmsnorm, in: [x_out, norm], eps: eps}", "xf: {op: rmsnorm, in: [x_out, norm]}")]),
    ("dangling-output", "family", [("    x_out: {op: add, in: [x, o]}", "    x_out: {op: add, in: [x, o]}\n    extra: {op: silu, in: [o]}")]),
    ("unused-weight", "family", [("    ln: {shape: [hidden]", "    spare: {shape: [hidden], hf: \"model.layers.{layer}.spare.weight\"}\n    ln: {shape: [hidden]")]),
    ("shard-unknown-split", "family", [('wq: {shape: [heads*head_dim, hidden], hf:', 'wq: {shape: [heads*head_dim, hidden], shard: diagonal, hf:')]),
    ("shard-uneven-groups", "family", [('wq: {shape: [heads*head_dim, hidden], hf:', 'wq: {shape: [heads*head_dim, hidden], shard: {split: rows, groups: heads*3}, hf:')]),
    ("shard-cols-of-vector", "family", [('ln: {shape: [hidden], hf:', 'ln: {shape: [hidden], shard: cols, hf:')]),
    ("unknown-hyper-in-shape", "family", [("wq: {shape: [heads*head_dim, hidden]", "wq: {shape: [head*head_dim, hidden]")]),
    ("tie-to-missing", "family", [("tie_to: embed}", "tie_to: embedding}")]),
    ("negative-init-std", "family", [("  max_batch: {type: int, default: 1}", "  max_batch: {type: int, default: 1}\n  init_std: {type: float, default: -0.5}")]),
    ("huge-default", "family", [("  max_batch: {type: int, default: 1}", "  max_batch: {type: int, default: 99999999}")]),
    ("symbolic-dim-in-expression", "family", [("a3: {op: reshape, in: [a], shape: [batch, seq, heads*head_dim]}", "a3: {op: reshape, in: [a], shape: [batch, seq, seq*head_dim]}")]),
    ("float-in-shape", "family", [("a3: {op: reshape, in: [a], shape: [batch, seq, heads*head_dim]}", "a3: {op: reshape, in: [a], shape: [batch, seq, eps*head_dim]}")]),
    ("tie-if-not-bool", "family", [("tie_to: embed}", "tie_to: {weight: embed, if: eps}}")]),
    ("tie-if-unknown", "family", [("tie_to: embed}", "tie_to: {weight: embed, if: tied}}")]),
    ("bool-default-not-bool", "family", [("  max_batch: {type: int, default: 1}", "  max_batch: {type: int, default: 1}\n  tied: {type: bool, default: yes}"), ("tie_to: embed}", "tie_to: {weight: embed, if: tied}}")]),
    ("no-outputs", "family", [("outputs:\n  logits: logits_raw\n", "")]),
    ("bad-dtype", "family", [("dtype: bf16", "dtype: bf17")]),
    ("reshape-count", "family", [("a3: {op: reshape, in: [a], shape: [batch, seq, heads*head_dim]}", "a3: {op: reshape, in: [a], shape: [batch, seq, hidden*3]}")]),
    ("several-problems", "family", [("h: {op: rmsnorm,", "h: {op: rmsnrom,"), ("o: {op: linear, in: [a3, wo]}", "o: {op: linear, in: [a3, w_o]}"), ("q: {op: linear, in: [h, wq]}", "q: {op: linear, in: [h, wq], bias: true}")]),
    ("several-parse-problems", "family", [("  theta: {type: float, default: 10000}", "  theta: {type: flaot, default: 10000}"), ("  ctx: max_context", "  ctx: max_contxt"), ("architecture: MiniForCausalLM", "architecture: []")]),
    ("unknown-hyperparameter", "variant", [("  hidden: 32", "  hiden: 32")]),
    ("missing-hyperparameter", "variant", [("  head_dim: 16\n", "")]),
    ("float-for-int", "variant", [("heads: 4", "heads: 4.5")]),
    ("bool-for-int", "variant", [("heads: 4", "heads: true")]),
    ("huge-hyperparameter", "variant", [("hidden: 32", "hidden: 100000000")]),
    ("too-big-tensor", "variant", [("vocab: 64", "vocab: 16777216"), ("hidden: 32", "hidden: 4097")]),
    ("too-many-params", "variant", [("hidden: 32", "hidden: 16777216"), ("layers: 1", "layers: 1024")]),
    ("infinite-float", "variant", [("  vocab: 64", "  vocab: 64\n  eps: 1e999")]),
    ("float-past-f32", "variant", [("  vocab: 64", "  vocab: 64\n  theta: 1e300")]),
    ("too-many-layers", "variant", [("layers: 1", "layers: 16777216")]),
    ("word-for-number", "variant", [("heads: 4", "heads: four")]),
    ("zero-layers", "variant", [("layers: 1", "layers: 0")]),
    ("gqa-mismatch", "variant", [("kv_heads: 2", "kv_heads: 3")]),
    ("odd-head-dim", "variant", [("head_dim: 16", "head_dim: 15")]),
    ("missing-family", "variant", [("family: ../mini.yaml", "family: ../maxi.yaml")]),
    ("family-is-variant", "variant", [("family: ../mini.yaml", "family: ../mini-variant.yaml")]),
    ("unknown-variant-key", "variant", [("name: Mini", "name: Mini\nhyper_parameters: {}")]),
    ("missing-tokenizer-file", "variant", [("tokenizer: ../mini.yaml", "tokenizer: ../no-such-tokenizer.json")]),
    ("bad-eos", "variant", [("eos_token_ids: [1]", "eos_token_ids: [-1]")]),
    ("bad-top-p", "variant", [("eos_token_ids: [1]", "eos_token_ids: [1]\n  sampling: {top_p: 1.5}")]),
    ("syntax-error", "variant", [("  vocab: 64", "  vocab: [64")]),
]

# Cases about a rope_scaling hyperparameter: the family declares one (and a rope uses it), the
# variant sets it; (name, variant edits).
ROPE_FAMILY = [
    ("  max_batch: {type: int, default: 1}", "  max_batch: {type: int, default: 1}\n  scaling: {type: rope_scaling, default: null}"),
    ("qr: {op: rope, in: [q4, positions], theta: theta}", "qr: {op: rope, in: [q4, positions], theta: theta, scaling: scaling}"),
    ("kr: {op: rope, in: [k4, positions], theta: theta}", "kr: {op: rope, in: [k4, positions], theta: theta, scaling: scaling}"),
]
ROPE_CASES = [
    ("rope-scaling-unknown-type", [("  layers: 1", "  layers: 1\n  scaling: {rope_type: dynamic, factor: 2.0}")]),
    ("rope-scaling-unknown-field", [("  layers: 1", "  layers: 1\n  scaling: {rope_type: linear, factor: 2.0, beta_fast: 3}")]),
    ("rope-scaling-bad-bands", [("  layers: 1", "  layers: 1\n  scaling: {rope_type: llama3, factor: 8.0, low_freq_factor: 4.0, high_freq_factor: 1.0, original_max_position_embeddings: 64}")]),
    ("rope-scaling-not-a-map", [("  layers: 1", "  layers: 1\n  scaling: 2.0")]),
    ("map-for-int", [("heads: 4", "heads: {rope_type: linear, factor: 2.0}")]),
]

RAW = {
    "empty": "",
    "only-comments": "# nothing here\n\n",
    "top-level-list": "- family: mini\n- name: Mini\n",
    "deep-nesting": "family: " + "[" * 200 + "]" * 200 + "\n",
    "not-a-spec": "hello: world\n",
}

def main():
    OUT.mkdir(exist_ok=True)
    # Overwrites its own cases only: the folder also holds cases written by hand.
    for name, which, edits in CASES:
        if which == "family":
            fam = FAMILY
            for a, b in edits:
                fam = sub(fam, a, b)
            (OUT / f"{name}.family.yaml").write_text(fam)
            var = sub(VARIANT, "family: mini", f"family: {name}.family.yaml")
        else:
            var = sub(VARIANT, "family: mini", "family: ../mini.yaml")
            for a, b in edits:
                var = sub(var, a, b)
        (OUT / f"{name}.yaml").write_text(var)
    for name, edits in ROPE_CASES:
        fam = FAMILY
        for a, b in ROPE_FAMILY:
            fam = sub(fam, a, b)
        (OUT / f"{name}.family.yaml").write_text(fam)
        var = sub(VARIANT, "family: mini", f"family: {name}.family.yaml")
        for a, b in edits:
            var = sub(var, a, b)
        (OUT / f"{name}.yaml").write_text(var)
    for name, text in RAW.items():
        (OUT / f"{name}.yaml").write_text(text)
    (OUT / "binary-junk.yaml").write_bytes(b"family: mini\nname: \xff\xfe\x00\x01junk\n")
    print(f"wrote {len(CASES) + len(ROPE_CASES) + len(RAW) + 1} cases to {OUT}")

main()
