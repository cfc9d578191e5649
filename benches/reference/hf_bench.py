#!/usr/bin/env python3
"""HF transformers reference benchmark: the same figures as `pio bench`, on the same weights.

Runs on the GPU machine only (torch 2.11 + transformers 5.17 there; nothing here needs a
tokenizer or the network). It loads a weight directory written by `pio init-weights` (or a real
HF checkpoint), measures batch-1 prefill and greedy decode the way `pio bench` does, and writes a
JSON report of the same shape as pio's `BenchReport` (schema: benches/bench-schema.json), so that
`pio`'s compare and plot code can put the two side by side.

    python3 benches/reference/hf_bench.py --weights /tmp/qwen3-0.6b-random \
        --model-name Qwen3-0.6B --prompt-len 128,2048 --gen 256 --context 128,1024,4096 \
        --repeats 5 --mode compile --json hf-compile.json

What is measured (CUDA events, after warm-up; median/min/max over --repeats):
  * prefill, per prompt length P: a forward pass over P tokens into a fresh KV cache, then the
    greedy pick of the first token. TTFT = forward + pick; prefill tokens/s = P / forward time.
  * decode, per context position C: fill the cache with C tokens once (not timed), then time
    --gen greedy single-token steps back to back, each run going back to position C (dynamic
    cache: cropped to C; static cache: filled again); tokens/s = gen / elapsed. This
    is what `pio bench` does (its "decode at context C" also covers positions C .. C+gen-1).
  * peak memory (torch.cuda.max_memory_allocated over the whole run) and the weights' bytes.

Modes:
  * eager:   the model as loaded, DynamicCache (HF's default).
  * compile: the recipe HF documents for fast generation: a static KV cache
    (`generation_config.cache_implementation = "static"`) and
    `torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)` (CUDA graphs) for the
    single-token decode steps. As in `generate()`, prefill runs the uncompiled forward (into the
    static cache) and the static cache is sized prompt/context + gen, a new one per length.

The prompt tokens are the same deterministic ids `pio bench` uses: 100 + (i * 7919) % 400.
"""

import argparse
import datetime
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, StaticCache

SCHEMA_VERSION = 1  # pio::bench::report::SCHEMA_VERSION

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def int_list(text):
    """'128,2048' -> [128, 2048]"""
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="HF weight directory (e.g. from `pio init-weights`)")
    p.add_argument("--model-name", required=True, help="name to report, matching pio's `model` (e.g. Qwen3-0.6B)")
    p.add_argument("--prompt-len", type=int_list, default=[128, 2048],
                   help="prompt lengths for prefill, comma-separated")
    p.add_argument("--gen", type=int, default=256, help="greedy decode steps timed per measurement")
    p.add_argument("--context", type=int_list, default=[128, 1024, 4096],
                   help="context positions for decode, comma-separated")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of every measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the repeats (at least 1 is used)")
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--attn", default="sdpa", help="attn_implementation passed to from_pretrained")
    p.add_argument("--json", required=True, help="where to write the report")
    p.add_argument("--commit", help="the pio commit to report (default: what git says here)")
    a = p.parse_args()
    if a.repeats < 1 or a.gen < 1 or not a.prompt_len or not a.context:
        p.error("needs --repeats >= 1, --gen >= 1, and at least one prompt length and context")
    if min(a.prompt_len) < 1 or min(a.context) < 0:
        p.error("prompt lengths must be >= 1 and contexts >= 0")
    return a


def prompt_ids(n, device):
    """The same deterministic prompt `pio bench` uses, as a [1, n] tensor."""
    return torch.tensor([[100 + (i * 7919) % 400 for i in range(n)]], dtype=torch.long, device=device)


def stat(xs):
    """Median, min and max, as pio's `Stat`."""
    return {"median": float(statistics.median(xs)), "min": float(min(xs)), "max": float(max(xs))}


