#!/usr/bin/env bash
# Every GPU-machine check of pio in one device call; logs under $OUT.
# Build here first (the GPU machine has no cargo):
#   cargo build --release && cargo test --release --no-run --test gpu   (prints the test binary)
#   cp <that binary> target/release/gpu-tests
# Then through the device tool: command "bash tests/reference/run_on_gpu.sh",
# carry ["target/release/pio", "target/release/pio-compile", "target/release/gpu-tests"].
# Results are recorded in tests/reference/GPU_RESULTS.md. STAGES picks what runs (default: all
# of "kernels tests limits tiny parity speed"); SKIP_4B=1 skips the 4B model.
set -uo pipefail
STAGES=" ${STAGES:-kernels tests limits tiny parity speed} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PYTHONUNBUFFERED=1 PIO_CACHE_DIR=/tmp/pio-kernel-cache
status=0
log() { echo; echo "=== $*"; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "($1 ${2:-}: $((SECONDS - t0)) s)"; return $rc; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

stage kernels && log "NVRTC: every generated kernel, every spec"
stage kernels && for spec in qwen3-tiny qwen3-0.6b qwen3-4b-instruct-2507; do
    target/release/pio-compile $spec -o /tmp/pio-art-$spec > /dev/null 2>&1 || status=1
    $PIO check-kernels /tmp/pio-art-$spec --arch sm_90 > "$OUT/kernels-$spec.txt" 2>&1 || status=1
    tail -1 "$OUT/kernels-$spec.txt"
done

if stage tests; then
log "GPU tests (CUDA vs CPU executor, graph vs eager, sampling, errors)"
PIO_REQUIRE_GPU=1 target/release/gpu-tests --include-ignored --test-threads=1 --nocapture > "$OUT/gpu-tests.txt" 2>&1 || status=1
grep -E "rel L2|test result|panicked|FAILED" "$OUT/gpu-tests.txt" | awk '/row/{n++; if (n % 6 != 1) next} {print}' | tail -30
log "GPU tests again, kernels compiled as PTX for compute_80 (the paths of GPUs before Hopper)"
PIO_REQUIRE_GPU=1 PIO_NVRTC_ARCH=compute_80 target/release/gpu-tests --include-ignored --test-threads=1 > "$OUT/gpu-tests-compute_80.txt" 2>&1 || status=1
grep -E "test result|panicked|FAILED" "$OUT/gpu-tests-compute_80.txt"
fi

if stage limits; then
log "limits: a model larger than the GPU is refused before anything is allocated"
BIG=/tmp/pio-big; rm -rf $BIG; mkdir -p $BIG
cp -r model-specs/qwen3.yaml model-specs/tokenizers $BIG/
sed 's/hidden_size: 64/hidden_size: 16000000/; s/vocab_size: 512/vocab_size: 4096/' \
    model-specs/qwen3-tiny.yaml > $BIG/big.yaml
$PIO run --spec $BIG/big.yaml --device cuda --max-new-tokens 1 > "$OUT/limits.txt" 2>&1
rc=$?
tail -2 "$OUT/limits.txt"
if [ $rc != 1 ] || ! grep -q "not enough GPU memory" "$OUT/limits.txt"; then
    echo "FAILED: expected a refusal naming GPU memory (rc $rc)"; status=1
fi
fi

TINY_IDS=9,72,300,17,255,480,101,33
stage tiny && {
log "tiny: CPU executor vs HF float32 (fixture)"
python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-tiny --ids $TINY_IDS \
    --decode-steps 9 --out "$OUT/hf_logits.json" > /dev/null 2>&1 || status=1
$PIO logits --spec qwen3-tiny --weights tests/fixtures/hf-tiny --ids $TINY_IDS --decode-steps 9 \
    -o "$OUT/pio_tiny.npy" --device cpu > /dev/null 2>&1 || status=1
python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-tiny --ids $TINY_IDS \
    --decode-steps 9 --compare "$OUT/pio_tiny.npy" 2>&1 | tail -1 || status=1
}

for spec in qwen3-0.6b qwen3-4b-instruct-2507; do
    [ "${SKIP_4B:-0}" = 1 ] && [ "$spec" = qwen3-4b-instruct-2507 ] && continue
    if stage parity; then
        W=/tmp/pio-weights-$spec
        rm -rf "$W"
        log "$spec: random weights (seed 0)"
        timed $PIO init-weights $spec -o "$W" --seed 0 || status=1
        log "$spec: pio CUDA (bf16) vs HF float32 and bfloat16, 128-token prompt + 128 teacher-forced steps"
        python3 tests/reference/hf_parity.py --spec $spec --weights "$W" 2>&1 | grep -v "Loading weights" | tail -14 | tee "$OUT/parity-$spec.txt" || status=1
        rm -rf "$W"
    fi
    if stage speed; then
        log "$spec: speed (128-token prompt, 256 generated tokens, greedy, context 4096), PDL on, then off"
        PROMPT=$(python3 -c "print(' word' * 128)")
        for pdl in on on off; do
            env $([ $pdl = off ] && echo PIO_NO_PDL=1) $PIO run --spec $spec --weights random --prompt "$PROMPT" \
                --max-new-tokens 256 --ignore-eos --temperature 0 --device cuda --max-context 4096 2>&1 >/dev/null \
                | grep -E "tokens/s|memory|note" | sed "s/^/[pdl $pdl] /" || status=1
        done
    fi
done
if stage bench; then
    log "pio bench smoke test (0.6B, short settings)"
    timed $PIO bench --spec qwen3-0.6b --device cuda --weights random --prompt-len 128,512 --gen 32 \
        --context 128,1024 --repeats 2 --json "$OUT/bench-smoke.json" --plots "$OUT/plots-smoke" 2>&1 | tail -25 || status=1
fi
log "done: status $status"
exit $status
