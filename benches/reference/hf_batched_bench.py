#!/usr/bin/env python3
"""HF transformers reference for `pio bench --mode throughput`: offline batched generation.

Runs on the GPU machine only (torch + transformers there; no tokenizer and no network needed).
N requests of P prompt tokens each (pio's deterministic prompt ids, one distinct prompt per
request) are generated with `model.generate` in one batch of N, greedy, exactly G new tokens each
(`min_new_tokens = max_new_tokens = G`, no eos); output tokens per second over the wall time of
the whole call, prefill included, as pio reports it. Eager mode uses HF's dynamic cache; compile
mode the static cache and `torch.compile` HF documents for fast generation.

    python3 benches/reference/hf_batched_bench.py --weights /tmp/qwen3-0.6b-random \
        --model-name Qwen3-0.6B --requests 1,8,32,128 --prompt-len 512 --gen 256 --json hf.json

The JSON has the shape of pio's `ServingReport` (src/bench/serving.rs) for the throughput runs,
engine "hf-transformers-<mode>"; TTFT is not measured (generate returns at the end).
"""

import argparse
import datetime
import json
import subprocess
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def prompt(r, length, salt):
    """pio's serving prompts: src/bench/serving.rs `prompt`."""
    return [100 + ((i * 7919 + r * 104729 + salt * 31) % 400) for i in range(length)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--requests", type=int_list, default=[1, 8, 32, 128])
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--json", required=True)
    args = p.parse_args()

    device = torch.device("cuda")
    model = AutoModelForCausalLM.from_pretrained(args.weights, dtype=torch.bfloat16).to(device).eval()
    gen_kwargs = dict(do_sample=False, max_new_tokens=args.gen, min_new_tokens=args.gen,
                      eos_token_id=None, pad_token_id=0)
    if args.mode == "compile":
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)

    runs = []
    for k, n in enumerate(args.requests):
        ids = torch.tensor([prompt(r, args.prompt_len, k) for r in range(n)], device=device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            # Warm-up (compile, cuBLAS heuristics) with a short generation of the same batch.
            model.generate(input_ids=ids, attention_mask=mask, **{**gen_kwargs, "max_new_tokens": 2,
                                                                   "min_new_tokens": 2})
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        produced = (out.shape[1] - ids.shape[1]) * n
        runs.append({
            "requests": n, "prompt_len": args.prompt_len, "gen": args.gen, "wall_s": wall,
            "output_tokens": produced, "output_tokens_per_s": produced / wall,
            "total_tokens_per_s": (produced + n * args.prompt_len) / wall,
            "ttft_median_s": None, "ttft_max_s": None, "steps": args.gen, "preemptions": 0,
            "model_s": wall,
        })
        print(f"N={n}: {produced / wall:.0f} output tokens/s ({wall:.2f} s)", flush=True)

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip() or None
    except OSError:
        driver = None
    report = {
        "schema_version": 1, "engine": f"hf-transformers-{args.mode}",
        "machine": {"device": torch.cuda.get_device_name(), "driver": driver,
                    "cuda": f"CUDA {torch.version.cuda}", "commit": None,
                    "date": datetime.date.today().isoformat(), "copy_bandwidth_bytes_per_s": None},
        "model": args.model_name, "weights": args.weights, "block_size": 0, "num_blocks": 0,
        "pool_bytes": 0, "max_batch_tokens": 0, "max_running": max(args.requests),
        "throughput": runs, "shared_prefix": None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
