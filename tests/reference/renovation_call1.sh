set -u
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "=== GPU tests"
target/release/gpu-tests --test-threads=1 > $OUT/gpu-tests.txt 2>&1; echo "rc $?"
grep -E "test result|panicked|FAILED" $OUT/gpu-tests.txt | tail -8
echo "=== GPU tests compute_80"
PIO_NVRTC_ARCH=compute_80 target/release/gpu-tests --test-threads=1 > $OUT/gpu-tests-80.txt 2>&1; echo "rc $?"
grep -E "test result|panicked|FAILED" $OUT/gpu-tests-80.txt | tail -5
echo "=== artifact run"
target/release/pio-compile qwen3-0.6b -o /tmp/art06 --max-context 4096 | tail -2
P=$(python3 -c "print(' word' * 128)")
for b in "target/ab/pio-old run --spec qwen3-0.6b --max-context 4096" "target/release/pio run --spec qwen3-0.6b --max-context 4096" "target/release/pio run --artifact /tmp/art06"; do
  $b --weights random --prompt "$P" --max-new-tokens 256 --ignore-eos --temperature 0 --device cuda > $OUT/out.txt 2> $OUT/err.txt; echo "[$b] rc $? $(md5sum < $OUT/out.txt | cut -c1-12) $(grep -o 'generated: .*' $OUT/err.txt)"
done
echo "=== A/B bench round 1"
ROUNDS=1 bash tests/reference/ab_bench.sh target/ab/pio-old target/release/pio
