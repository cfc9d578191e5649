#!/usr/bin/env bash
# A/B of two pio builds on the GPU machine, in one device call: the batching engine's offline
# throughput (N requests of 512 prompt + 256 generated tokens), batch-1 decode (`pio bench`,
# context 128) and, for build B (with B_ENV), the GPU time per kernel family (PIO_PROFILE=1) at
# the largest N.
# A=path B=path (binaries carried in the working tree); MODELS, REQUESTS as in bench_serving.sh.
# A_ENV / B_ENV: environment settings for one side ("PIO_NO_CUDA_GRAPH=1": one binary, graphs
# off against on).
# GPU_TESTS=path also runs GPU tests first: those GPU_FILTER names (default `batching`).
# PROFILE=0 skips the profile.
# Reports (JSON and markdown) land in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
A=${A:?path of build A}
B=${B:?path of build B}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
REQUESTS=${REQUESTS:-32,128}
LAST=${REQUESTS##*,}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -n "${GPU_TESTS:-}" ]; then
    echo "=== GPU tests: ${GPU_FILTER:-batching}"
    PIO_REQUIRE_GPU=1 "$GPU_TESTS" ${GPU_FILTER:-batching} --include-ignored --nocapture \
        > "$OUT/gpu-tests.log" 2>&1 || status=1
    grep -E "row 0:|worst|panicked|^test |test result" "$OUT/gpu-tests.log" | tail -${GPU_LINES:-60}
fi
for m in $MODELS; do
    for side in A B; do
        bin=${!side}
        side_env=${side}_ENV
        run=(env ${!side_env:-} "$bin")
        echo "=== $m, build $side: throughput"
        "${run[@]}" bench --mode throughput --spec "$m" --requests "$REQUESTS" --prompt-len 512 --gen 256 \
            --json "$OUT/throughput-$m-$side.json" > "$OUT/throughput-$m-$side.md" \
            2> "$OUT/throughput-$m-$side.err" || status=1
        cat "$OUT/throughput-$m-$side.md"; tail -2 "$OUT/throughput-$m-$side.err"
        echo "=== $m, build $side: batch-1 decode"
        "${run[@]}" bench --spec "$m" --prompt-len 128 --gen 64 --context 128 --repeats 3 --device cuda \
            --json "$OUT/latency-$m-$side.json" > "$OUT/latency-$m-$side.md" \
            2> "$OUT/latency-$m-$side.err" || status=1
        grep -A2 "decode (tokens/s)" "$OUT/latency-$m-$side.md" | tail -1
    done
    [ "${PROFILE:-1}" = 1 ] || continue
    echo "=== $m, build B: profile at N = $LAST"
    env ${B_ENV:-} PIO_PROFILE=1 "$B" bench --mode throughput --spec "$m" --requests "$LAST" --prompt-len 512 \
        --gen 256 > "$OUT/profile-$m.md" 2> "$OUT/profile-$m.err" || status=1
    grep -v "^\s*$" "$OUT/profile-$m.err" | tail -40
done
echo "=== done: status $status"
exit $status
