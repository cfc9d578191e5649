#!/usr/bin/env bash
# Issue 16's serving figures on the GPU machine: `pio serve` against llama.cpp's `llama-server`
# on the same card and the same random weights (bf16 GGUF converted from the directory
# `pio init-weights` writes), driven by benches/reference/load_gen.py: 1 stream and N concurrent
# streams of P-token prompts (token ids cut from this repo's docs) and G tokens each
# (ignore_eos), then `pio run`'s batch-1 decode speed for the 1-stream comparison.
#
# Carry .carry/pio (a release build) and .carry/llama.tar.xz (llama.cpp's source from the
# llama-cpp-python sdist, pruned as ../shared/GPU.md says, but keeping tools/ui's CMake files
# (CMakeLists.txt, sources.cmake, ui.*.in, scripts/): its CMake needs them; without the
# tarball only pio is measured).
# Reports (load_gen JSON) go to $OUT, logs to $LOGS; a summary table to stdout.
#   OUT=$OUT bash benches/reference/serve_vs_llama.sh
set -uo pipefail
OUT=${OUT:-/tmp/pio-out}
PIO=${PIO:-.carry/pio}
SPEC=${SPEC:-qwen3-4b-instruct-2507}
NAME=${NAME:-Qwen3-4B-Instruct-2507}
P=${P:-512}
G=${G:-256}
N=${N:-64}
REQUESTS=${REQUESTS:-128}
ONE=${ONE:-4}
LLAMA_TAR=${LLAMA_TAR:-.carry/llama.tar.xz}
W=/tmp/pio-weights-$SPEC
LOGS=${LOGS:-/tmp/pio-serve-logs}
mkdir -p "$OUT" "$LOGS"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
git log --oneline -1 2>/dev/null || true
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

if [ -f "$LLAMA_TAR" ]; then
    mkdir -p /tmp/llama && tar xJf "$LLAMA_TAR" -C /tmp/llama
    (cd /tmp/llama/llama.cpp && cmake -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        >"$LOGS/llama-cmake.log" 2>&1 &&
        cmake --build build -j 16 --target llama-server >"$LOGS/llama-build.log" 2>&1
     echo "build exit $?" >>"$LOGS/llama-build.log") &
    BUILD=$!
fi

stamp "init-weights"
$PIO init-weights "$SPEC" -o "$W" --seed 0 >/dev/null || exit 1
TOK="$W/tokenizer.json"

wait_health() { # url, seconds
    for _ in $(seq 1 "$2"); do curl -sf "$1/health" >/dev/null && return 0; sleep 1; done
    return 1
}
gen() { # label url concurrency requests
    python3 benches/reference/load_gen.py --url "$2" --model "$NAME" --concurrency "$3" \
        --requests "$4" --prompt-len "$P" --max-tokens "$G" --tokenizer "$TOK" \
        --out "$OUT/$1.json" >/dev/null 2>"$LOGS/$1.err"
    tail -1 "$LOGS/$1.err" | sed "s/^/$1: /"
}

stamp "pio serve"
$PIO serve --spec "$SPEC" --weights "$W" --device cuda --port 8100 --max-running "$N" \
    --max-concurrent 512 --max-context $((P + G + 64)) >"$LOGS/pio-serve.log" 2>&1 &
SERVE=$!
if wait_health http://127.0.0.1:8100 300; then
    gen pio-warmup http://127.0.0.1:8100 8 8
    gen pio-c1 http://127.0.0.1:8100 1 "$ONE"
    gen "pio-c$N" http://127.0.0.1:8100 "$N" "$REQUESTS"
else
    echo "pio serve did not become healthy"; tail -20 "$LOGS/pio-serve.log"
fi
kill -INT $SERVE; wait $SERVE

stamp "pio run"
$PIO run --spec "$SPEC" --weights "$W" --device cuda --max-new-tokens "$G" --ignore-eos \
    --max-context $((P + G + 64)) --prompt "$(head -c $((P * 4)) ARCHITECTURE.md)" 2>&1 \
    | grep -E "tokens/s" | tail -1 | tee "$LOGS/pio-run.txt"

if [ -n "${BUILD:-}" ]; then
    stamp "waiting for the llama.cpp build"
    wait $BUILD
    tail -1 "$LOGS/llama-build.log"; grep -m3 -iE "error" "$LOGS/llama-cmake.log" "$LOGS/llama-build.log"
    L=/tmp/llama/llama.cpp
    stamp "convert to GGUF"
    PYTHONPATH=$L/gguf-py python3 $L/convert_hf_to_gguf.py "$W" --outtype bf16 \
        --outfile /tmp/w.gguf >"$LOGS/convert.log" 2>&1 || tail -5 "$LOGS/convert.log"
    stamp "llama-server"
    $L/build/bin/llama-server -m /tmp/w.gguf -ngl 99 -fa on -np "$N" -c $((N * (P + G + 64))) \
        --host 127.0.0.1 --port 8200 >"$LOGS/llama-server.log" 2>&1 &
    LS=$!
    if wait_health http://127.0.0.1:8200 300; then
        gen llama-warmup http://127.0.0.1:8200 8 8
        gen llama-c1 http://127.0.0.1:8200 1 "$ONE"
        gen "llama-c$N" http://127.0.0.1:8200 "$N" "$REQUESTS"
    else
        echo "llama-server did not become healthy"; tail -20 "$LOGS/llama-server.log"
    fi
    kill $LS; wait $LS
fi
stamp "done"
python3 - "$OUT" "$N" <<'PY'
import json, sys, os
out, n = sys.argv[1], sys.argv[2]
print("| server | streams | output tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | stream decode tok/s p50 | ok |")
print("|---|---:|---:|---:|---:|---:|---:|")
for who in ("pio", "llama"):
    for c in ("1", n):
        f = os.path.join(out, f"{who}-c{c}.json")
        if not os.path.exists(f):
            continue
        r = json.load(open(f))
        d = r["stream_decode_tokens_per_s"]["p50"]
        print(f"| {who} | {c} | {r['output_tokens_per_s']} | {r['ttft_ms']['p50']} / {r['ttft_ms']['p99']} | "
              f"{r['itl_ms']['p50']} / {r['itl_ms']['p99']} | {d and round(d, 1)} | {r['completed']}/{r['requests']} |")
PY
