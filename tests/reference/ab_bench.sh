#!/usr/bin/env bash
# A/B of `pio bench` on the same GPU in one call (GPU machine only): each argument is a variant,
# a pio binary optionally preceded by environment settings (e.g. PIO_SPECS=old/model-specs for
# an older binary that reads older specs); for every model they run in turn, ROUNDS times, so that drifts hit all alike. Prints
# one line per run (decode tokens/s at each context, prefill tokens/s at each prompt length,
# medians) and keeps each JSON report under $OUT. Example:
#   ab_bench.sh "PIO_SPECS=target/ab/old-specs/model-specs target/ab/pio-old" target/release/pio
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
ARGS=${BENCH_ARGS:---prompt-len 128,2048 --context 128,16384 --gen 128 --repeats 3 --warmup 1}
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    for round in $(seq "${ROUNDS:-2}"); do
        for variant in "$@"; do
            bin=${variant##* }
            json="$OUT/ab-$spec-$(basename "$bin")-r$round.json"
            # shellcheck disable=SC2086 # a variant and ARGS are words
            env $variant bench --spec "$spec" --weights random --device cuda $ARGS --json "$json" \
                > /dev/null 2> "$json.log" || { echo "$spec [$variant] round $round: FAILED"; tail -3 "$json.log"; continue; }
            python3 - "$json" "$spec [$bin] round $round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["models"][0]
dec = " ".join(f"ctx{d['context']}={d['tokens_per_s']['median']:.1f}" for d in r["decode"])
pre = " ".join(f"p{p['prompt_len']}={p['tokens_per_s']['median']:.0f}" for p in r["prefill"])
print(f"{sys.argv[2]}: decode {dec} | prefill {pre} | compile {r['compile_cold_s']:.2f}s")
PY
        done
    done
done
