#!/usr/bin/env bash
# Baselines on stories260K: every built-in strategy family at one setting, evaluated against the
# dense model on the same windows (the first 195 windows of TinyStories at ctx 512, inside the
# evaluation split that calibration never touches). Writes baselines.tsv (commented header).
#   CCE=path/to/cce CCE_MIRROR=../shared bash experiments/baselines.sh OUT_DIR
# (`cmake --build build --target baselines` runs it with both set.)
set -euo pipefail
out=${1:-baselines}
cce=${CCE:-cce}
mkdir -p "$out"
base="$out/stories260K.h5"
if [ ! -f "$base" ]; then
    "$cce" import llama2c "$("$cce" data path stories260K)" "$("$cce" data path tok512)" -o "$base"
fi

eval_args=(--data tinystories_val --ctx 512 --max-tokens 100000)
calib_args=(--calib tinystories_val --calib-tokens 16384 --calib-window 256 --seed 1)

variants=(
    "rtn8|rtn:bits=8"
    "rtn4_g64|rtn:bits=4,group=64"
    "gptq4_g64|gptq:bits=4,group=64"
    "rtn3_g64|rtn:bits=3,group=64"
    "gptq3_g64|gptq:bits=3,group=64"
    "magnitude50|magnitude:ratio=0.5"
    "wanda50|wanda:ratio=0.5"
    "wanda50_owl|wanda:ratio=0.5,alloc=owl"
    "sparsegpt50|sparsegpt:ratio=0.5"
    "magnitude_2of4|magnitude:nm=2:4"
    "wanda_2of4|wanda:nm=2:4"
    "sparsegpt_2of4|sparsegpt:nm=2:4"
    "wanda50_rtn8|wanda:ratio=0.5 rtn:bits=8"
    "structured20|structured:ratio=0.2"
    "shortgpt1|shortgpt:layers=1"
    "lowrank_svd20|lowrank:ratio=0.2,method=svd"
    "lowrank_whitened20|lowrank:ratio=0.2,method=whitened"
)

# ppl, ppl_stderr, mean_nll, top1, kl_mean, top1_agree of MODEL against the dense base, from the
# `cce eval --tsv` row (columns 8, 9, 6, 10, 12, 13).
metrics() {
    "$cce" eval "$1" "${eval_args[@]}" --ref "$base" --tsv | tail -n 1 |
        awk -F'\t' '{print $8"\t"$9"\t"$6"\t"$10"\t"$12"\t"$13}'
}

tsv="$out/baselines.tsv"
tmp="$tsv.tmp.$$"
{
    echo "# baselines: stories260K, every strategy family, evaluated against the dense model"
    echo "# calibration: ${calib_args[*]} (segments drawn after the first 100000 tokens)"
    "$cce" eval "$base" "${eval_args[@]}" --ref "$base" --tsv | grep '^# protocol' || true
    printf 'variant\tstrategies\tfile_bytes\tppl\tppl_stderr\tmean_nll\ttop1\tkl_mean\ttop1_agree\n'
    printf 'dense\t-\t%s\t%s\n' "$(stat -c %s "$base")" "$(metrics "$base")"
    for v in "${variants[@]}"; do
        name=${v%%|*}
        specs=${v#*|}
        sargs=()
        for s in $specs; do sargs+=(-s "$s"); done
        "$cce" compress "$base" "${sargs[@]}" "${calib_args[@]}" -o "$out/$name.h5" > "$out/$name.report.txt"
        printf '%s\t%s\t%s\t%s\n' "$name" "$specs" "$(stat -c %s "$out/$name.h5")" \
            "$(metrics "$out/$name.h5")"
    done
} > "$tmp"
mv "$tmp" "$tsv"
grep -v '^#' "$tsv" | awk -F'\t' '{printf "%-20s %-32s %10s %10s %9s %7s %9s\n", $1, $2, $3, $4, $6, $7, $8}'
echo "== written: $tsv (per-variant compress reports: $out/*.report.txt)"
