#!/usr/bin/env bash
# Decode speed under several decode-GEMV launch shapes (PIO_GEMV, see README), GPU machine only:
# 128-token prompt, 256 generated tokens, greedy, context 4096, random weights; two runs each.
# TUNINGS is a space-separated list of PIO_GEMV values ("default" for none).
set -uo pipefail
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
P=$(python3 -c "print(' word' * 128)")
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    for t in ${TUNINGS:-default warps=4 rows=1 warps=4,rows=1}; do
        for i in 1 2; do
            tps=$(env $([ "$t" != default ] && echo PIO_GEMV=$t) $PIO run --spec $spec --weights random \
                --prompt "$P" --max-new-tokens 256 --ignore-eos --temperature 0 --device cuda \
                --max-context 4096 2>&1 >/dev/null | grep -o "generated: 256 tokens, [0-9.]* tokens/s" | grep -o "[0-9.]* tokens/s")
            echo "$spec $t run $i: $tps"
        done
    done
done