def git_commit():
    """The pio commit this script belongs to, when it is run from a git checkout."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def driver_version():
    """The NVIDIA driver's version, from nvidia-smi when it is there."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def copy_bandwidth(device):
    """Device-to-device copy bandwidth (bytes read + written per second), measured as pio does:
    a 1 GiB copy, six times, the first one discarded, the median kept."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty(n, dtype=torch.uint8, device=device)
    times = []
    for i in range(6):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        if i > 0:
            times.append(start.elapsed_time(end) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2.0 * n / statistics.median(times)


class Runner:
    """The loaded model plus the two ways of calling it (prefill, one decode step)."""

    def __init__(self, args, device):
        self.args = args
        self.device = device
        self.compile = args.mode == "compile"

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(
            args.weights, dtype=DTYPES[args.dtype], attn_implementation=args.attn)
        model = model.to(device).eval()
        torch.cuda.synchronize()
        self.load_s = time.perf_counter() - t0
        self.model = model

        # Only pass the keyword arguments this version's forward() takes.
        params = inspect.signature(model.forward).parameters
        self.has_cache_position = "cache_position" in params
        self.has_logits_to_keep = "logits_to_keep" in params

        self.step = model.forward
        if self.compile:
            # The recipe from HF's "static cache and torch.compile" docs.
            model.generation_config.cache_implementation = "static"
            # Room for the recompiles: one per static-cache length (the option's name changed
            # across torch versions).
            dynamo_config = torch._dynamo.config
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
                    break
            self.step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)

    def new_cache(self, length):
        """A fresh KV cache for `length` tokens: static in compile mode, None (= a DynamicCache
        made by the model) in eager mode."""
        if self.compile:
            return StaticCache(config=self.model.config, max_cache_len=length)
        return None

    def prefill(self, ids, cache):
        """Forward over the whole prompt (uncompiled, as generate() does); returns (logits, cache)."""
        kwargs = {"input_ids": ids, "past_key_values": cache, "use_cache": True}
        if self.has_logits_to_keep:
            kwargs["logits_to_keep"] = 1  # only the last row: 2048 x 151936 floats otherwise
        if self.has_cache_position:
            kwargs["cache_position"] = torch.arange(ids.shape[1], device=self.device)
        out = self.model(**kwargs)
        return out.logits, out.past_key_values

    def decode(self, first_token, position, cache, steps):
        """`steps` greedy single-token steps from `position` on, feeding each picked token back;
        everything stays on the GPU (no host sync inside the loop). Returns the last token and
        the cache."""
        token = first_token
        if self.compile:
            cache_position = torch.tensor([position], dtype=torch.long, device=self.device)
        for _ in range(steps):
            kwargs = {"input_ids": token, "past_key_values": cache, "use_cache": True}
            if self.compile:
                # Static cache: positions come in as device tensors (so no recompiles and no host
                # copies), and each call starts a new CUDA-graph step (its outputs may overwrite
                # the previous step's, which are no longer used).
                kwargs["position_ids"] = cache_position.unsqueeze(0)
                if self.has_cache_position:
                    kwargs["cache_position"] = cache_position
                torch.compiler.cudagraph_mark_step_begin()
                out = self.step(**kwargs)
                cache_position = cache_position + 1
            else:
                # Eager: the DynamicCache grows in place and the model derives the positions
                # from its length.
                out = self.step(**kwargs)
                cache = out.past_key_values
            token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
        return token, cache


def measure_prefill(r, p, warmup, repeats):
    """TTFT (ms) and prefill tokens/s for prompt length p."""
    ids = prompt_ids(p, r.device)
    # Compile mode: one static cache for this length (sized as generate() would), emptied
    # before every run; eager: a new DynamicCache every run.
    static_cache = r.new_cache(p + r.args.gen)
    ttft_ms, tps = [], []
    for i in range(warmup + repeats):
        if static_cache is not None:
            static_cache.reset()
        torch.cuda.synchronize()
        start, mid, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        start.record()
        logits, _ = r.prefill(ids, static_cache)
        mid.record()
        first = logits[:, -1, :].argmax(dim=-1)
        end.record()
        end.synchronize()
        del first, logits
        if i >= warmup:
            ttft_ms.append(start.elapsed_time(end))
            tps.append(p / (start.elapsed_time(mid) / 1e3))
    return {"prompt_len": p, "ttft_ms": stat(ttft_ms), "tokens_per_s": stat(tps)}


def measure_decode(r, c, warmup, repeats, floor, compile_times):
    """Decode tokens/s at context position c. In compile mode the first decode steps with a new
    static cache compile (and record CUDA graphs); they are run untimed first, and their wall
    time is appended to compile_times (the first one is the report's compile_cold_s)."""
    n = max(c, 1)  # as pio: at least one prompt token
    ids = prompt_ids(n, r.device)
    gen = r.args.gen
    static_cache = r.new_cache(n + gen)

    def fill():
        """A cache holding the n prompt tokens, and the first greedy token (not timed)."""
        if static_cache is not None:
            static_cache.reset()
        logits, cache = r.prefill(ids, static_cache)
        return logits[:, -1, :].argmax(dim=-1, keepdim=True), cache

    if r.compile:
        # torch.compile + CUDA-graph capture: reduce-overhead warms up on the first call,
        # records on the second and replays from the third.
        first, cache = fill()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        r.decode(first, n, cache, 3)
        torch.cuda.synchronize()
        compile_times.append(time.perf_counter() - t0)

    # As `pio bench`: the cache is filled once, and every run goes back to position n (the
    # dynamic cache is cropped to n). The static cache keeps its own count of what it holds,
    # so it is filled again for every run.
    first, cache = fill()
    tps = []
    for i in range(warmup + repeats):
        if i > 0:
            if static_cache is None:
                cache.crop(n)
            else:
                first, cache = fill()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        _, cache = r.decode(first, n, cache, gen)
        end.record()
        end.synchronize()
        if i >= warmup:
            tps.append(gen / (start.elapsed_time(end) / 1e3))
    del cache
    return {"context": c, "tokens_per_s": stat(tps), "bandwidth_floor_tokens_per_s": floor}


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        sys.exit("hf_bench.py needs a CUDA GPU")
    device = torch.device("cuda")
    warmup = max(args.warmup, 1)

    bandwidth = copy_bandwidth(device)
    r = Runner(args, device)
    model = r.model
    cfg = model.config
    max_pos = getattr(cfg, "max_position_embeddings", None)
    if max_pos is not None and max(max(args.context), max(args.prompt_len)) + args.gen > max_pos:
        sys.exit(f"context/prompt + gen exceeds the model's max_position_embeddings ({max_pos})")

    # Parameters: model.parameters() yields a tied tensor once (as pio counts it).
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    floor = bandwidth / weight_bytes

    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        prefill = [measure_prefill(r, p, warmup, args.repeats) for p in args.prompt_len]
        compile_times = []
        decode = [measure_decode(r, c, warmup, args.repeats, floor, compile_times) for c in args.context]
    peak = torch.cuda.max_memory_allocated(device)
    free, total = torch.cuda.mem_get_info(device)

    # KV cache of the longest context + gen (keys + values, every layer), from the config: not
    # measured, but what a cache of that length holds.
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim
    kv_bytes = per_token * (max(args.context) + args.gen) * torch.empty(0, dtype=DTYPES[args.dtype]).element_size()

    report = {
        "schema_version": SCHEMA_VERSION,
        "engine": f"hf-transformers-{args.mode}",
        "machine": {
            "device": torch.cuda.get_device_name(device),
            "driver": driver_version(),
            "cuda": f"CUDA {torch.version.cuda} (torch {torch.__version__}, transformers {transformers.__version__})",
            "commit": args.commit or git_commit(),
            "date": datetime.date.today().isoformat(),
            "copy_bandwidth_bytes_per_s": bandwidth,
        },
        "settings": {
            "weights": os.path.abspath(args.weights),
            "prompt_lens": args.prompt_len,
            "gen": args.gen,
            "contexts": args.context,
            "repeats": args.repeats,
            "warmup": warmup,
            "dtype": args.dtype,
            "batch": 1,
        },
        "models": [
            {
                "model": args.model_name,
                "spec": "transformers:" + ",".join(getattr(cfg, "architectures", None) or [type(model).__name__]),
                "params": params,
                "weight_bytes": weight_bytes,
                # Compile mode: the first torch.compile + CUDA-graph warm-up (wall clock). Later
                # cache lengths recompile in their untimed warm-up runs.
                "compile_cold_s": compile_times[0] if compile_times else 0.0,
                "compile_warm_s": 0.0,
                "load_s": r.load_s,
                "prefill": prefill,
                "decode": decode,
                "memory": {
                    "peak": peak,
                    "device_in_use": total - free,
                    "weights": weight_bytes,
                    "kv_cache": kv_bytes,
                    "activations": 0,  # not separable in PyTorch's allocator
                    "workspace": 0,
                },
            }
        ],
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    # A short human summary on stderr.
    print(f"{report['engine']} on {report['machine']['device']}: {args.model_name}", file=sys.stderr)
    for p in prefill:
        print(f"  prefill {p['prompt_len']:>6}: {p['tokens_per_s']['median']:10.1f} tokens/s, "
              f"TTFT {p['ttft_ms']['median']:.2f} ms", file=sys.stderr)
    for d in decode:
        print(f"  decode at {d['context']:>6}: {d['tokens_per_s']['median']:10.1f} tokens/s "
              f"(floor {floor:.0f})", file=sys.stderr)
    print(f"  peak memory {peak / 1e9:.2f} GB, load {r.load_s:.2f} s; wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
