#!/usr/bin/env python3
"""A load generator for OpenAI-compatible servers (`pio serve`, llama.cpp's `llama-server`).

Streams `/v1/completions` requests at a fixed concurrency (N clients, each sending its next
request when the last one ends) or with Poisson arrivals (`--rate` requests/s), and reports
TTFT, inter-token latency (gaps between streamed chunks), end-to-end latency percentiles and
output tokens/s over the run's wall time, as JSON (and a one-line summary on stderr).

Prompts are windows of exactly `--prompt-len` token ids cut from real text (`--text`, default
this repo's ARCHITECTURE.md and README.md) with the model's `tokenizer.json` (`--tokenizer`;
the `tokenizers` package), sent as token-id prompts so every server sees the same tokens; with
no tokenizer, text windows of about 4 characters a token are sent instead. Completions are
`--max-tokens` long with `ignore_eos` (both servers honour it), so output lengths are fixed.

    load_gen.py --url http://127.0.0.1:8000 --model NAME --concurrency 64 --requests 128 \\
        --prompt-len 512 --max-tokens 256 --tokenizer DIR/tokenizer.json --out report.json

Needs httpx (a dependency of the `openai` client that .ci/run installs).
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def prompts(args):
    text = "\n".join(Path(p).read_text(encoding="utf-8") for p in args.text)
    rng = random.Random(args.seed)
    out = []
    if args.tokenizer:
        from tokenizers import Tokenizer

        ids = Tokenizer.from_file(args.tokenizer).encode(text).ids
        if len(ids) < args.prompt_len:
            sys.exit(f"the text has {len(ids)} tokens, fewer than --prompt-len {args.prompt_len}")
        for _ in range(args.requests):
            start = rng.randrange(0, len(ids) - args.prompt_len + 1)
            out.append(ids[start : start + args.prompt_len])
    else:
        chars = 4 * args.prompt_len
        if len(text) < chars:
            sys.exit(f"the text has {len(text)} characters, fewer than {chars}")
        for _ in range(args.requests):
            start = rng.randrange(0, len(text) - chars + 1)
            out.append(text[start : start + chars])
    return out


async def one_request(client, args, prompt):
    """Streams one completion; returns its timings (seconds) and token count."""
    body = {
        "model": args.model,
        "prompt": prompt,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    chunks, usage = [], None
    async with client.stream("POST", f"{args.url}/v1/completions", json=body) as r:
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                break
            event = json.loads(data)
            if event.get("usage"):
                usage = event["usage"]
            if any(c.get("text") for c in event.get("choices", [])):
                chunks.append(time.perf_counter())
    done = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else len(chunks)
    if not chunks:
        return {"error": "no text streamed", "tokens": tokens}
    return {
        "ttft": chunks[0] - sent,
        "gaps": [b - a for a, b in zip(chunks, chunks[1:])],
        "latency": done - sent,
        "tokens": tokens,
        "chunks": len(chunks),
    }


async def run(args, todo):
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(args.timeout)
    results = []
    async with httpx.AsyncClient(limits=limits, timeout=timeout, headers=args.headers) as client:
        started = time.perf_counter()
        if args.rate:
            rng = random.Random(args.seed + 1)

            async def arrive(p, delay):
                await asyncio.sleep(delay)
                results.append(await one_request(client, args, p))

            t, tasks = 0.0, []
            for p in todo:
                tasks.append(asyncio.create_task(arrive(p, t)))
                t += rng.expovariate(args.rate)
            await asyncio.gather(*tasks)
        else:
            queue = list(reversed(todo))

            async def worker():
                while queue:
                    results.append(await one_request(client, args, queue.pop()))

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
    return results, wall


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def report(args, results, wall):
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    gaps = [g for r in ok for g in r["gaps"]]
    tokens = sum(r["tokens"] for r in ok)
    ms = lambda v: None if v is None else round(v * 1000, 3)  # noqa: E731
    return {
        "url": args.url,
        "model": args.model,
        "mode": f"rate {args.rate}/s" if args.rate else f"concurrency {args.concurrency}",
        "requests": len(results),
        "completed": len(ok),
        "errors": len(errors),
        "first_errors": errors[:5],
        "prompt_len": args.prompt_len,
        "prompt_kind": "token ids" if args.tokenizer else "text",
        "max_tokens": args.max_tokens,
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "output_tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "ttft_ms": {"p50": ms(pct([r["ttft"] for r in ok], 50)), "p99": ms(pct([r["ttft"] for r in ok], 99))},
        "itl_ms": {"p50": ms(pct(gaps, 50)), "p99": ms(pct(gaps, 99)), "mean": ms(statistics.fmean(gaps)) if gaps else None},
        "latency_ms": {"p50": ms(pct([r["latency"] for r in ok], 50)), "p99": ms(pct([r["latency"] for r in ok], 99))},
        "tokens_per_chunk": round(tokens / max(1, sum(r["chunks"] for r in ok)), 3),
        # Each stream's decode speed: tokens after the first over the time from first to last.
        "stream_decode_tokens_per_s": {
            "p50": pct([(r["tokens"] - 1) / sum(r["gaps"]) for r in ok if sum(r["gaps"]) > 0], 50),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", required=True, help="the served model name")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--rate", type=float, default=0.0, help="Poisson arrivals per second (0: fixed concurrency)")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--tokenizer", help="tokenizer.json: send token-id prompts of exactly --prompt-len")
    ap.add_argument("--text", nargs="+", default=[str(REPO / "ARCHITECTURE.md"), str(REPO / "README.md")])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    ap.add_argument("--api-key")
    ap.add_argument("--out", help="write the JSON report here too")
    args = ap.parse_args()
    if args.concurrency < 1 or args.requests < 1 or args.prompt_len < 1 or args.max_tokens < 1:
        sys.exit("--concurrency, --requests, --prompt-len and --max-tokens must be at least 1")
    if args.rate < 0:
        sys.exit("--rate must not be negative")
    args.headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    results, wall = asyncio.run(run(args, prompts(args)))
    rep = report(args, results, wall)
    text = json.dumps(rep, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(
        f"{rep['mode']}: {rep['completed']}/{rep['requests']} ok, {rep['output_tokens_per_s']} output tok/s, "
        f"TTFT p50 {rep['ttft_ms']['p50']} ms, ITL p50 {rep['itl_ms']['p50']} ms p99 {rep['itl_ms']['p99']} ms",
        file=sys.stderr,
    )
    sys.exit(1 if rep["errors"] else 0)


if __name__ == "__main__":
    main()
