# Weight distributions per chosen layer, before (the dense weights) and after compression, one
# panel per layer, as densities on a log scale (each layer's tensors pooled on one grid: see figure.h).
# Data (cce plot / exp:figure): one block per layer (index p-1 for panel p); a row of column
# names (layer_L, "before (dense)", then the runs); columns x=1 (bin centre), then one
# density per series.
# Variables set by cce: npanels, panels (the layers), nseries, blocks (strategy of each series),
# xunit (the x axis).
load "style.gp"

set logscale y
set format y "%.0e"
set ylabel "density"
set key center center horizontal samplen 2 maxrows 3
fig_h = 0.55 + 0.65 * npanels
cap_h = 0.085 / fig_h
key_h = 0.2 / fig_h

do for [fmt in formats] {
    eval term_cmd(fmt, fig_h)
    set output out_name(fmt)
    set multiplot title caption_wrap(caption)
    do for [p=1:npanels] {
        eval panel_cmd(1, 1, p, npanels)
        set title sprintf("layer %s", word(panels, p)) offset 0,-0.2
        if (p == npanels) { set xlabel xunit } else { unset xlabel }
        unset key
        plot for [j=1:nseries] datafile index (p - 1) using 1:(column(j + 1)) with steps \
             lw (word(blocks, j) eq "dense" ? 2.2 : 1.2) lc rgb scolor(word(blocks, j)) notitle
    }
    # the legend, in its own strip below the panels
    eval key_cmd
    unset title; unset xlabel; unset ylabel; unset border; unset tics; unset grid
    unset logscale y
    set xrange [0:1]; set yrange [0:1]
    set key center center horizontal
    plot for [j=1:nseries] datafile index 0 using (-1):(-1) with lines \
         lw (word(blocks, j) eq "dense" ? 2.2 : 1.2) lc rgb scolor(word(blocks, j)) title columnheader(j + 1)
    unset multiplot
    set border 3; set tics; set grid; set logscale y; set autoscale xy
    unset output
}
