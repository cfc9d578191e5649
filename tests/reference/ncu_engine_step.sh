#!/usr/bin/env bash
# Where the batching engine's step time goes: Nsight Compute times every kernel of chosen paged
# calls of a `pio bench --mode throughput` run on its own (eager launches, no CUDA graph, no
# PDL, clocks left alone, caches flushed before each kernel as ncu does by default), so a
# kernel's figure is its own time with cold caches, free of the launch gaps that PIO_PROFILE's
# events add. The calls are picked with PIO_PROFILER_CALLS (cuProfilerStart/Stop around them,
# ncu --profile-from-start off): loading, GEMM tuning and the warm-up are not profiled.
#   MODELS (default qwen3-0.6b), PIO (default target/release/pio), REQUESTS (128), PROMPT
#   (512), GEN (96), CALLS (default "40-41,95-96": the warm-up makes calls 0 and 1; while
#   prompts are prefilled a step makes a decode call and a chunk call; then one decode call
#   per step; stderr names each profiled call; with GEN 48 on 2026-12-07 calls 95-96 were
#   decodes of 77 and 73 sequences, some having finished: GEN 96 keeps all 128 there).
# Device call: OUT=$OUT bash tests/reference/ncu_engine_step.sh, carrying the pio binary.
# Writes $OUT/ncu-engine-<model>.csv (raw) and .md (a table per profiled call); prints the
# calls' totals.
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
mkdir -p "$OUT"
PIO=${PIO:-target/release/pio}
MODELS=${MODELS:-qwen3-0.6b}
export PIO_CACHE_DIR=${PIO_CACHE_DIR:-/tmp/pio-kernel-cache}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
status=0
for m in $MODELS; do
    base="$OUT/ncu-engine-$m"
    PIO_PROFILER_CALLS=${CALLS:-40-41,95-96} PIO_NO_CUDA_GRAPH=1 PIO_NO_PDL=1 \
        "$NCU" --profile-from-start off --clock-control none \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        --csv --page raw --print-units base \
        "$PIO" bench --mode throughput --spec "$m" --requests "${REQUESTS:-128}" \
        --prompt-len "${PROMPT:-512}" --gen "${GEN:-96}" > "$base.csv" 2> "$base.log" \
        || { status=1; tail -5 "$base.log"; }
    grep "^profiler range" "$base.log"
    python3 - "$base.csv" "$m" > "$base.md" <<'EOF2' || { status=1; head -c 1500 "$base.csv"; }
import csv, re, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
at = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
col = {name: i for i, name in enumerate(rows[at])}
grid = col.get("Grid Size")
num = lambda x: float(x.replace(",", ""))
kernels = []
for r in rows[at + 1:]:
    try:
        kernels.append((r[col["Kernel Name"]], num(r[col["gpu__time_duration.sum"]]),
                        num(r[col["dram__bytes_read.sum"]]) + num(r[col["dram__bytes_write.sum"]]),
                        r[grid] if grid is not None else ""))
    except (ValueError, KeyError):
        pass
# A paged call starts at its embed kernel; its kind is the attention kernel in it.
starts = [i for i, k in enumerate(kernels) if k[0].startswith("embed")] + [len(kernels)]
print(f"## {sys.argv[2]}: {len(kernels)} kernels in {len(starts) - 1} calls")
for a, b in zip(starts, starts[1:]):
    call = kernels[a:b]
    names = " ".join(k[0] for k in call)
    kind = "decode" if "attention_paged" in names else "chunk" if "attention_mma" in names else "other"
    total = sum(k[1] for k in call)
    by_bytes = sum(k[2] for k in call)
    fam = collections.OrderedDict()
    for name, ns, by, g in call:
        key = (re.sub(r"_[0-9a-f]{12}$", "", name)[:64], g)
        e = fam.setdefault(key, [0, 0.0, 0.0])
        e[0] += 1; e[1] += ns; e[2] += by
    print(f"\n### {kind} call: {len(call)} kernels, {total/1e3:.1f} us of kernel time, "
          f"{by_bytes/1e6:.1f} MB of DRAM traffic\n")
    print("| kernel | grid | launches | us each | us (sum) | share | GB/s |\n|---|---|---:|---:|---:|---:|---:|")
    for (name, g), (n, ns, by) in sorted(fam.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {g} | {n} | {ns/n/1e3:.2f} | {ns/1e3:.1f} | {100*ns/total:.1f}% | {by/ns:.0f} |")
EOF2
    # The calls' totals here; each call's table is in $base.md.
    grep -E "^##" "$base.md"
done
echo "=== done: status $status"
exit $status
