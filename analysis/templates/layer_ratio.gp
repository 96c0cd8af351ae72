# Achieved compression per layer, grouped bars: one group per layer, one bar per run, coloured by
# strategy (runs of one strategy in lighter shades).
# Data (cce plot / exp:figure): one block; a row of column names (layer, then the runs' labels);
# one row per layer: layer=1, then per run 1 - encoded bytes after / float32 bytes before summed
# over the layer's compressed tensors (NaN: the run left the layer alone).
# Variables set by cce: nbars, blocks (strategy of each bar), shades (the k-th run of its
# strategy), nlayers.
load "style.gp"

set style data histograms
set style histogram clustered gap 1
set style fill solid 1.0 border lc rgb "#404040"
set boxwidth 0.9
set yrange [0:1.0]
set ytics 0.2
set xlabel "layer"
set ylabel "compression of the layer (1 - bytes after / before)"
set key outside below center horizontal samplen 1.5
set title caption_wrap(caption)
set grid noxtics ytics

do for [fmt in formats] {
    eval term_cmd(fmt, 1.0 + 0.06 * int(nbars / 3))
    set output out_name(fmt)
    plot for [i=1:nbars] datafile using (column(i + 1)):xtic(1) title columnheader(i + 1) \
         lc rgb scolor(word(blocks, i)) fs solid (1.0 - 0.28 * (int(word(shades, i)) % 3))
    unset output
}
