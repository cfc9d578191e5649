#!/usr/bin/env bash
# Issue 18 on a machine of several GPUs (nvidia-h200-x2 or larger; ask the device tool's status
# first): tensor parallel over NCCL against one GPU, in one device call.
# Build here first (the GPU machine has no cargo):
#   cargo build --release && cargo test --release --no-run --test gpu  -> copy to target/release/gpu-tests
# Through the device tool: command "OUT=$OUT bash tests/reference/tp_on_gpu.sh", carrying
# target/release/pio and target/release/gpu-tests (or gzipped copies: PIO=..., GPU_TESTS=...).
# Stages (STAGES, default "tests bench"):
#   tests  the GPU tests `tensor_parallel` (TP2, and TP4 on 4 GPUs, vs one GPU: rel L2 <= 1e-2
#          per row, greedy tokens, the batching engine) with PIO_REQUIRE_TP=1;
#   bench  Qwen3-4B-Instruct-2507 decode at batch 1 (context 128) and the engine's throughput at
#          64 requests (512 + 256 tokens), TP1 against TP2; then a TP2 decode under PIO_PROFILE
#          for the all-reduce of a step's hidden state alone (us per launch).
# Results go to tests/reference/GPU_RESULTS.md and BENCHMARKS.md. NVLink multicast stays off.
set -uo pipefail
STAGES=" ${STAGES:-tests bench} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
GPU_TESTS=${GPU_TESTS:-target/release/gpu-tests}
MODEL=${MODEL:-qwen3-4b-instruct-2507}
TP=${TP:-2}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
# NCCL from PyTorch's wheel where the system has none on the loader's path.
NCCL_DIR=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null)
[ -n "$NCCL_DIR" ] && export LD_LIBRARY_PATH="$NCCL_DIR:${LD_LIBRARY_PATH:-}"
status=0
t0=$SECONDS
log() { echo; echo "=== [$((SECONDS - t0)) s] $*"; }

log "machine"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -6
ls "${NCCL_DIR:-/nonexistent}" 2>/dev/null | grep nccl || ldconfig -p | grep nccl

if stage tests; then
    log "GPU tests: tensor_parallel"
    PIO_REQUIRE_GPU=1 PIO_REQUIRE_TP=1 "$GPU_TESTS" tensor_parallel --include-ignored \
        --test-threads=1 --nocapture > "$OUT/tp-tests.txt" 2>&1 || status=1
    grep -E "rel L2|tie|test result|panicked|FAILED" "$OUT/tp-tests.txt" | tail -30
fi

if stage bench; then
    for tp in 1 "$TP"; do
        log "$MODEL, TP$tp: batch-1 decode at context 128"
        "$PIO" bench --spec "$MODEL" --device cuda --tp "$tp" --prompt-len 128 --context 128 \
            --gen 128 --repeats 3 --json "$OUT/latency-tp$tp.json" > "$OUT/latency-tp$tp.md" \
            2> "$OUT/latency-tp$tp.err" || status=1
        grep -A2 "decode (tokens/s)" "$OUT/latency-tp$tp.md" | tail -1; tail -2 "$OUT/latency-tp$tp.err"
        log "$MODEL, TP$tp: throughput, 64 requests of 512 + 256 tokens"
        "$PIO" bench --mode throughput --spec "$MODEL" --tp "$tp" --requests 64 --prompt-len 512 \
            --gen 256 --json "$OUT/throughput-tp$tp.json" > "$OUT/throughput-tp$tp.md" \
            2> "$OUT/throughput-tp$tp.err" || status=1
        tail -3 "$OUT/throughput-tp$tp.md"; tail -2 "$OUT/throughput-tp$tp.err"
    done
    log "$MODEL, TP$TP: the collectives per launch (PIO_PROFILE, decode eager)"
    PIO_PROFILE=1 "$PIO" bench --spec "$MODEL" --device cuda --tp "$TP" --prompt-len 128 \
        --context 128 --gen 64 --repeats 1 > /dev/null 2> "$OUT/profile-tp$TP.txt" || status=1
    grep -E "nccl|decode:|prefill:" "$OUT/profile-tp$TP.txt" | head -12
fi

log "done: status $status"
exit $status
