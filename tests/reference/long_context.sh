#!/usr/bin/env bash
# Issue 20's context bar on the GPU machine: the models at their full context lengths, end to
# end (the compile default caps the KV cache at 32,768; these runs ask for more): Qwen3-0.6B at
# its 40,960 positions and Qwen3-4B-Instruct-2507 at its native 262,144 (KV cache ~38 GB), decode
# speed at 32k / 128k / 262k and the prefill of a 32,768-token prompt, random weights of the real
# shapes. Build here first: cargo build --release --bin pio; then through the device tool:
# command "OUT=$OUT bash tests/reference/long_context.sh", carry ["target/release/pio"].
# STAGES picks what runs (default "small big"). Reports (JSON) land in $OUT.
set -uo pipefail
STAGES=" ${STAGES:-small big} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
status=0
t0=$SECONDS
log() { echo; echo "=== [$((SECONDS - t0)) s] $*"; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if stage small; then
    log "qwen3-0.6b: 32,768-token prefill, decode at 32,768 and 40,000 (of 40,960)"
    timeout 120 $PIO bench --spec qwen3-0.6b --device cuda --weights random --prompt-len 32768 \
        --context 32768,40000 --gen 64 --repeats 2 --json "$OUT/long-qwen3-0.6b.json" 2>&1 | tail -12 \
        || status=1
fi

if stage big; then
    log "qwen3-4b-instruct-2507: 32,768-token prefill, decode at 32,768, 131,072 and 262,000 (of 262,144)"
    timeout 440 $PIO bench --spec qwen3-4b-instruct-2507 --device cuda --weights random \
        --prompt-len 32768 --context 32768,131072,262000 --gen 64 --repeats 1 --warmup 1 \
        --json "$OUT/long-qwen3-4b-2507.json" 2>&1 | tail -14 || status=1
fi

log "done: status $status"
exit $status
