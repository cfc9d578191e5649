#!/usr/bin/env bash
# GPU time per kernel family (PIO_PROFILE=1: eager launches, each timed with CUDA events) for the
# batch-1 path (`pio bench`: prefill of PROMPT tokens, decode at context 128) and for the batching
# engine's offline throughput run (N requests of 512 + 256 tokens), per model.
# Device call: "OUT=$OUT bash tests/reference/profile_on_gpu.sh", carry ["target/release/pio"].
# MODELS (default the 0.6B and the 4B), PROMPT (2048), REQUESTS (128), THROUGHPUT=0 skips the
# engine's run. Profiles land in $OUT/profile-*.txt.
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for m in $MODELS; do
    echo "=== $m: batch-1 profile, prefill of ${PROMPT:-2048}, decode at 128"
    PIO_PROFILE=1 $PIO bench --spec "$m" --device cuda --prompt-len "${PROMPT:-2048}" --context 128 \
        --gen 16 --repeats 1 > /dev/null 2> "$OUT/profile-batch1-$m.txt" || status=1
    grep -v "^\s*$" "$OUT/profile-batch1-$m.txt" | grep -v "^\[" | head -${LINES_SHOWN:-45}
    [ "${THROUGHPUT:-1}" = 1 ] || continue
    echo "=== $m: engine profile at N = ${REQUESTS:-128}"
    PIO_PROFILE=1 $PIO bench --mode throughput --spec "$m" --requests "${REQUESTS:-128}" --prompt-len 512 \
        --gen 256 > /dev/null 2> "$OUT/profile-engine-$m.txt" || status=1
    grep -v "^\s*$" "$OUT/profile-engine-$m.txt" | head -${LINES_SHOWN:-45}
done
echo "=== done: status $status"
exit $status
