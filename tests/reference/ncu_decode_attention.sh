#!/usr/bin/env bash
# Nsight Compute on the decode attention kernel (GPU machine, Firecracker runtime: ncu reads the
# hardware counters there). Eager launches (no CUDA graph, no PDL) so that each kernel is profiled
# on its own; the clocks are left alone (--clock-control none).
#   SPEC (default qwen3-4b-instruct-2507), CONTEXT (default 16384), SET (default full)
# Usage through the device tool: bash tests/reference/ncu_decode_attention.sh, carrying
# target/release/pio. Writes $OUT/ncu-<spec>-<context>.txt (details) and .csv (raw metrics).
set -uo pipefail
SPEC=${SPEC:-qwen3-4b-instruct-2507}
CONTEXT=${CONTEXT:-16384}
SET=${SET:-full}
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
export PIO_CACHE_DIR=/tmp/pio-kernel-cache PIO_NO_CUDA_GRAPH=1 PIO_NO_PDL=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
LAYERS=$(grep -E '^ *num_layers:' model-specs/$SPEC.yaml | awk '{print $2}')
# The bench prefills with chunks as long as its longest prompt (2,048 here: 1 would prefill the
# context one token at a time); the decode attention runs only in the decode steps. Skip the
# first two decode steps, then profile two launches (layers 0 and 1 of the third step).
base="$OUT/ncu-$SPEC-$CONTEXT"
"$NCU" --clock-control none --kernel-name regex:attention_cluster --launch-skip $((2 * LAYERS)) \
    --launch-count 2 --set "$SET" --import-source no -o "$base" -f \
    target/release/pio bench --spec "$SPEC" --device cuda --weights random --prompt-len 2048 \
    --gen 4 --context "$CONTEXT" --repeats 1 --warmup 0 > "$base.log" 2>&1
rc=$?
tail -5 "$base.log"
"$NCU" --import "$base.ncu-rep" --page details > "$base.txt" 2>&1
"$NCU" --import "$base.ncu-rep" --page raw --csv > "$base.csv" 2>&1
grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|Eligible Warps|No Eligible|Cluster" "$base.txt" | head -40
exit $rc
