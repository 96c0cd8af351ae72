# Perplexity against compression, one line per strategy, with standard-error bars.
# Data: ppl_vs_ratio.tsv as exp:figure("ppl_vs_ratio") writes it (lua/README.md, "Experiments"):
# one block per strategy (blocks separated by two blank lines, so `index i` is strategy i), each
# beginning with a row of column names whose first field is the strategy's name; columns
# strategy=1, byte_ratio=2, ppl=3, ppl_stderr=4, kl=5, kl_stderr=6, bits_per_weight=7, top1=8.
# byte_ratio = 1 - encoded bytes / float32 bytes of the block weights (DESIGN 5), so pruning and
# quantization share the x axis; the dense model sits at 0.
# Rerun: gnuplot ppl_vs_ratio.gp   (writes ppl_vs_ratio.png and ppl_vs_ratio.pdf beside it)
# The caption line is passed in as `caption` (gnuplot -e "caption='...'") or left empty.
if (!exists("caption")) caption = ""
if (!exists("datafile")) datafile = "ppl_vs_ratio.tsv"
if (!exists("outbase")) outbase = "ppl_vs_ratio"

set datafile separator "\t"
set datafile commentschars "#"
set datafile missing "NaN"
stats datafile using 2 nooutput
nblocks = STATS_blocks

set key top left noenhanced
set logscale y
set xrange [-0.02:1]
set xlabel "compression: 1 - encoded bytes / float32 bytes of the block weights"
set ylabel "perplexity (log scale)"
set grid xtics ytics mytics
set title caption font ",9" noenhanced

do for [fmt in "png pdf"] {
    if (fmt eq "png") { set terminal pngcairo size 800,560 font "DejaVu Sans,11" }
    if (fmt eq "pdf") { set terminal pdfcairo size 3.4in,2.6in font "DejaVu Sans,7" }
    set output outbase.".".fmt
    plot for [i=0:nblocks-1] datafile index i using 2:3:4 with yerrorlines lw 2 pt 7 ps 0.8 \
         title columnheader(1)
    unset output
}
