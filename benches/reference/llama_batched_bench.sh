#!/usr/bin/env bash
# Issue 15's llama.cpp reference on the GPU machine: `llama-batched-bench` on the same card and
# the same random weights as `pio bench --mode throughput` (the directory `pio init-weights`
# writes, seed 0, converted to a bf16 GGUF), N sequences of P random prompt tokens and G
# generated tokens each, flash attention, every layer on the GPU; optionally pio's own
# throughput run in the same call (PIO_TOO=1). Each model's report:
# $OUT/llama-batched-<model>.json (benches/reference/llama_batched_bench.py's shape).
#
# llama.cpp's source comes from the llama-cpp-python sdist on PyPI, pruned and carried as a
# tarball (benches/reference/pack_llama_source.sh writes it; ../shared/GPU.md, "llama.cpp as a
# side-by-side reference"); only the scripts are kept in the repo. LLAMA_DIR points at an
# already built tree instead (its build/bin).
#   LLAMA_TAR=.carry/llama.tar.xz PIO=/tmp/b/pio OUT=$OUT bash benches/reference/llama_batched_bench.sh
# CPU check of the script (no GPU): CUDA=0 NGL=0 MODELS=qwen3-0.6b REQUESTS=1,2 P=16 G=8 ...
# The conversion needs python3 with torch, numpy and sentencepiece (imported even for the BPE
# tokenizers of Qwen and Llama).
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
PIO=${PIO:-target/release/pio}
MODELS=${MODELS:-qwen3-0.6b qwen3-4b-instruct-2507}
REQUESTS=${REQUESTS:-1,8,32,128,256}
P=${P:-512}
G=${G:-256}
CUDA=${CUDA:-1}
NGL=${NGL:-99}
LLAMA_TAR=${LLAMA_TAR:-.carry/llama.tar.xz}
LOGS=${LOGS:-/tmp/pio-llama-logs}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT" "$LOGS"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
device=$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo cpu) | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "device: $device ${driver:+(driver $driver)}"

if [ -z "${LLAMA_DIR:-}" ]; then
    [ -f "$LLAMA_TAR" ] || { echo "no llama.cpp: carry $LLAMA_TAR or set LLAMA_DIR"; exit 1; }
    mkdir -p /tmp/llama && tar xJf "$LLAMA_TAR" -C /tmp/llama
    LLAMA_DIR=/tmp/llama/llama.cpp
    stamp "building llama-batched-bench"
    arch=$([ "$CUDA" = 1 ] && echo "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90" || echo "-DGGML_CUDA=OFF")
    # shellcheck disable=SC2086 # $arch is two words
    (cd "$LLAMA_DIR" && cmake -B build $arch -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF \
        -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=OFF > "$LOGS/cmake.log" 2>&1 &&
        cmake --build build -j "$(nproc)" --target llama-batched-bench > "$LOGS/build.log" 2>&1) \
        || { echo "llama.cpp build failed:"; tail -20 "$LOGS/build.log" "$LOGS/cmake.log"; exit 1; }
fi
BENCH=$LLAMA_DIR/build/bin/llama-batched-bench
[ -x "$BENCH" ] || { echo "no $BENCH"; exit 1; }
# The sdist's version: pack_llama_source.sh keeps its PKG-INFO; an unpacked sdist has it two up.
version=$(cat "$LLAMA_DIR/LLAMA_CPP_PYTHON_PKG_INFO" "$LLAMA_DIR/../../PKG-INFO" 2>/dev/null |
    sed -n 's/^Version: //p' | head -1)
version=${version:+llama-cpp-python $version}
status=0
max_n=$(echo "$REQUESTS" | tr ',' '\n' | sort -n | tail -1)
for m in $MODELS; do
    W=/tmp/pio-weights-$m
    [ -f "$W/model.safetensors" ] || [ -f "$W/model.safetensors.index.json" ] ||
        "$PIO" init-weights "$m" -o "$W" --seed 0 > /dev/null || { status=1; continue; }
    stamp "$m: converting to a bf16 GGUF"
    PYTHONPATH=$LLAMA_DIR/gguf-py python3 "$LLAMA_DIR/convert_hf_to_gguf.py" "$W" --outtype bf16 \
        --outfile "/tmp/$m.gguf" > "$LOGS/convert-$m.log" 2>&1 \
        || { echo "conversion failed:"; tail -5 "$LOGS/convert-$m.log"; status=1; continue; }
    stamp "$m: llama-batched-bench N=$REQUESTS P=$P G=$G"
    # The KV cache holds every sequence of the largest batch (llama-batched-bench skips a batch
    # that does not fit, silently: the converter fails on an empty result).
    "$BENCH" -m "/tmp/$m.gguf" -c $((max_n * (P + G))) -b 2048 -ub 512 -npp "$P" -ntg "$G" \
        -npl "$REQUESTS" -fa on -ngl "$NGL" --output-format jsonl \
        > "$OUT/llama-batched-$m.jsonl" 2> "$LOGS/bench-$m.log" \
        || { echo "llama-batched-bench failed:"; tail -5 "$LOGS/bench-$m.log"; status=1; continue; }
    python3 "$HERE/llama_batched_bench.py" "$OUT/llama-batched-$m.jsonl" --model-name "$m" \
        --weights "$W" --device "$device" ${driver:+--driver "$driver"} \
        ${version:+--llama-version "$version"} --json "$OUT/llama-batched-$m.json" || status=1
    if [ -n "${PIO_TOO:-}" ]; then
        stamp "$m: pio bench --mode throughput, same weights"
        "$PIO" bench --mode throughput --spec "$m" --weights "$W" --requests "$REQUESTS" \
            --prompt-len "$P" --gen "$G" --json "$OUT/pio-throughput-$m.json" \
            > "$OUT/pio-throughput-$m.md" 2> "$LOGS/pio-$m.log" || status=1
        grep '^| [0-9]' "$OUT/pio-throughput-$m.md"
    fi
done
stamp "done: status $status"
exit $status
