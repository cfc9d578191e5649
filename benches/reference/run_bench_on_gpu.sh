#!/usr/bin/env bash
# The benchmark table for BENCHMARKS.md, on the GPU machine: `pio bench` for Qwen3-0.6B and
# Qwen3-4B-Instruct-2507, and HF transformers (eager, and static cache + torch.compile) on the very
# same weight directories (written here by `pio init-weights`, seed 0) and settings, then
# `pio compare` for the ratio tables and the plots. Everything lands in $OUT.
#
# Build here first (the GPU machine has no cargo): cargo build --release; then through the device
# tool: command "bash benches/reference/run_bench_on_gpu.sh", carry ["target/release/pio"].
# The whole script took 9 min 10 s on an H100 (2026-11-26, BENCHMARKS.md): one device call. The
# device tool returns only a few files per call, so point OUT at a scratch folder and tar it into
# the tool's $OUT (BENCHMARKS.md shows the command). STAGES picks what runs (default "pio hf-eager
# hf-compile compare"); a later call can run the remaining stages if it is given the earlier JSON
# files in $RESULTS (default: $OUT).
set -uo pipefail
OUT=${OUT:-/tmp/pio-bench}
RESULTS=${RESULTS:-$OUT}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache PYTHONUNBUFFERED=1
STAGES=" ${STAGES:-pio hf-eager hf-compile compare} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
PROMPTS=${PROMPTS:-128,2048}
GEN=${GEN:-64}
CONTEXTS=${CONTEXTS:-128,1024,4096,16384}
REPEATS=${REPEATS:-3}
HF_REPEATS=${HF_REPEATS:-2}
status=0
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "(${*:1:3}: $((SECONDS - t0)) s)" >&2; return $rc; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
declare -A NAME=([qwen3-0.6b]=Qwen3-0.6B [qwen3-4b-instruct-2507]=Qwen3-4B-Instruct-2507)
SPECS="qwen3-0.6b qwen3-4b-instruct-2507"
for spec in $SPECS; do
    [ -f /tmp/pio-w-$spec/config.json ] || $PIO init-weights $spec -o /tmp/pio-w-$spec --seed 0 >/dev/null || status=1
done

if stage pio; then
    timed $PIO bench --spec qwen3-0.6b --spec qwen3-4b-instruct-2507 \
        --weights /tmp/pio-w-qwen3-0.6b --weights /tmp/pio-w-qwen3-4b-instruct-2507 \
        --prompt-len $PROMPTS --gen $GEN --context $CONTEXTS --repeats $REPEATS --device cuda \
        --json "$OUT/pio.json" > "$OUT/pio.md" 2> "$OUT/pio.log" || status=1
    cat "$OUT/pio.md"
fi
# The commit pio's report names (git may not know it in the GPU machine's copy of the tree).
COMMIT=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['machine']['commit'] or '')" \
    "$RESULTS/pio.json" 2>/dev/null)
for mode in eager compile; do
    stage hf-$mode || continue
    for spec in $SPECS; do
        timed python3 benches/reference/hf_bench.py --weights /tmp/pio-w-$spec --model-name ${NAME[$spec]} \
            --prompt-len $PROMPTS --gen $GEN --context $CONTEXTS --repeats $HF_REPEATS --mode $mode \
            ${COMMIT:+--commit $COMMIT} \
            --json "$OUT/hf-$mode-$spec.json" > "$OUT/hf-$mode-$spec.log" 2>&1 || { status=1; tail -5 "$OUT/hf-$mode-$spec.log"; }
    done
done
if stage compare; then
    others=$(ls "$RESULTS"/hf-*.json "$OUT"/hf-*.json 2>/dev/null | sort -u)
    $PIO compare "$RESULTS/pio.json" $others --plots "$OUT/plots" > "$OUT/compare.md" || status=1
    cat "$OUT/compare.md"
fi
echo "status $status"
exit $status
