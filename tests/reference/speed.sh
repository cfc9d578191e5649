#!/usr/bin/env bash
# Decode speed on the GPU machine: 128-token prompt, 256 generated tokens, greedy, batch 1,
# context 4096, random weights of the real shapes; then a per-kernel profile (PIO_PROFILE).
set -uo pipefail
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
P=$(python3 -c "print(' word' * 128)")
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    echo "== $spec"
    for i in 1 2 3; do
        $PIO run --spec $spec --weights random --prompt "$P" --max-new-tokens 256 --ignore-eos \
            --temperature 0 --device cuda --max-context 4096 2>&1 >/dev/null | grep -E "tokens/s"
    done
    $PIO run --spec $spec --weights random --prompt "$P" --max-new-tokens 256 --ignore-eos \
        --temperature 0.7 --top-k 20 --top-p 0.8 --device cuda --max-context 4096 2>&1 >/dev/null | grep -E "tokens/s|memory"
    [ "${PROFILE:-1}" = 1 ] && PIO_PROFILE=1 $PIO run --spec $spec --weights random --prompt "$P" \
        --max-new-tokens 64 --ignore-eos --temperature 0 --device cuda --max-context 4096 2>&1 >/dev/null | sed -n '/^decode:/,/^prefill:/p'
done
