# Perplexity against evaluation context length, with standard-error bars.
# Data: ppl_vs_ctx.tsv (columns from `cce eval --tsv`: ctx=3, ppl=8, ppl_stderr=9, top1=10).
# Rerun: gnuplot ppl_vs_ctx.gp   (writes ppl_vs_ctx.png and ppl_vs_ctx.pdf beside it)
# The caption line is passed in as `caption` (gnuplot -e "caption='...'") or left empty.
if (!exists("caption")) caption = ""
if (!exists("datafile")) datafile = "ppl_vs_ctx.tsv"
if (!exists("outbase")) outbase = "ppl_vs_ctx"

set datafile separator "\t"
set datafile commentschars "#"
set key autotitle columnhead
set key top right
set logscale x 2
set xlabel "evaluation context (tokens, including BOS)"
set ylabel "perplexity"
set y2label "top-1 accuracy (%)"
set ytics nomirror
set y2tics
set grid ytics
set title caption font ",9"

do for [fmt in "png pdf"] {
    if (fmt eq "png") { set terminal pngcairo size 800,560 font "DejaVu Sans,11" }
    if (fmt eq "pdf") { set terminal pdfcairo size 3.4in,2.4in font "DejaVu Sans,7" }
    set output outbase.".".fmt
    plot datafile using 3:8:9 with yerrorlines lw 2 pt 7 title "perplexity ± stderr", \
         ""       using 3:($10*100) axes x1y2 with linespoints lw 2 pt 5 dt 2 title "top-1 accuracy"
    unset output
}
