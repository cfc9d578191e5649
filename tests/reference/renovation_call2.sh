# The renovation's A/B (issue 13): the last commit before it (d81d3e2, reading its own specs)
# against the renovated build, both models, decode and prefill, two rounds; then HF parity.
set -u
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== A/B bench"
ROUNDS=2 bash tests/reference/ab_bench.sh "PIO_SPECS=target/ab/old-specs/model-specs target/ab/pio-old" target/release/pio
echo "=== pio bench --artifact (0.6B, the same settings)"
target/release/pio-compile qwen3-0.6b -o /tmp/art06 --max-context 16512 --max-prefill 2048 > /dev/null
target/release/pio bench --artifact /tmp/art06 --weights random --device cuda --prompt-len 128,2048 --context 128,16384 --gen 128 --repeats 3 --warmup 1 --json $OUT/bench-artifact.json 2>/dev/null | grep -E "Qwen3|decode|prefill" | head -8
for spec in qwen3-0.6b qwen3-4b-instruct-2507; do
  echo "=== parity $spec"
  W=/tmp/w-$spec; target/release/pio init-weights $spec -o $W --seed 0 > /dev/null
  python3 tests/reference/hf_parity.py --spec $spec --weights $W 2>&1 | grep -v "Loading weights" | tail -14 > $OUT/parity-$spec.txt
  tail -6 $OUT/parity-$spec.txt; rm -rf $W
done
