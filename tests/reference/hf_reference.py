#!/usr/bin/env python3
"""HF transformers reference for pio (GPU machine only: torch and transformers live there).

Loads a directory written by `pio init-weights` with Qwen3ForCausalLM, runs a prefill of the given
token ids, then greedy decode steps one token at a time through the KV cache, and
  --out FILE.json   writes the logits of every position and the generated ids (a fixture), and/or
  --compare X.npy   compares them with pio's logits (`pio logits ... -o X.npy`) position by position:
                    relative L2 error and top-1 agreement; exits 1 above --tol.

Example (tiny fixture, committed under tests/fixtures/hf-tiny/):
  python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-tiny \
      --ids 9,72,300,17,255,480,101,33 --decode-steps 9 --out tests/fixtures/hf-tiny/hf_logits.json
"""
import argparse, datetime, json, platform, sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--decode-steps", type=int, default=0)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out")
    ap.add_argument("--compare")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    ids = [int(x) for x in a.ids.split(",")]
    dtype = getattr(torch, a.dtype)
    # Full-precision matmuls: TF32 would add ~1e-3 relative error to an f32 reference.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = AutoModelForCausalLM.from_pretrained(a.weights, dtype=dtype, attn_implementation="eager")
    model.to(a.device).eval()

    rows, generated = [], []
    with torch.no_grad():
        out = model(torch.tensor([ids], device=a.device), use_cache=True)
        past = out.past_key_values
        rows.extend(out.logits[0].float().cpu().numpy())
        for _ in range(a.decode_steps):
            nxt = int(np.argmax(rows[-1]))
            generated.append(nxt)
            out = model(torch.tensor([[nxt]], device=a.device), past_key_values=past, use_cache=True)
            past = out.past_key_values
            rows.extend(out.logits[0].float().cpu().numpy())
    logits = np.stack(rows).astype(np.float32)

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if a.device == "cuda" else platform.processor(),
        "dtype": a.dtype,
        "date": datetime.date.today().isoformat(),
    }
    print(f"HF {info['transformers']} torch {info['torch']} on {info['device']} ({a.dtype}): "
          f"{len(ids)} prompt tokens, {a.decode_steps} decode steps, generated {generated}")
    if a.out:
        fixture = {
            "generated_by": info,
            "weights": a.weights,
            "prompt_ids": ids,
            "decode_steps": a.decode_steps,
            "generated_ids": generated,
            # 9 significant digits: every f32 exactly, in fewer bytes.
            "logits": [[float(f"{v:.9g}") for v in r] for r in logits],
        }
        with open(a.out, "w") as f:
            json.dump(fixture, f)
            f.write("\n")
        print(f"wrote {a.out}")
    if a.compare:
        ours = np.load(a.compare)
        if ours.shape != logits.shape:
            print(f"shape mismatch: pio {ours.shape} vs HF {logits.shape}")
            sys.exit(1)
        worst = 0.0
        print(f"{'pos':>4} {'rel L2':>10} {'top1 pio':>9} {'top1 HF':>8}")
        agree = 0
        for i, (p, h) in enumerate(zip(ours.astype(np.float64), logits.astype(np.float64))):
            rel = float(np.linalg.norm(p - h) / np.linalg.norm(h))
            worst = max(worst, rel)
            same = int(np.argmax(p)) == int(np.argmax(h))
            agree += same
            print(f"{i:>4} {rel:>10.2e} {int(np.argmax(p)):>9} {int(np.argmax(h)):>8}")
        print(f"worst relative L2 {worst:.3e} (tolerance {a.tol:.0e}); top-1 agreement "
              f"{agree}/{len(logits)}")
        if not worst <= a.tol:
            sys.exit(1)


if __name__ == "__main__":
    main()
