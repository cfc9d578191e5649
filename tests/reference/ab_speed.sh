#!/usr/bin/env bash
# A/B decode speed of several pio binaries on the same GPU in one call (GPU machine only):
# 128-token prompt, 256 generated tokens, greedy, context 4096, random weights; binaries run
# in turn, ROUNDS times, so drifts hit all alike. Usage: ab_speed.sh BIN...
set -uo pipefail
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
P=$(python3 -c "print(' word' * 128)")
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    for round in $(seq ${ROUNDS:-2}); do
        for bin in "$@"; do
            tps=$($bin run --spec $spec --weights random --prompt "$P" --max-new-tokens 256 --ignore-eos \
                --temperature 0 --device cuda --max-context 4096 2>&1 >/dev/null \
                | grep -o "generated: 256 tokens, [0-9.]* tokens/s" | grep -o "[0-9.]* tokens/s")
            echo "$spec $(basename $bin) round $round: $tps"
        done
    done
done
