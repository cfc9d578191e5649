#!/usr/bin/env python3
"""llama.cpp's `llama-batched-bench` as a reference for `pio bench --mode throughput`: turns the
JSON lines of `llama-batched-bench ... --output-format jsonl` into a report of the shape
benches/reference/hf_batched_bench.py writes (pio's `ServingReport` throughput runs, engine
"llama.cpp-batched-bench") and prints one line per batch.

For each batch of B sequences llama-batched-bench prefills B prompts of PP random tokens (not
shared), then decodes TG tokens for every sequence, one token per sequence per step; T = T_PP +
T_TG. Output tokens per second over the whole run is B * TG / T (prefill included, as pio and
hf_batched_bench.py report it); the decode alone (S_TG) and the prefill alone (S_PP) are kept
beside it. TTFT: every sequence's first token comes after the whole prefill, T_PP.

    python3 benches/reference/llama_batched_bench.py raw.jsonl --model-name qwen3-0.6b \
        --weights /tmp/pio-weights-qwen3-0.6b --device "NVIDIA H100 80GB HBM3" --json out.json
"""

import argparse
import datetime
import json
import sys


def runs_of(lines):
    """The benchmark's result lines (JSON objects with the timing keys), in order."""
    runs = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"line {n}: not JSON ({e}): {line[:120]}")
        missing = [k for k in ("pp", "tg", "pl", "t_pp", "t_tg", "t", "speed_pp", "speed_tg", "speed") if k not in r]
        if missing:
            raise SystemExit(f"line {n}: no {', '.join(missing)} in {line[:120]}")
        if r.get("is_pp_shared"):
            raise SystemExit(f"line {n}: a shared prompt (-pps); run without it")
        runs.append(r)
    return runs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", help="llama-batched-bench's stdout with --output-format jsonl")
    p.add_argument("--model-name", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--device", default=None, help="the card, as nvidia-smi names it")
    p.add_argument("--driver", default=None)
    p.add_argument("--llama-version", default=None, help="llama.cpp's version (the sdist's)")
    p.add_argument("--json", required=True)
    a = p.parse_args()
    with open(a.raw) as f:
        raw = runs_of(f)
    if not raw:
        sys.exit(f"{a.raw}: no result lines (did llama-batched-bench skip every batch for want of -c?)")
    runs = []
    for r in raw:
        produced = r["pl"] * r["tg"]
        runs.append({
            "requests": r["pl"], "prompt_len": r["pp"], "gen": r["tg"], "wall_s": r["t"],
            "output_tokens": produced, "output_tokens_per_s": produced / r["t"],
            "total_tokens_per_s": r["speed"], "ttft_median_s": r["t_pp"], "ttft_max_s": r["t_pp"],
            "steps": r["tg"], "preemptions": 0, "model_s": r["t"],
            "decode_tokens_per_s": r["speed_tg"], "prefill_tokens_per_s": r["speed_pp"],
        })
        print(f"N={r['pl']}: {produced / r['t']:.0f} output tokens/s over the run ({r['t']:.2f} s); "
              f"decode alone {r['speed_tg']:.0f}, prefill {r['speed_pp']:.0f} tokens/s", flush=True)
    first = raw[0]
    report = {
        "schema_version": 1, "engine": "llama.cpp-batched-bench",
        "machine": {"device": a.device, "driver": a.driver, "cuda": None, "commit": None,
                    "date": datetime.date.today().isoformat(), "copy_bandwidth_bytes_per_s": None},
        "model": a.model_name, "weights": a.weights, "block_size": 0, "num_blocks": 0, "pool_bytes": 0,
        "max_batch_tokens": first.get("n_batch", 0), "max_running": max(r["pl"] for r in raw),
        "throughput": runs, "shared_prefix": None,
        "versions": {"llama.cpp": a.llama_version},
        "settings": {k: first.get(k) for k in ("n_kv_max", "n_batch", "n_ubatch", "flash_attn", "n_gpu_layers")},
    }
    with open(a.json, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
