# Fraction of each block's weight parameters removed, per layer, one line per run coloured by
# strategy (runs of one strategy differ in point type): achieved (solid) and, for runs of the cce
# strategy, planned (dashed, open circles). The paper's middle-layer figure: CCE's budget is expected to remove
# more from the middle layers, but the data decides.
# Data (cce plot / exp:figure): one block; a row of column names (layer, then per run its label
# and "<label> planned"); one row per layer: layer=1, then run j's achieved fraction in column
# 2j and planned fraction in column 2j+1 (NaN: unknown, or the run left the layer alone).
# Variables set by cce: nruns, blocks (strategy of each run), shades (the k-th run of its
# strategy), planned_runs (1-based indices of the runs with a plan), nplanned, nlayers.
load "style.gp"
if (!exists("planned_runs")) planned_runs = ""

set xrange [-0.3:nlayers - 0.7]
set xtics 1
set yrange [0:*]
set xlabel "layer"
set ylabel "fraction of the block's parameters removed"
set key outside below center horizontal samplen 2.5 maxrows 4
set title caption_wrap(caption)
run_pt(j) = spt(word(blocks, j)) + 2 * int(word(shades, j))

do for [fmt in formats] {
    eval term_cmd(fmt, 1.0 + 0.06 * int(nruns / 2))
    set output out_name(fmt)
    if (nplanned > 0) {
        plot for [j=1:nruns] datafile using 1:(column(2 * j)) with linespoints lw 1.6 \
             pt run_pt(j) ps 0.8 lc rgb scolor(word(blocks, j)) title columnheader(2 * j), \
             for [w in planned_runs] datafile using 1:(column(2 * int(w) + 1)) with linespoints \
             lw 1.1 dt 2 pt 6 ps 1.3 lc rgb scolor(word(blocks, int(w))) title columnheader(2 * int(w) + 1)
    } else {
        plot for [j=1:nruns] datafile using 1:(column(2 * j)) with linespoints lw 1.6 \
             pt run_pt(j) ps 0.8 lc rgb scolor(word(blocks, j)) title columnheader(2 * j)
    }
    unset output
}
