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
"$cce" info "$out/stories260K.h5" > "$out/info.txt"
sed -n 1,16p "$out/info.txt"

echo "== 3. generate (greedy)"
"$cce" generate "$out/stories260K.h5" -p "Once upon a time" -n 120 -t 0

echo "== 4. evaluate on tinystories_val (ctx 512, the whole text)"
"$cce" eval "$out/stories260K.h5" --data tinystories_val --ctx 512 | tee "$out/eval.txt"

echo "== 5. perplexity against context length -> $out/ppl_vs_ctx.{tsv,gp,png,pdf}"
src=$(cd "$(dirname "$0")/.." && pwd)
tsv="$out/ppl_vs_ctx.tsv"
rows="$tsv.rows.$$"
: > "$rows"
{
    echo "# figure ppl_vs_ctx: perplexity and top-1 accuracy of stories260K against context length"
    for ctx in 32 64 128 256 512; do
        "$cce" eval "$out/stories260K.h5" --data tinystories_val --ctx "$ctx" --tsv > "$rows.one"
        grep '^#' "$rows.one" | grep protocol
        grep -v -e '^#' "$rows.one" | tail -n 1 >> "$rows"
        header=$(grep -v -e '^#' "$rows.one" | head -n 1)
    done
    echo "$header"
    cat "$rows"
} > "$tsv.tmp.$$"
rm -f "$rows" "$rows.one"
mv "$tsv.tmp.$$" "$tsv"
cp "$src/analysis/templates/ppl_vs_ctx.gp" "$out/ppl_vs_ctx.gp"
(cd "$out" && gnuplot -e "caption='stories260K, tinystories\\_val (whole text), windows of BOS + ctx-1 tokens, non-overlapping'" ppl_vs_ctx.gp)
cut -f 3,5,8,9,10 "$tsv" | grep -v '^#'

echo "== done: outputs in $out"
