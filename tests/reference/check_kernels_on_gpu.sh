#!/usr/bin/env bash
# Compiles every generated kernel of every spec with NVRTC for sm_90 on the GPU machine.
# Carry target/release/pio and target/release/pio-compile. Results: tests/reference/GPU_RESULTS.md.
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for spec in qwen3-tiny qwen3-0.6b qwen3-4b-instruct-2507; do
    echo "=== $spec"
    target/release/pio-compile $spec -o /tmp/pio-art-$spec || status=1
    target/release/pio check-kernels /tmp/pio-art-$spec --arch sm_90 2>&1 | tee "$OUT/kernels-$spec.txt" || status=1
done
echo "=== done: status $status"
exit $status
