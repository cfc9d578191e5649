#!/usr/bin/env bash
# The batching engine's benchmarks on the GPU machine, in one device call (issue 15's figures):
# offline throughput at N = 1, 8, 32, 128, 256 (P = 512, G = 256) and the shared-prefix run
# (64 requests, 4,096 shared + 64 own tokens), for the 0.6B and the 4B, random weights of the
# real shapes. Carry target/release/pio. Reports land in $OUT (JSON and markdown).
# HF=1 also runs HF transformers' batched generate on the same random weights, same call
# (benches/reference/hf_batched_bench.py, eager; HF_MODE=compile for the static cache).
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
REQUESTS=${REQUESTS:-1,8,32,128,256}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for m in $MODELS; do
    echo "=== $m: throughput"
    $PIO bench --mode throughput --spec $m --requests "$REQUESTS" --prompt-len 512 --gen 256 \
        --json "$OUT/throughput-$m.json" > "$OUT/throughput-$m.md" 2> "$OUT/throughput-$m.err" || status=1
    cat "$OUT/throughput-$m.md"; tail -3 "$OUT/throughput-$m.err"
    if [ -n "${HF:-}" ]; then
        echo "=== $m: HF transformers batched generate (${HF_MODE:-eager})"
        $PIO init-weights $m -o /tmp/pio-weights-$m --seed 0 > /dev/null 2>&1 || status=1
        python3 benches/reference/hf_batched_bench.py --weights /tmp/pio-weights-$m \
            --model-name "$m" --requests "$REQUESTS" --prompt-len 512 --gen 256 \
            --mode "${HF_MODE:-eager}" --json "$OUT/hf-throughput-$m.json" || status=1
    fi
    if [ -z "${SKIP_PREFIX:-}" ]; then
        echo "=== $m: shared prefix"
        $PIO bench --mode shared-prefix --spec $m --shared-prefix 64,4096,64 --gen 64 \
            --json "$OUT/prefix-$m.json" > "$OUT/prefix-$m.md" 2> "$OUT/prefix-$m.err" || status=1
        cat "$OUT/prefix-$m.md"; tail -3 "$OUT/prefix-$m.err"
    fi
done
echo "=== done: status $status"
exit $status
