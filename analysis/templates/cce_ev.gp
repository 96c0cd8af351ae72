# Explained-variance curves of one cce run, one curve per layer (dark: first layer, light: last):
# the cumulative share of a covariance's trace in its k largest eigenvalues against k / n. Left:
# C_a, the covariance of the FFN activation (the input of down_proj, n = hidden_dim); right: C_y,
# the covariance of the attention output (n = dim). A curve that rises fast means a redundant
# layer (R = 1 - r / n, r the rank reaching 1 - eps, the dotted line).
# Data (cce plot / exp:figure): block i (i = 0..ncurves-1) holds layer word(layers, i + 1) of C_a,
# block ncurves + i the same layer of C_y; each starts with a row of column names (frac,
# "layer L"), then frac=1 (k / n, from 0), share=2.
# Variables set by cce: ncurves, nattn (0: no C_y curves), layers, eps (-1: unknown), runlabel.
load "style.gp"

set datafile columnheaders   # the first row of each block names the columns
set palette defined (0 "#440154", 0.25 "#3b528b", 0.5 "#21918c", 0.75 "#5ec962", 1 "#d8b600")
unset colorbox
lfrac(i) = ncurves > 1 ? (i - 1.0) / (ncurves - 1.0) : 0
set xrange [0:1]
set yrange [0:1.02]
set xtics 0.2
set ytics 0.2
set xlabel "fraction of components k / n"
npan = nattn > 0 ? 2 : 1
fig_h = 1.15
cap_h = 0.15 / fig_h
key_h = 0.14 / fig_h

do for [fmt in formats] {
    eval term_cmd(fmt, fig_h)
    set output out_name(fmt)
    set multiplot title caption_wrap(caption) . "\nrun " . runlabel
    do for [p=1:npan] {
        eval panel_cmd(p, npan, 1, 1)
        set title (p == 1 ? "FFN activation C_a" : "attention output C_y")
        if (p == 1) { set ylabel "cumulative share of variance" } else { unset ylabel }
        unset key
        if (eps > 0) { set arrow 1 from 0, 1 - eps to 1, 1 - eps nohead dt 3 lc rgb "#808080" } else { unset arrow 1 }
        plot for [i=1:ncurves] datafile index ((p - 1) * ncurves + i - 1) using 1:2 \
             with lines lw 1.4 lc palette frac lfrac(i) notitle
    }
    eval key_cmd
    unset title; unset xlabel; unset ylabel; unset border; unset tics; unset grid; unset arrow 1
    set xrange [0:1]; set yrange [0:1]
    set key center center horizontal samplen 2 maxrows 2
    plot for [i=1:ncurves] datafile index (i - 1) using (-1):(-1) with lines lw 1.4 \
         lc palette frac lfrac(i) title columnheader(2)
    unset multiplot
    set border 3; set tics; set grid
    set xrange [0:1]; set yrange [0:1.02]; set xtics 0.2; set ytics 0.2
    set xlabel "fraction of components k / n"
    unset output
}
