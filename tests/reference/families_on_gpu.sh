#!/usr/bin/env bash
# Issue 17 on the GPU machine: the model families beyond Qwen3 (qwen2: Qwen2.5; llama: Llama
# 3.1/3.2) and rope scaling, against HF transformers on the same random-weight directories.
# Build here first (the GPU machine has no cargo), as for run_on_gpu.sh:
#   cargo build --release && cargo test --release --no-run --test gpu  -> target/release/gpu-tests
# Then through the device tool: command "OUT=$OUT bash tests/reference/families_on_gpu.sh",
# carry ["target/release/pio", "target/release/pio-compile", "target/release/gpu-tests"].
# STAGES picks what runs (default "ropes fixtures parity bench"); also "tests" (the GPU suite),
# "big" (8B shapes), "long" (YaRN and llama3 past their pretrained context), "more" (Llama-3.2-1B
# at 1,024 positions), "qwen3" (the 0.6B bench, to show Qwen3 did not move). Results go to tests/reference/GPU_RESULTS.md.
set -uo pipefail
STAGES=" ${STAGES:-ropes fixtures parity bench} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
OUT=${OUT:-/tmp/pio-out}
LOGS=/tmp/pio-families-logs
mkdir -p "$OUT" "$LOGS"
PIO=${PIO:-target/release/pio}
# What a parity run must meet for the exit status: issue 17's bars (the error ratio and top-1
# against HF-f32 within a point of HF-bf16's); "ratio,top1_f32,top1_bf16" adds the 95% agreement
# with HF-bf16 that random weights' flat logits rarely give.
REQUIRE=${REQUIRE:-ratio,top1_f32}
export PYTHONUNBUFFERED=1 PIO_CACHE_DIR=/tmp/pio-kernel-cache
status=0
t0=$SECONDS
log() { echo; echo "=== [$((SECONDS - t0)) s] $*"; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"

if stage ropes; then
    log "HF's rope tables (inv_freq, attention scaling) for every scaling pio computes"
    python3 tests/reference/hf_rope_tables.py --out "$OUT/hf_rope_tables.json" 2>&1 | tail -12 || status=1
fi

# Tiny fixtures: 72-token prompts reach past the pretrained context (64) of the scaled ones.
IDS8=9,72,300,17,255,480,101,33
IDS72=$(python3 -c "print(','.join(str((i * 7919 + 13) % 500) for i in range(72)))")
if stage fixtures; then
    for case in "qwen2.5-tiny:$IDS8" "llama-tiny:$IDS72" "qwen3-tiny-yarn:$IDS72"; do
        name=${case%%:*}; ids=${case#*:}
        log "tiny fixture $name: HF float32 logits (prefill + 9 greedy steps)"
        python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-$name --ids "$ids" \
            --decode-steps 9 --out "$OUT/hf_logits-$name.json" 2>&1 | grep -v Loading | tail -2 || status=1
        # pio's CPU executor on the same directory, read through its config.json (no spec).
        $PIO logits --weights tests/fixtures/hf-$name --ids "$ids" --decode-steps 9 \
            -o "$LOGS/pio-cpu-$name.npy" --device cpu > /dev/null 2>&1 || status=1
        python3 tests/reference/hf_reference.py --weights tests/fixtures/hf-$name --ids "$ids" \
            --decode-steps 9 --compare "$LOGS/pio-cpu-$name.npy" 2>&1 | tail -1 || status=1
    done
fi

parity() { # spec, prompt, steps, label[, seed of the random weights, default 0]
    local spec=$1 prompt=$2 steps=$3 label=$4 seed=${5:-0}
    local W=/tmp/pio-w-$1$([ "$seed" = 0 ] || echo "-s$seed")
    [ -d "$W" ] || $PIO init-weights "$spec" -o "$W" --seed "$seed" > /dev/null || { status=1; return; }
    log "$label: pio CUDA (config.json, no spec) vs HF f32 / bf16, $prompt-token prompt + $steps teacher-forced steps"
    python3 tests/reference/hf_parity.py --weights "$W" --prompt "$prompt" --steps "$steps" --pio "$PIO" --require "$REQUIRE" \
        2>&1 | grep -v "Loading weights" | tail -14 | tee "$LOGS/parity-$label.txt" || status=1
}

if stage parity; then
    parity qwen2.5-1.5b 128 128 qwen2.5-1.5b
    parity llama-3.2-1b 128 128 llama-3.2-1b
fi

bench() { # spec
    log "$1: pio bench (random weights), decode at 128 and 4,096, prefill of 2,048"
    $PIO bench --spec "$1" --device cuda --weights random --prompt-len 2048 --context 128,4096 \
        --gen 64 --repeats 3 --json "$LOGS/bench-$1.json" 2>&1 | tail -6 || status=1
}

if stage bench; then
    bench qwen2.5-1.5b
    bench llama-3.2-1b
fi
if stage qwen3; then
    bench qwen3-0.6b
fi

if stage long; then
    # YaRN: Qwen3-0.6B's shapes with rope_scaling yarn x4 over a pretrained context of 4,096 (the
    # recipe's 32,768 scaled down to fit the GPU path's context cap), a 5,000-token prompt past it.
    W=/tmp/pio-w-qwen3-0.6b-yarn
    $PIO init-weights qwen3-0.6b -o "$W" --seed 0 > /dev/null || status=1
    python3 - "$W/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
c["max_position_embeddings"] = 16384
json.dump(c, open(p, "w"), indent=2)
PY
    log "qwen3-0.6b yarn (x4 over 4,096): 5,000-token prompt + 64 steps"
    python3 tests/reference/hf_parity.py --weights "$W" --prompt 5000 --steps 64 --pio "$PIO" --require "$REQUIRE" \
        2>&1 | grep -v "Loading weights" | tail -14 | tee "$LOGS/parity-qwen3-0.6b-yarn.txt" || status=1
    rm -rf "$W"
    # llama3 rope: Llama-3.2-1B as published (x32 over 8,192), a 9,000-token prompt past 8,192.
    parity llama-3.2-1b 9000 64 llama-3.2-1b-long
fi

if stage more; then
    # The top-1 bar at 4x the positions (random weights tie often: 256 positions leave the
    # agreement a few points of noise).
    # SEEDS="0 1 2": other random weights of the same shapes (is the gap the weights' ties?).
    for seed in ${SEEDS:-0}; do
        parity llama-3.2-1b 128 896 "llama-3.2-1b-1024-s$seed" "$seed"
        [ "$seed" = 0 ] || rm -rf "/tmp/pio-w-llama-3.2-1b-s$seed"
    done
fi

if stage big; then
    # LLAMA_8B=0 skips Llama-3.1-8B (run on 2026-12-06 at 3bdf6d1).
    # SEEDS="1 2": other random weights of the same shapes (seed 0 by default). BIG_STEPS=896
    # teacher-forces 1,024 positions instead of 256 (the top-1 count's noise shrinks by half).
    if [ "${LLAMA_8B:-1}" = 1 ]; then
        for seed in ${SEEDS:-0}; do
            parity llama-3.1-8b 128 "${BIG_STEPS:-128}" "llama-3.1-8b-$((128 + ${BIG_STEPS:-128}))-s$seed" "$seed"
            rm -rf /tmp/pio-w-llama-3.1-8b*
        done
    fi
    # QWEN3_8B=1 adds Qwen3-8B's shapes (another ~3 minutes; not run on 2026-12-06).
    if [ "${QWEN3_8B:-0}" = 1 ]; then
        parity qwen3-8b 128 128 qwen3-8b
        rm -rf /tmp/pio-w-qwen3-8b
    fi
    # QWEN25_7B=1 adds Qwen2.5-7B's shapes (the qwen2 family's large variant; ~3 minutes).
    if [ "${QWEN25_7B:-0}" = 1 ]; then
        parity qwen2.5-7b 128 128 qwen2.5-7b
        rm -rf /tmp/pio-w-qwen2.5-7b
    fi
fi

if stage tests; then
    log "GPU tests (the per-kernel oracle over the new families, batching, chunking, ...)"
    PIO_REQUIRE_GPU=1 target/release/gpu-tests --include-ignored --test-threads=1 --nocapture \
        > "$LOGS/gpu-tests.txt" 2>&1 || status=1
    grep -E "test result|panicked|FAILED|worst" "$LOGS/gpu-tests.txt" | tail -40
fi

log "done: status $status"
tar czf "$OUT/logs.tar.gz" -C "$LOGS" . 2>/dev/null
exit $status
