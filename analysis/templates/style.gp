# The style shared by every figure template (loaded by each; cce inlines it into the .gp it
# writes). One fixed colour and point type per strategy, so a strategy looks the same in every
# figure; a combination "a+b" takes the style of its first step; an unknown name gets grey.
# Terminals: PNG (pngcairo) for screens and docs, PDF (pdfcairo, 3.5 in wide: one column of a
# two-column paper), cairolatex (tex) on request. `formats` lists the ones to write.

style_names  = "dense magnitude wanda sparsegpt lowrank structured shortgpt rtn gptq cce flap cce_uniform cce_nofold cce_nolowrank whitened_svd"
#               unknown   dense     magnitude wanda     sparsegpt lowrank   structured shortgpt rtn       gptq      cce       flap      cce_uniform cce_nofold cce_nolowrank whitened_svd
style_colors = "#7f7f7f #000000 #0072b2 #e69f00 #009e73 #cc79a7 #56b4e9 #8c564b #d55e00 #6a3d9a #a50026 #b8860b #f46d43 #fdae61 #c51b7d #1b7837"
style_points = "3 7 5 9 11 13 15 4 6 8 10 12 1 2 14 12"

style_find(n, i) = i > words(style_names) ? 0 : (word(style_names, i) eq n ? i : style_find(n, i + 1))
style_key(n) = strstrt(n, "+") > 0 ? n[1:strstrt(n, "+") - 1] : n
style_idx(n) = style_find(style_key(n), 1)
scolor(n) = word(style_colors, style_idx(n) + 1)
spt(n) = int(word(style_points, style_idx(n) + 1))

# The terminal of format fmt for a figure h times the height of a single-panel one.
term_cmd(fmt, h) = fmt eq "png" ? \
    sprintf("set terminal pngcairo noenhanced size 900,%d font 'DejaVu Sans,11' linewidth 1.3", int(620 * h)) : \
  fmt eq "pdf" ? \
    sprintf("set terminal pdfcairo noenhanced size 3.5in,%.2fin font 'DejaVu Sans,6.5' linewidth 1", 2.5 * h) : \
    sprintf("set terminal cairolatex pdf input size 3.5in,%.2fin", 2.5 * h)
out_name(fmt) = fmt eq "tex" ? outbase . "_tex.tex" : outbase . "." . fmt

# The caption on two lines: broken after its first ": " ("<model> on <data>: <protocol>").
caption_wrap(c) = strstrt(c, ": ") > 0 ? c[1:strstrt(c, ": ")] . "\n" . c[strstrt(c, ": ") + 2:] : c

set datafile separator "\t"
set datafile commentschars "#"
set datafile missing "NaN"
set termoption noenhanced
set grid back lc rgb "#d0d0d0" lw 0.5
set border 3 back
set tics nomirror out scale 0.6
set key noenhanced
set title noenhanced

# Multi-panel figures place panels by hand: a strip at the top for the caption and one at the
# bottom for the legend (never over the data). panel_cmd(col, ncols, row, nrows) positions panel
# (col, row), counted from 1 at the top left.
cap_h = 0.09
key_h = 0.12
panel_cmd(c, nc, r, nr) = sprintf("set origin %g,%g; set size %g,%g", \
    (c - 1.0) / nc, key_h + (nr - r) * (1.0 - cap_h - key_h) / nr, \
    1.0 / nc, (1.0 - cap_h - key_h) / nr)
key_cmd = sprintf("set origin 0,0; set size 1,%g", key_h)
