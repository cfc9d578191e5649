#!/usr/bin/env bash
# Runs every GPU-machine check of pio in one device call and leaves logs under $OUT.
# Build here first (the GPU machine has no cargo):  cargo build --release
# Then, through the device tool: command "bash tests/reference/run_on_gpu.sh",
# carry ["target/release/pio"]. Results are recorded in tests/reference/GPU_RESULTS.md.
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PYTHONUNBUFFERED=1
status=0
log() { echo; echo "=== $*"; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "($1 ${2:-}: $((SECONDS - t0)) s)"; return $rc; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
git log -1 --format='commit %H' 2>/dev/null || true

# 1. The tiny fixture: HF float32 logits for a prefill of 8 tokens + 9 greedy decode steps.
TINY_IDS=9,72,300,17,255,480,101,33
log "tiny: HF fixture + pio CPU comparison"
python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-tiny --ids $TINY_IDS \
    --decode-steps 9 --out "$OUT/hf_logits.json" || status=1
$PIO logits --spec qwen3-tiny --weights tests/fixtures/hf-tiny --ids $TINY_IDS --decode-steps 9 \
    -o "$OUT/pio_tiny.npy" --device cpu || status=1
python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-tiny --ids $TINY_IDS \
    --decode-steps 9 --compare "$OUT/pio_tiny.npy" || status=1

# 2. Real shapes, prefill only: "The quick brown fox jumps over the lazy dog. 東京は日本の首都です。"
REAL_IDS=785,3974,13876,38835,34208,916,279,15678,5562,13,60596,109,46553,15322,131888,106114,37541,1773
for spec in qwen3-0.6b qwen3-4b-instruct-2507; do
    [ "${SKIP_4B:-0}" = 1 ] && [ "$spec" = qwen3-4b-instruct-2507 ] && continue
    log "$spec: random weights (seed 0), pio CPU executor vs HF float32, prefill of 18 tokens"
    W=/tmp/pio-weights-$spec
    rm -rf "$W"
    timed $PIO init-weights $spec -o "$W" --seed 0 || status=1
    timed $PIO logits --spec $spec --weights "$W" --ids $REAL_IDS \
        -o "$OUT/pio_$spec.npy" --device cpu || status=1
    python3 tests/reference/hf_reference.py --weights "$W" --ids $REAL_IDS \
        --compare "$OUT/pio_$spec.npy" 2>&1 | tee "$OUT/compare_$spec.txt" || status=1
    rm -rf "$W" "$OUT/pio_$spec.npy"
done
log "done: status $status"
exit $status
