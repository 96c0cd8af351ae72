# Perplexity against bits per weight, one line per strategy (± stderr), the Pareto front marked.
# Data (cce plot / exp:figure): one block per strategy as in ppl_vs_ratio.gp (bits_per_weight is
# column 7), then one more block, index nblocks: the Pareto front (columns Pareto_front=1,
# bits_per_weight=2, ppl=3, run=4): the runs no other run beats on both bits and perplexity.
# bits_per_weight = 8 * encoded bytes / weights of the block weights (32 for the dense model).
# Variables set by cce: nblocks, blocks, logy.
load "style.gp"
if (!exists("nblocks")) { stats datafile using 2 nooutput; nblocks = STATS_blocks }
if (!exists("blocks")) blocks = ""
if (!exists("logy")) logy = 1

set xlabel "bits per weight (encoded bytes x 8 / weights, log scale)"
set logscale x 2
set xtics (1, 2, 3, 4, 6, 8, 16, 32)
if (logy) { set logscale y; set ylabel "perplexity (log scale)" } else { set ylabel "perplexity" }
set key outside below center horizontal samplen 2
set title caption_wrap(caption)

do for [fmt in formats] {
    eval term_cmd(fmt, 1.0)
    set output out_name(fmt)
    plot datafile index nblocks using 2:3 with steps lw 3 lc rgb "#c8c8c8" title "Pareto front", \
         for [i=0:nblocks-1] datafile index i using 7:3:4 with yerrorlines lw 1.5 \
         pt spt(word(blocks, i + 1)) ps 0.8 lc rgb scolor(word(blocks, i + 1)) title columnheader(1), \
         datafile index nblocks using 2:3 with points pt 6 ps 1.6 lc rgb "#505050" notitle
    unset output
}
