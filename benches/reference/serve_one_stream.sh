#!/usr/bin/env bash
# Issue 16's one-stream bar on the GPU machine: `pio serve` at one stream against `pio run`'s
# batch-1 decode at the same context, with the engine's single-sequence launch list (GEMV
# kernels, the default) and without it (PIO_NO_PAGED_SINGLE=1: a batch of one through the batch
# list's cuBLAS GEMMs), one binary, one call. Random weights from `pio init-weights` (seed 0);
# streaming /v1/completions from benches/reference/load_gen.py, P-token prompts, G tokens each.
# Carry .carry/pio (a release build). Reports (load_gen JSON) go to $OUT, a table to stdout.
#   OUT=$OUT SPECS="qwen3-4b-instruct-2507 qwen3-0.6b" bash benches/reference/serve_one_stream.sh
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
PIO=${PIO:-.carry/pio}
SPECS=${SPECS:-qwen3-4b-instruct-2507}
P=${P:-512}
G=${G:-256}
REQUESTS=${REQUESTS:-4}
LOGS=${LOGS:-/tmp/pio-serve-logs}
mkdir -p "$OUT" "$LOGS"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
wait_health() { # url, seconds
    for _ in $(seq 1 "$2"); do curl -sf "$1/health" >/dev/null && return 0; sleep 1; done
    return 1
}
for SPEC in $SPECS; do
    W=/tmp/pio-weights-$SPEC
    stamp "$SPEC: init-weights"
    $PIO init-weights "$SPEC" -o "$W" --seed 0 >/dev/null || exit 1
    for side in single batch; do
        env=()
        [ "$side" = batch ] && env=(PIO_NO_PAGED_SINGLE=1)
        stamp "$SPEC: pio serve ($side)"
        env "${env[@]}" $PIO serve --spec "$SPEC" --weights "$W" --device cuda --port 8100 --served-model-name "$SPEC" \
            --max-running 8 --max-context $((P + G + 64)) >"$LOGS/$SPEC-$side.log" 2>&1 &
        SERVE=$!
        if wait_health http://127.0.0.1:8100 300; then
            for run in warmup c1; do
                python3 benches/reference/load_gen.py --url http://127.0.0.1:8100 --model "$SPEC" \
                    --concurrency 1 --requests "$REQUESTS" --prompt-len "$P" --max-tokens "$G" \
                    --tokenizer "$W/tokenizer.json" --out "$OUT/$SPEC-$side-$run.json" \
                    >/dev/null 2>"$LOGS/$SPEC-$side-$run.err"
                tail -1 "$LOGS/$SPEC-$side-$run.err" | sed "s/^/$SPEC $side $run: /"
            done
        else
            echo "pio serve did not become healthy"; tail -20 "$LOGS/$SPEC-$side.log"
        fi
        kill -INT $SERVE; wait $SERVE
    done
    stamp "$SPEC: pio run"
    $PIO run --spec "$SPEC" --weights "$W" --device cuda --max-new-tokens "$G" --ignore-eos \
        --max-context $((P + G + 64)) --prompt "$(head -c $((P * 4)) ARCHITECTURE.md)" 2>&1 \
        | grep -E "tokens/s" | tail -1 | tee "$OUT/$SPEC-pio-run.txt"
done
stamp "done"
python3 - "$OUT" "$SPECS" <<'PY'
import json, sys, os, re
out, specs = sys.argv[1], sys.argv[2].split()
print("| model | pio serve list | output tok/s | TTFT p50 ms | ITL p50 / p99 ms | stream decode tok/s p50 | pio run decode tok/s | ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for spec in specs:
    run = open(os.path.join(out, f"{spec}-pio-run.txt")).read() if os.path.exists(os.path.join(out, f"{spec}-pio-run.txt")) else ""
    m = re.search(r"generated: [0-9]+ tokens, ([0-9.,]+) tokens/s", run)
    base = float(m.group(1).replace(",", "")) if m else None
    for side in ("single", "batch"):
        f = os.path.join(out, f"{spec}-{side}-c1.json")
        if not os.path.exists(f):
            continue
        r = json.load(open(f))
        d = r["stream_decode_tokens_per_s"]["p50"]
        ratio = f"{d / base:.1%}" if d and base else "?"
        print(f"| {spec} | {side} | {r['output_tokens_per_s']} | {r['ttft_ms']['p50']} | "
              f"{r['itl_ms']['p50']} / {r['itl_ms']['p99']} | {d and round(d, 1)} | {base} | {ratio} |")
PY
