# Issue 13's "same logits": pio logits of the last commit before the renovation (d81d3e2, its own
# specs) and of the renovated build, compared byte for byte (prompt rows and greedy decode rows,
# through the decode graph and through the prefill path); then HF parity of the old build too.
set -u
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
OLD="env PIO_SPECS=target/ab/old-specs/model-specs target/ab/pio-old"
IDS=$(python3 -c "print(','.join(str(100 + (i * 7919) % 4000) for i in range(300)))")
for spec in qwen3-0.6b qwen3-4b-instruct-2507; do
  for path in decode prefill; do
    for v in old new; do
      b=$([ $v = old ] && echo "$OLD" || echo target/release/pio)
      $b logits --spec $spec --weights random --ids $IDS --decode-steps 32 --step-path $path \
          --device cuda --max-context 4096 -o /tmp/$v.npy > /tmp/$v.ids 2>/dev/null || echo "$v failed"
    done
    same=$(cmp -s /tmp/old.npy /tmp/new.npy && echo identical || echo DIFFERENT)
    ids=$(cmp -s /tmp/old.ids /tmp/new.ids && echo same || echo DIFFERENT)
    echo "$spec --step-path $path: logits $same ($(stat -c %s /tmp/new.npy) bytes), generated ids $ids"
  done
done
echo "=== parity of the old build (qwen3-0.6b)"
W=/tmp/w06; target/release/pio init-weights qwen3-0.6b -o $W --seed 0 > /dev/null
PIO_SPECS=target/ab/old-specs/model-specs python3 tests/reference/hf_parity.py --spec qwen3-0.6b --weights $W --pio target/ab/pio-old 2>&1 | grep -v "Loading weights" | tail -1
