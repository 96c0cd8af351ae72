# Activation statistics per layer against the dense model on the same tokens: cosine similarity,
# relative L2 error and the shift of excess kurtosis (run minus dense reference); one panel row per
# statistic, one panel column per domain, one line per run coloured by strategy.
# Data (cce plot / exp:figure): block (d-1)*nruns + (j-1) holds domain d, run j: a row of column
# names (layer, the run's label, rel_l2, kurt_shift), then per layer: layer=1, cosine=2,
# rel_l2=3, kurt_shift=4.
# Variables set by cce: nruns, nseries (= nruns), blocks (strategy of each run), ndomains,
# domains, site, nlayers.
load "style.gp"

stat_label(m) = m == 1 ? "cosine to dense" : m == 2 ? "rel. L2 error" : "excess kurtosis shift"
set xrange [-0.3:nlayers - 0.7]
set xtics 1
fig_h = 1.9
cap_h = 0.085 / fig_h
key_h = 0.13 / fig_h

do for [fmt in formats] {
    eval term_cmd(fmt, fig_h)
    set output out_name(fmt)
    set multiplot title caption_wrap(caption)
    do for [m=1:3] {
        do for [d=1:ndomains] {
            eval panel_cmd(d, ndomains, m, 3)
            if (m == 1) { set title sprintf("%s (%s)", word(domains, d), site) } else { unset title }
            if (m == 3) { set xlabel "layer" } else { unset xlabel }
            if (d == 1) { set ylabel stat_label(m) } else { unset ylabel }
            unset key
            plot for [j=1:nruns] datafile index ((d - 1) * nruns + j - 1) using 1:(column(m + 1)) \
                 with linespoints lw 1.2 pt spt(word(blocks, j)) ps 0.6 lc rgb scolor(word(blocks, j)) notitle
        }
    }
    eval key_cmd
    unset title; unset xlabel; unset ylabel; unset border; unset tics; unset grid
    set xrange [0:1]; set yrange [0:1]
    set key center center horizontal samplen 2 maxrows 3
    plot for [j=1:nruns] datafile index (j - 1) using (-1):(-1) with linespoints lw 1.2 \
         pt spt(word(blocks, j)) ps 0.6 lc rgb scolor(word(blocks, j)) title columnheader(2)
    unset multiplot
    set border 3; set tics; set grid; set autoscale y
    set xrange [-0.3:nlayers - 0.7]
    unset output
}
