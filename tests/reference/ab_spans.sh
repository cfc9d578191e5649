#!/usr/bin/env bash
# A/B of the decode attention's spans per kv head (GPU machine only): `pio bench` decode speed
# at long contexts for each variant "SPANS BINARY" given (default: 8, 4 and 2 spans of
# target/release/pio), both models, all in one call so that the figures compare.
set -uo pipefail
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
[ $# -eq 0 ] && set -- "8 target/release/pio" "4 target/release/pio" "2 target/release/pio"
for spec in ${SPECS:-qwen3-0.6b qwen3-4b-instruct-2507}; do
    for variant in "$@"; do
        read -r spans bin <<< "$variant"
        echo "== $spec: $bin, spans $spans"
        PIO_DECODE_SPANS=$spans $bin bench --spec $spec --device cuda --weights random --prompt-len 128 \
            --gen 64 --context ${CONTEXTS:-4096,16384} --repeats 2 2>&1 | grep -E "^\| Qwen3.*\| [0-9]+ \| [0-9.]+( \([^)]*\))? \| [0-9]+ \|$"
    done
done
