# Perplexity against compression, one line per strategy, with standard-error bars.
# Data (cce plot / exp:figure): one block per strategy (gnuplot `index i` is strategy i, the
# blocks separated by two blank lines), each beginning with a row of column names whose first
# field is the strategy; columns strategy=1, byte_ratio=2, ppl=3, ppl_stderr=4, kl=5,
# kl_stderr=6, bits_per_weight=7, top1=8, run=9, label=10, dnll_vs_dense_sig=11.
# byte_ratio = 1 - encoded bytes / float32 bytes of the block weights (DESIGN 5), so pruning and
# quantization share the x axis; the dense model sits at 0.
# Variables set by cce: nblocks, blocks (the strategies in block order), logy (1 when the values
# span more than a decade), nsame (compressed runs whose paired-bootstrap ΔNLL against the dense
# run is not significant, column 11 = 0: listed again in a last block, index nblocks, with
# columns label, byte_ratio, ppl, kl, run, and drawn with a ring). Optional: xaxis, the meaning
# of column 2 when a script draws its own data: "bytes" (the default above), "params" (the
# fraction of block weight parameters removed) or any other word, which becomes the label.
load "style.gp"
if (!exists("nblocks")) { stats datafile using 2 nooutput; nblocks = STATS_blocks }
if (!exists("blocks")) blocks = ""
if (!exists("logy")) logy = 1
if (!exists("nsame")) nsame = 0
if (!exists("xaxis")) xaxis = "bytes"

set xlabel (xaxis eq "bytes" ? "compression: 1 - encoded bytes / float32 bytes (block weights)" : \
            xaxis eq "params" ? "fraction of block weight parameters removed (achieved)" : xaxis)
if (logy) { set logscale y; set ylabel "perplexity (log scale)" } else { set ylabel "perplexity" }
set xrange [-0.03:*]
set key outside below center horizontal samplen 2
set title caption_wrap(caption)

do for [fmt in formats] {
    eval term_cmd(fmt, 1.0)
    set output out_name(fmt)
    if (nsame > 0) {
        plot for [i=0:nblocks-1] datafile index i using 2:3:4 with yerrorlines lw 1.5 \
             pt spt(word(blocks, i + 1)) ps 0.8 lc rgb scolor(word(blocks, i + 1)) title columnheader(1), \
             datafile index nblocks using 2:3 with points pt 6 ps 2 lw 1.2 lc rgb "#404040" \
             title "ΔNLL vs dense not significant"
    } else {
        plot for [i=0:nblocks-1] datafile index i using 2:3:4 with yerrorlines lw 1.5 \
             pt spt(word(blocks, i + 1)) ps 0.8 lc rgb scolor(word(blocks, i + 1)) title columnheader(1)
    }
    unset output
}
