#!/usr/bin/env python3
"""HF transformers' RoPE frequency tables for the rope scalings pio computes (GPU machine, where
transformers lives; the tables are computed on the CPU, as transformers does at load).

For each case, a config.json-shaped dict goes through the model class's own config and rotary
embedding (Llama, Qwen2, Qwen3), and its `inv_freq` (f32) and `attention_scaling` are written
to a JSON fixture; compiler/tests/rope_tables.rs checks pio's tables against it bit for bit.

  python3 tests/reference/hf_rope_tables.py --out tests/fixtures/hf_rope_tables.json
"""
import argparse, copy, datetime, importlib, json

import torch
import transformers

LLAMA3_32 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 8192}
LLAMA3_8 = dict(LLAMA3_32, factor=8.0)

# name: (model_type, config fields)
CASES = {
    "llama-3.2-1b": ("llama", dict(hidden_size=2048, num_attention_heads=32, head_dim=64,
                                   rope_theta=500000.0, max_position_embeddings=131072, rope_scaling=LLAMA3_32)),
    "llama-3.1-8b": ("llama", dict(hidden_size=4096, num_attention_heads=32,
                                   rope_theta=500000.0, max_position_embeddings=131072, rope_scaling=LLAMA3_8)),
    "llama-linear": ("llama", dict(hidden_size=4096, num_attention_heads=32, rope_theta=10000.0,
                                   max_position_embeddings=8192,
                                   rope_scaling={"rope_type": "linear", "factor": 2.0})),
    "llama-tiny": ("llama", dict(hidden_size=64, num_attention_heads=4, head_dim=16, rope_theta=500000.0,
                                 max_position_embeddings=512,
                                 rope_scaling=dict(LLAMA3_8, original_max_position_embeddings=64))),
    "qwen3-yarn-131072": ("qwen3", dict(hidden_size=1024, num_attention_heads=16, head_dim=128,
                                        rope_theta=1000000.0, max_position_embeddings=131072,
                                        rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                      "original_max_position_embeddings": 32768})),
    "qwen3-yarn-40960": ("qwen3", dict(hidden_size=1024, num_attention_heads=16, head_dim=128,
                                       rope_theta=1000000.0, max_position_embeddings=40960,
                                       rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                     "original_max_position_embeddings": 32768})),
    "qwen3-tiny-yarn": ("qwen3", dict(hidden_size=64, num_attention_heads=4, head_dim=32, rope_theta=10000.0,
                                      max_position_embeddings=512,
                                      rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 64})),
    "qwen2-yarn-type-key": ("qwen2", dict(hidden_size=1536, num_attention_heads=12, rope_theta=1000000.0,
                                          max_position_embeddings=131072,
                                          rope_scaling={"type": "yarn", "factor": 4.0,
                                                        "original_max_position_embeddings": 32768})),
    "qwen3-plain": ("qwen3", dict(hidden_size=1024, num_attention_heads=16, head_dim=128,
                                  rope_theta=1000000.0, max_position_embeddings=40960, rope_scaling=None)),
    "qwen3-2507-plain": ("qwen3", dict(hidden_size=2560, num_attention_heads=32, head_dim=128,
                                       rope_theta=5000000.0, max_position_embeddings=262144, rope_scaling=None)),
}
CLASSES = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}


def table(model_type, fields):
    name = CLASSES[model_type]
    mod = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    cfg_cls = getattr(importlib.import_module(f"transformers.models.{model_type}.configuration_{model_type}"),
                      f"{name}Config")
    # A deep copy: transformers standardizes the rope fields in place (it adds rope_theta to the
    # rope_scaling dict), and the fixture records what went in.
    cfg = cfg_cls.from_dict(copy.deepcopy(dict(fields, model_type=model_type, num_key_value_heads=2)))
    rope = getattr(mod, f"{name}RotaryEmbedding")(config=cfg)
    inv = rope.inv_freq.detach().to("cpu")
    assert inv.dtype == torch.float32, inv.dtype
    head_dim = fields.get("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
    return {"model_type": model_type, "config": fields, "head_dim": head_dim,
            "inv_freq": [float(v) for v in inv.tolist()],
            "attention_scaling": float(rope.attention_scaling)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = {"generated_by": {"transformers": transformers.__version__, "torch": torch.__version__,
                            "date": datetime.date.today().isoformat()},
           "cases": {}}
    for case, (mt, fields) in CASES.items():
        out["cases"][case] = table(mt, fields)
        t = out["cases"][case]
        print(f"{case}: {len(t['inv_freq'])} frequencies, attention_scaling {t['attention_scaling']}")
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
