#!/usr/bin/env bash
# A/B of two pio builds on the prefill path, in one device call: whether their logits are the same
# bits (`pio logits` of a prompt prefilled in chunks over the cached positions, every row), the
# prefill speed (`ab_bench.sh`, prompts of PROMPTS tokens), with PREFIX=1 the batching engine's
# shared-prefix run (64 requests of 4,096 shared + 64 own tokens: a prefix-cache hit's TTFT)
# and the per-kernel profile of build B (profile_on_gpu.sh); first, GPU tests (GPU_TESTS: the
# test binary; GPU_FILTER: which tests).
# A=path B=path [C=path] (binaries carried in the working tree; B and C are compared with A);
# PREFIX_SIDES: the sides of the shared-prefix run (default all); BENCH_ARGS: `pio bench`'s
# arguments in place of the prefill ones; DECODE_STEPS: decode rows of the logits (default 4).
# Reports go to one tarball in $OUT (the device tool brings back few files).
set -uo pipefail
FINAL=${OUT:-/tmp/pio-out}
export OUT=/tmp/pio-ab-reports
mkdir -p "$OUT" "$FINAL"
A=${A:?path of build A}
B=${B:?path of build B}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
status=0
SIDES="A B${C:+ C}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -n "${GPU_TESTS:-}" ]; then
    echo "=== GPU tests: ${GPU_FILTER:-(all)}"
    PIO_REQUIRE_GPU=1 "$GPU_TESTS" ${GPU_FILTER:-} --include-ignored --test-threads=1 --nocapture \
        > "$OUT/gpu-tests.log" 2>&1 || status=1
    grep -E "worst|panicked|^test |test result" "$OUT/gpu-tests.log" | tail -${GPU_LINES:-40}
fi
if [ "${PREFIX:-0}" = 1 ]; then
    for m in $MODELS; do
        for side in ${PREFIX_SIDES:-$SIDES}; do
            echo "=== $m, build $side: shared prefix"
            "${!side}" bench --mode shared-prefix --spec "$m" --shared-prefix 64,4096,64 --gen 64 \
                --json "$OUT/prefix-$m-$side.json" > "$OUT/prefix-$m-$side.md" 2> "$OUT/prefix-$m-$side.err" || status=1
            grep -E "^- " "$OUT/prefix-$m-$side.md"; tail -2 "$OUT/prefix-$m-$side.err"
        done
    done
fi
SPECS="$MODELS" BENCH_ARGS="${BENCH_ARGS:---prompt-len ${PROMPTS:-512,2048,8192} --context 128 --gen 16 --repeats 3 --warmup 1}" \
    ROUNDS=${ROUNDS:-2} bash tests/reference/ab_bench.sh "$A" "$B" ${C:+"$C"} || status=1
IDS=$(python3 -c "print(','.join(str((i * 7919 + 13) % 150000) for i in range(${LOGIT_TOKENS:-1500})))")
for m in $MODELS; do
    for side in $SIDES; do
        "${!side}" logits --spec "$m" --device cuda --ids "$IDS" --decode-steps "${DECODE_STEPS:-4}" -o "/tmp/logits-$m-$side.npy" \
            > /dev/null 2> "$OUT/logits-$m-$side.err" || { status=1; tail -3 "$OUT/logits-$m-$side.err"; }
    done
    for side in ${SIDES#A }; do
        if cmp -s "/tmp/logits-$m-A.npy" "/tmp/logits-$m-$side.npy"; then
            echo "=== $m: logits of A and $side are the same bits"
            continue
        fi
        echo "=== $m: logits of A and $side differ"
        python3 - "/tmp/logits-$m-A.npy" "/tmp/logits-$m-$side.npy" <<'PY'
import sys, numpy as np
a, b = (np.load(p).astype(np.float64) for p in sys.argv[1:3])
rel = np.linalg.norm(a - b, axis=-1) / np.linalg.norm(a, axis=-1)
print(f"rows {len(a)}, worst rel L2 {rel.max():.3e}, median {np.median(rel):.3e}, same top-1 {np.mean(a.argmax(-1) == b.argmax(-1)):.4f}")
PY
    done
done
if [ "${PROFILE:-1}" = 1 ]; then
    PIO=$B MODELS="$MODELS" bash tests/reference/profile_on_gpu.sh || status=1
fi
echo "=== done: status $status"
tar czf "$FINAL/ab-prefill.tar.gz" -C "$OUT" .
exit $status
