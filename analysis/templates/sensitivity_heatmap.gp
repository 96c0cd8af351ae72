# Layer sensitivity heatmap: x = the one layer a run compressed, y = the run's strategy and target
# (ratio= or bits=), colour = the perplexity increase over the dense run of the same experiment
# (or the perplexity when there is no dense run); each cell is labelled with its value.
# Data (cce plot / exp:figure): one block; a row of column names, then one row per run:
# layer=1, y=2 (row index), ppl=3, dppl=4, target=5 (the y label), run=6.
# Variables set by cce: nx (layers), ny (rows), zcol (the colour column), zlabel, logz, zmin and
# zmax (the smallest positive and the largest colour value).
load "style.gp"

set xlabel "layer compressed (all other layers dense)"
set ylabel ""
set cblabel zlabel
set palette defined (0 "#fff5eb", 0.35 "#fdae6b", 0.7 "#e6550d", 1 "#7f2704")
if (logz) { set logscale cb; set cbtics (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) } 
set format cb "%g"
# cell labels white on the darker half of the palette
zmid = logz ? sqrt(zmin * zmax) : (zmin + zmax) / 2
set xtics 1
set xrange [-0.5:nx - 0.5]
set yrange [-0.5:ny - 0.5]
set style fill solid 1.0 noborder
set key autotitle columnhead
set grid noxtics noytics
set title caption_wrap(caption)
fmtz(z) = abs(z) >= 100 ? sprintf("%.0f", z) : abs(z) >= 10 ? sprintf("%.1f", z) : sprintf("%.2f", z)

do for [fmt in formats] {
    eval term_cmd(fmt, 0.7 + 0.12 * ny)
    set output out_name(fmt)
    plot datafile using 1:2:(0.5):(0.5):(column(zcol)):ytic(5) with boxxyerror fc palette notitle, \
         datafile using 1:2:(fmtz(column(zcol))):(column(zcol) > zmid ? 0xffffff : 0x000000) \
         with labels tc rgb variable notitle
    unset output
}
