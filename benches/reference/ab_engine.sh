#!/usr/bin/env bash
# A/B of the batching engine's benchmarks on the same GPU in one call (GPU machine only): each
# argument is a variant: a pio binary, optionally preceded by environment settings and followed
# by `pio bench` flags (e.g. "PIO_NO_CUDA_GRAPH=1 /tmp/b/pio", "/tmp/b/pio --max-batch-tokens
# 4096"); for every model the variants run in turn, ROUNDS times (so
# that drifts hit all alike): offline throughput (REQUESTS requests of 512 + 256 tokens) and, unless
# SKIP_PREFIX is set, the shared-prefix run (64 requests, 4,096 shared + 64 own tokens). Prints
# each run's figures and keeps each report (JSON, markdown, stderr) under $OUT (the device
# tool brings back a few files only: the printed lines are the record). ab_serving.sh compares
# two builds with batch-1 decode and a profile beside; this one any number of variants on the
# engine's two benchmarks alone. Example:
#   benches/reference/ab_engine.sh /tmp/b/pio-old /tmp/b/pio-new "PIO_NO_CUDA_GRAPH=1 /tmp/b/pio-new"
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for m in $MODELS; do
    for round in $(seq "${ROUNDS:-2}"); do
        for variant in "$@"; do
            # Words before the binary (the first word with a '/') are settings, words after it
            # are `pio bench` flags.
            settings="" bin="" flags=""
            for w in $variant; do
                if [ -n "$bin" ]; then flags="$flags $w"
                elif [[ "$w" == */* ]]; then bin=$w
                else settings="$settings $w"; fi
            done
            tag="$m-$(basename "$bin")$(echo "$settings$flags" | tr -c 'A-Za-z0-9\n' '_' | sed 's/^_*/-/;s/^-$//')-r$round"
            # shellcheck disable=SC2086 # the settings and flags are words
            env $settings "$bin" bench --mode throughput --spec "$m" --requests "${REQUESTS:-128}" \
                --prompt-len 512 --gen 256 $flags --json "$OUT/tp-$tag.json" > "$OUT/tp-$tag.md" \
                2> "$OUT/tp-$tag.err" || { status=1; echo "$tag throughput: FAILED"; tail -3 "$OUT/tp-$tag.err"; }
            echo "$tag throughput: $(grep '^| [0-9]' "$OUT/tp-$tag.md") $(grep -m1 '^tuned' "$OUT/tp-$tag.err")"
            [ -z "${SKIP_PREFIX:-}" ] || continue
            # shellcheck disable=SC2086
            env $settings "$bin" bench --mode shared-prefix --spec "$m" --shared-prefix 64,4096,64 --gen 64 $flags \
                --json "$OUT/prefix-$tag.json" > "$OUT/prefix-$tag.md" 2> "$OUT/prefix-$tag.err" \
                || { status=1; echo "$tag shared prefix: FAILED"; tail -3 "$OUT/prefix-$tag.err"; }
            echo "$tag shared prefix:"; grep '^- ' "$OUT/prefix-$tag.md"
        done
    done
done
echo "=== done: status $status"
exit $status
