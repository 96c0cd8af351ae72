# One cce run's budget per layer: the planned and achieved fraction of the block's weight
# parameters removed (bars), against the layer redundancy R_l, the normalised block influence
# BI_l / max BI and the budget score u_l = alpha R_l + (1 - alpha)(1 - BI_l / max BI) (lines), all
# on one [0, 1] axis. A layer with a high u (redundant, little influence) gets more than the
# global target, a layer with a low u less.
# Data (cce plot / exp:figure): one block; a row of column names, then per layer: layer=1,
# rho_planned=2, rho_achieved=3, R=4, R_ffn=5, R_attn=6, BI_norm=7, u=8, BI=9.
# Variables set by cce: nlayers, runlabel.
load "style.gp"

set datafile columnheaders   # the first row of each block names the columns
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border lc rgb "#404040"
set boxwidth 0.9
set xrange [-0.6:nlayers - 0.4]
set yrange [0:1.05]
set ytics 0.2
set xlabel "layer"
set ylabel "fraction / normalised score"
set key outside below center horizontal samplen 2 maxrows 2
set title caption_wrap(caption) . "\nrun " . runlabel
set grid noxtics ytics

do for [fmt in formats] {
    eval term_cmd(fmt, 1.1)
    set output out_name(fmt)
    plot datafile using 2:xtic(1) title "rho planned" lc rgb "#f4a582", \
         datafile using 3 title "rho achieved" lc rgb "#a50026", \
         datafile using 0:4 with linespoints lw 1.6 pt 7 ps 0.7 lc rgb "#0072b2" title "R (redundancy)", \
         datafile using 0:7 with linespoints lw 1.6 pt 5 ps 0.7 lc rgb "#009e73" title "BI / max BI", \
         datafile using 0:8 with linespoints lw 1.3 dt 2 pt 9 ps 0.7 lc rgb "#404040" title "u (budget score)"
    unset output
}
