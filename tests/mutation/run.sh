#!/usr/bin/env bash
# Mutation testing (issue 19) with cargo-mutants: plants one bug at a time in the code that
# decides correctness (the CPU executor's kernels, the fusion rules, the memory planner, the
# sampler, the spec resolver and its bounds) and checks that some test fails. Results and the
# score per file are kept in tests/mutation/RESULTS.md.
#
#   bash tests/mutation/run.sh                      # every file below (hours on 2 cores)
#   bash tests/mutation/run.sh compiler/src/memory.rs   # one file (minutes)
#
# Runs in place (the tree must be clean: cargo-mutants restores each file after its mutant) and
# writes its report under target/mutants/ (mutants.out/outcomes.json, missed.txt, caught.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "the work tree has changes: commit or stash them first (mutants are made in place)"; exit 1
fi
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
    FILES=(
        compiler/src/memory.rs
        compiler/src/fusion/pattern.rs
        compiler/src/fusion/rules.rs
        runtime/src/sampling.rs
        compiler/src/spec/expr.rs
        compiler/src/spec/bounds.rs
        compiler/src/interp/kernels.rs
    )
fi
args=()
for f in "${FILES[@]}"; do args+=(--file "$f"); done
mkdir -p target
cargo mutants --in-place --workspace --timeout 180 \
    --output target/mutants "${args[@]}"
