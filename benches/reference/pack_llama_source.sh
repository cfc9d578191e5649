#!/usr/bin/env bash
# Packs llama.cpp's C++ source for the GPU machine (which can fetch nothing): the
# llama-cpp-python sdist from PyPI, its vendor/llama.cpp pruned to what the CUDA build of
# llama-batched-bench, llama-bench and llama-server needs (../shared/GPU.md, "llama.cpp as a
# side-by-side reference"), as an xz tarball (a few MB) in an ignored folder of the checkout,
# to carry. Only this script is kept in the repo, never llama.cpp's source.
#   bash benches/reference/pack_llama_source.sh [.carry/llama.tar.xz]
# Then: LLAMA_TAR=.carry/llama.tar.xz in llama_batched_bench.sh and serve_vs_llama.sh.
set -euo pipefail
OUT=${1:-.carry/llama.tar.xz}
VERSION=${LLAMA_CPP_PYTHON:-0.3.36}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip install --quiet scikit-build-core cmake  # pip reads the sdist's metadata with them
python3 -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "llama-cpp-python==$VERSION" -d "$work"
tar xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -f "$src/CMakeLists.txt" ] || { echo "no llama.cpp source in the sdist at $src"; exit 1; }
# Models, docs, tests, examples and the other backends are not built; tools/ui's CMake files
# are (llama-server's CMake reads them), its assets are not.
rm -rf "$src"/{models,docs,tests,benches,examples,media,pocs}
find "$src/tools/ui" -mindepth 1 -maxdepth 1 ! -name CMakeLists.txt ! -name sources.cmake \
    ! -name 'ui.*.in' ! -name scripts -exec rm -rf {} + 2>/dev/null || true
for b in "$src"/ggml/src/ggml-*/; do
    case $(basename "$b") in ggml-cpu | ggml-cuda | ggml-blas) ;; *) rm -rf "$b" ;; esac
done
mkdir -p "$(dirname "$OUT")"
mv "$src" "$work/llama.cpp"
cp "$work/llama_cpp_python-$VERSION/PKG-INFO" "$work/llama.cpp/LLAMA_CPP_PYTHON_PKG_INFO"
tar cJf "$OUT" -C "$work" llama.cpp
echo "wrote $OUT ($(du -h "$OUT" | cut -f1)), llama.cpp of llama-cpp-python $VERSION"
