#!/usr/bin/env bash
# The chunk steps' one-pass attention and the attention launch bounds on the GPU machine, in one
# call: first the GPU tests that run the chunk list with PIO_ONLINE_CHUNK_ATTENTION=1 (the kernel
# oracle on three specs, the chunk-step and chunked-prefill tests), then, if they pass, the
# engine's throughput with each switch against the defaults (ab_engine.sh, one round each).
# Build here first (the GPU machine has no cargo): the pio binary and the gpu test binary.
#   PIO=/tmp/b/pio GPU_TESTS=/tmp/b/gpu-tests OUT=$OUT bash benches/reference/chunk_attention_ab.sh
# MODELS (default qwen3-0.6b) picks the models of the throughput runs. Results go to
# tests/reference/GPU_RESULTS.md.
set -uo pipefail
PIO=${PIO:-target/release/pio}
GPU_TESTS=${GPU_TESTS:-target/release/gpu-tests}
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
t0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== GPU tests with the one-pass chunk attention (and with it launch-bounded to 3 blocks/SM)"
status=0
for bound in 0 3; do
    PIO_REQUIRE_GPU=1 PIO_ONLINE_CHUNK_ATTENTION=1 PIO_CHUNK_ATTENTION_MIN_BLOCKS=$bound \
        "$GPU_TESTS" --include-ignored --test-threads=1 chunk kernel_oracle::qwen3_0_6b_2layers \
        kernel_oracle::llama_tiny kernel_oracle::qwen3_tiny > "$OUT/gpu-tests-online-$bound.txt" 2>&1 || status=1
    echo "min blocks $bound: $(grep -E '^test result' "$OUT/gpu-tests-online-$bound.txt")"
    grep -E "panicked|FAILED|Attention .*FAIL" "$OUT/gpu-tests-online-$bound.txt" | head -5
done
echo "[$((SECONDS - t0)) s]"
[ $status = 0 ] || { echo "=== the one-pass chunk attention failed its tests: no throughput runs"; exit 1; }
MODELS=${MODELS:-qwen3-0.6b} ROUNDS=1 SKIP_PREFIX=1 OUT="$OUT/ab" bash "$(dirname "$0")/ab_engine.sh" \
    "$PIO" "PIO_ONLINE_CHUNK_ATTENTION=1 $PIO" "PIO_CHUNK_ATTENTION_MIN_BLOCKS=3 $PIO" \
    "PIO_ONLINE_CHUNK_ATTENTION=1 PIO_CHUNK_ATTENTION_MIN_BLOCKS=3 $PIO" \
    "PIO_PAGED_ATTENTION_MIN_BLOCKS=5 $PIO" "PIO_PAGED_ATTENTION_MIN_BLOCKS=6 $PIO"
echo "[$((SECONDS - t0)) s]"
