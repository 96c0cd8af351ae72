#!/usr/bin/env bash
# Quickstart: import the default model (stories260K) from the mirror into a cce-model HDF5 file,
# generate text from it, and measure its perplexity on TinyStories under the pinned protocol.
#   CCE=path/to/cce CCE_MIRROR=../shared bash experiments/quickstart.sh OUT_DIR
# (`cmake --build build --target quickstart` runs it with both set.)
set -euo pipefail
out=${1:-quickstart}
cce=${CCE:-cce}
mkdir -p "$out"

echo "== 1. datasets: verify the mirror ($CCE_MIRROR) against datasets/manifest.json"
"$cce" data verify stories260K tok512 tinystories_val

model_bin=$("$cce" data path stories260K)
tok_bin=$("$cce" data path tok512)

echo "== 2. import stories260K -> $out/stories260K.h5"
"$cce" import llama2c "$model_bin" "$tok_bin" -o "$out/stories260K.h5"
"$cce" info "$out/stories260K.h5" | head -n 20

echo "== 3. generate (greedy)"
"$cce" generate "$out/stories260K.h5" -p "Once upon a time" -n 120 -t 0

echo "== 4. evaluate on tinystories_val (ctx 512, the whole text)"
"$cce" eval "$out/stories260K.h5" --data tinystories_val --ctx 512 | tee "$out/eval.txt"

echo "== done: outputs in $out"
