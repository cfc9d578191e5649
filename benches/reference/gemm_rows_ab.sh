#!/usr/bin/env bash
# pio's few-rows GEMM kernel (runtime/src/cuda/gemm_rows.cu, a GEMM tuning candidate for the
# decode batches' GEMMs of at most 128 rows) on the GPU machine, in one call: first its own GPU
# tests (every k split against an f64 reference beside cuBLAS, a row's bits whatever the other
# rows), then the engine's GPU tests with it forced wherever it applies (PIO_GEMM_ROWS=only: the
# batch against each request alone, chunked prefill, the chunk steps, a big batch over long
# contexts), then, if all pass, the engine's throughput without it (the default until it has
# passed here), as a tuning candidate (PIO_GEMM_ROWS=1) and forced (ab_engine.sh, one round
# each).
# Build here first (the GPU machine has no cargo): the pio binary and the gpu test binary.
#   PIO=/tmp/b/pio GPU_TESTS=/tmp/b/gpu-tests OUT=$OUT bash benches/reference/gemm_rows_ab.sh
# MODELS (default qwen3-0.6b qwen3-4b-instruct-2507) picks the models of the throughput runs.
# Results go to tests/reference/GPU_RESULTS.md.
set -uo pipefail
PIO=${PIO:-target/release/pio}
GPU_TESTS=${GPU_TESTS:-target/release/gpu-tests}
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
t0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
status=0
echo "=== the few-rows GEMM against the reference"
PIO_REQUIRE_GPU=1 "$GPU_TESTS" --include-ignored --test-threads=1 --nocapture few_rows_gemm \
    > "$OUT/gpu-tests-few-rows.txt" 2>&1 || status=1
grep -E "^test |worst|panicked" "$OUT/gpu-tests-few-rows.txt" | head -60
echo "=== the engine's GPU tests with PIO_GEMM_ROWS=only"
PIO_REQUIRE_GPU=1 PIO_GEMM_ROWS=only "$GPU_TESTS" --include-ignored --test-threads=1 batching \
    chunking chunk_steps long_batch > "$OUT/gpu-tests-rows-only.txt" 2>&1 || status=1
grep -E "^test |^test result|panicked" "$OUT/gpu-tests-rows-only.txt" | head -20
echo "[$((SECONDS - t0)) s]"
[ $status = 0 ] || { echo "=== the few-rows GEMM failed its tests: no throughput runs"; exit 1; }
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507} ROUNDS=1 SKIP_PREFIX=1 OUT="$OUT/ab" \
    bash "$(dirname "$0")/ab_engine.sh" "$PIO" "PIO_GEMM_ROWS=1 $PIO" "PIO_GEMM_ROWS=only $PIO"
echo "[$((SECONDS - t0)) s]"
