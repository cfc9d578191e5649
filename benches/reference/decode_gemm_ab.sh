#!/usr/bin/env bash
# The decode batches' two tensor-core GEMM paths on the GPU machine, in one call (both off by
# default until they pass here):
# - pio's few-rows GEMM kernel (runtime/src/cuda/gemm_rows.cu), a GEMM tuning candidate for
#   GEMMs of at most 128 rows (PIO_GEMM_ROWS=1; =only forces it wherever it applies);
# - the fused row GEMMs (templates/kernels/row_gemm.cu, PIO_FUSED_ROW_GEMM=1): the decode-batch
#   list's projections as one launch each (RMSNorm, product, residual add or SwiGLU).
# First their GPU tests: the few-rows GEMM against an f64 reference beside cuBLAS; the kernel
# oracle with the fused row GEMMs (each fused projection against the CPU op); the engine's GPU
# tests (the batch against each request alone, chunked prefill, the chunk steps, a big batch
# over long contexts) with each path forced. Then, if all pass, the engine's throughput:
# default, PIO_GEMM_ROWS=1, PIO_FUSED_ROW_GEMM=1, both (ab_engine.sh, one round each).
# Build here first (the GPU machine has no cargo): the pio binary and the gpu test binary.
#   PIO=/tmp/b/pio GPU_TESTS=/tmp/b/gpu-tests OUT=$OUT bash benches/reference/decode_gemm_ab.sh
# MODELS (default qwen3-0.6b) picks the models of the throughput runs (the 4B too: about 3
# minutes more). Results go to tests/reference/GPU_RESULTS.md.
set -uo pipefail
PIO=${PIO:-target/release/pio}
GPU_TESTS=${GPU_TESTS:-target/release/gpu-tests}
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
t0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
status=0
run_tests() {  # name, settings, filters...
    local name=$1 settings=$2
    shift 2
    # shellcheck disable=SC2086 # the settings are words
    env PIO_REQUIRE_GPU=1 $settings "$GPU_TESTS" --include-ignored --test-threads=1 --nocapture "$@" \
        > "$OUT/gpu-tests-$name.txt" 2>&1 || status=1
    echo "--- $name ($settings): $(grep -E '^test result' "$OUT/gpu-tests-$name.txt")"
    grep -E "panicked|FAILED" "$OUT/gpu-tests-$name.txt" | head -5
    echo "[$((SECONDS - t0)) s]"
}
run_tests few-rows "" few_rows_gemm
grep -E "worst" "$OUT/gpu-tests-few-rows.txt" | head -40
run_tests oracle-fused "PIO_FUSED_ROW_GEMM=1" kernel_oracle::qwen3_tiny kernel_oracle::qwen3_0_6b_2layers \
    kernel_oracle::qwen3_4b_1layer kernel_oracle::llama_tiny kernel_oracle::qwen2_5_1_5b_1layer \
    kernel_oracle::llama_3_2_1b_1layer
grep -E "row_gemm|projection|NormLinear|LinearAdd" "$OUT/gpu-tests-oracle-fused.txt" | head -20
run_tests engine-rows-only "PIO_GEMM_ROWS=only" batching chunking chunk_steps long_batch
run_tests engine-fused "PIO_FUSED_ROW_GEMM=1" batching chunking chunk_steps long_batch
[ $status = 0 ] || { echo "=== a decode GEMM path failed its tests: no throughput runs"; exit 1; }
MODELS=${MODELS:-qwen3-0.6b} ROUNDS=1 SKIP_PREFIX=1 OUT="$OUT/ab" \
    bash "$(dirname "$0")/ab_engine.sh" "$PIO" "PIO_GEMM_ROWS=1 $PIO" "PIO_FUSED_ROW_GEMM=1 $PIO" \
    "PIO_GEMM_ROWS=1 PIO_FUSED_ROW_GEMM=1 $PIO"
echo "[$((SECONDS - t0)) s]"
