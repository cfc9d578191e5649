#!/usr/bin/env bash
# A/B decode speed on the same GPU in one call (GPU machine only): 128-token prompt, 256
# generated tokens, greedy, context 4096 (MAX_CONTEXT), random weights. Each argument is a variant: a pio
# binary, optionally preceded by environment settings; variants run in turn, ROUNDS times, so
# that drifts hit all alike. Examples:
#   ab_speed.sh target/ab/pio-old target/release/pio
#   ab_speed.sh target/release/pio "PIO_GEMV=rows=2 target/release/pio" "PIO_NO_PDL=1 target/release/pio"
set -uo pipefail
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
P=$(python3 -c "print(' word' * 128)")
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    for round in $(seq ${ROUNDS:-2}); do
        for variant in "$@"; do
            # shellcheck disable=SC2086 # a variant is words: settings, then the binary
            tps=$(env $variant run --spec $spec --weights random --prompt "$P" --max-new-tokens 256 \
                --ignore-eos --temperature 0 --device cuda --max-context ${MAX_CONTEXT:-4096} 2>&1 >/dev/null \
                | grep -o "generated: 256 tokens, [0-9.]* tokens/s" | grep -o "[0-9.]* tokens/s")
            echo "$spec [$variant] round $round: $tps"
        done
    done
done
