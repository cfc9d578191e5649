#!/usr/bin/env bash
# Where a batch-1 decode step's time goes: Nsight Compute times every kernel of the first decode
# steps on its own (eager launches, no CUDA graph, no PDL, clocks left alone) and reads its DRAM
# bytes; the summary sets the sum of the kernels' own times against the step time `pio bench`
# measures with its CUDA graph, so what the kernel boundaries cost is the difference.
#   MODELS (default the 0.6B and the 4B), CONTEXT (default 128), PIO (default target/release/pio)
# Device call: OUT=$OUT bash tests/reference/ncu_decode_step.sh, carrying the pio binary.
# Writes $OUT/ncu-step-<model>-<context>.csv (raw) and .md (the summary).
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
CONTEXT=${CONTEXT:-128}
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
export PIO_CACHE_DIR=/tmp/pio-kernel-cache
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
status=0
for m in $MODELS; do
    base="$OUT/ncu-step-$m-$CONTEXT"
    # The graph-replayed step, for the comparison.
    $PIO bench --spec "$m" --device cuda --weights random --prompt-len 128 --context "$CONTEXT" \
        --gen 64 --repeats 3 > "$base.bench.md" 2> "$base.bench.log" || status=1
    tail -4 "$base.bench.md"
    layers=$(grep -E '^ *num_layers:' "model-specs/$m.yaml" | awk '{print $2}')
    count=$(( (6 * layers + 8) * 4 + 400 ))
    PIO_NO_CUDA_GRAPH=1 PIO_NO_PDL=1 "$NCU" --clock-control none --launch-count "$count" \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        --csv --page raw --print-units base \
        $PIO bench --spec "$m" --device cuda --weights random --prompt-len 128 --context "$CONTEXT" \
        --gen 4 --repeats 1 --warmup 0 > "$base.csv" 2> "$base.log" || status=1
    python3 - "$base.csv" "$base.bench.md" > "$base.md" <<'EOF' || status=1
import csv, re, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
at = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
col = {name: i for i, name in enumerate(rows[at])}
kernels = []
for r in rows[at + 1:]:
    try:
        kernels.append((r[col["Kernel Name"]], float(r[col["gpu__time_duration.sum"]]),
                        float(r[col["dram__bytes_read.sum"]]), float(r[col["dram__bytes_write.sum"]])))
    except (ValueError, KeyError):
        pass
# A decode step starts at an embed kernel; take the last whole step (the next embed follows it).
starts = [i for i, k in enumerate(kernels) if k[0].startswith("embed")]
if len(starts) < 3:
    sys.exit(f"found {len(starts)} steps in {len(kernels)} kernels")
step = kernels[starts[-2]:starts[-1]]
fam = collections.OrderedDict()
for name, ns, rd, wr in step:
    f = re.sub(r"_[0-9a-f]{12}$", "", name)
    key = (f, name)
    a = fam.setdefault(key, [0, 0.0, 0.0])
    a[0] += 1; a[1] += ns; a[2] += rd + wr
total_ns = sum(k[1] for k in step)
total_b = sum(k[2] + k[3] for k in step)
print(f"# One decode step, {len(step)} kernels, each timed alone (ncu)\n")
print(f"sum of kernel times: {total_ns/1e3:.1f} us; DRAM bytes {total_b/1e6:.1f} MB "
      f"({total_b/total_ns:.0f} GB/s over the kernels' own time)\n")
print("| kernel | launches | us (sum) | us each | share | GB/s |\n|---|---:|---:|---:|---:|---:|")
for (f, name), (n, ns, b) in sorted(fam.items(), key=lambda kv: -kv[1][1]):
    print(f"| {name} | {n} | {ns/1e3:.1f} | {ns/n/1e3:.2f} | {100*ns/total_ns:.1f}% | {b/ns:.0f} |")
print("\n`pio bench` (CUDA graph, PDL):\n")
print(open(sys.argv[2]).read())
EOF
    cat "$base.md"
done
echo "=== done: status $status"
exit $status
