# docs/figures/attention.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/attention.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/attention.png'
set output outfile
set terminal @terminal size 2644,1292
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set multiplot layout 1,2 title 'Attention probabilities of layer 0, head 2'."\n".'{/*0.8 Genesis 1:1-2 (KJV), the start}' font ',15'
set xtics scale 0 noenhanced font 'DejaVu Sans Mono,12' ('I' 0, 'n' 1, '␣' 2, 't' 3, 'h' 4, 'e' 5, '␣' 6, 'b' 7, 'e' 8, 'g' 9, 'i' 10, 'n' 11, 'n' 12, 'i' 13, 'n' 14, 'g' 15 \
    , '␣' 16, 'G' 17, 'o' 18, 'd' 19, '␣' 20, 'c' 21, 'r' 22, 'e' 23, 'a' 24, 't' 25, 'e' 26, 'd' 27, '␣' 28, 't' 29, 'h' 30, 'e' 31 \
    , '␣' 32, 'h' 33, 'e' 34, 'a' 35, 'v' 36, 'e' 37, 'n' 38, '␣' 39, 'a' 40, 'n' 41, 'd' 42, '␣' 43, 't' 44, 'h' 45, 'e' 46, '␣' 47 \
    , 'e' 48, 'a' 49, 'r' 50, 't' 51, 'h' 52, '.' 53, '␣' 54, 'A' 55, 'n' 56, 'd' 57, '␣' 58, 't' 59, 'h' 60, 'e' 61)
set ytics scale 0 noenhanced font 'DejaVu Sans Mono,12' ('I' 0, 'n' 1, '␣' 2, 't' 3, 'h' 4, 'e' 5, '␣' 6, 'b' 7, 'e' 8, 'g' 9, 'i' 10, 'n' 11, 'n' 12, 'i' 13, 'n' 14, 'g' 15 \
    , '␣' 16, 'G' 17, 'o' 18, 'd' 19, '␣' 20, 'c' 21, 'r' 22, 'e' 23, 'a' 24, 't' 25, 'e' 26, 'd' 27, '␣' 28, 't' 29, 'h' 30, 'e' 31 \
    , '␣' 32, 'h' 33, 'e' 34, 'a' 35, 'v' 36, 'e' 37, 'n' 38, '␣' 39, 'a' 40, 'n' 41, 'd' 42, '␣' 43, 't' 44, 'h' 45, 'e' 46, '␣' 47 \
    , 'e' 48, 'a' 49, 'r' 50, 't' 51, 'h' 52, '.' 53, '␣' 54, 'A' 55, 'n' 56, 'd' 57, '␣' 58, 't' 59, 'h' 60, 'e' 61)
set xtics rotate by 0
set xlabel 'key j (the character attended to)'
set ylabel 'query i (the character attending)'
set xrange [-0.5:61.5]
set yrange [61.5:-0.5]
set size ratio -1
set logscale cb
set cbrange [0.001:1]
set format cb '10^{%L}'
set cblabel 'probability P_{ij} (log scale)'
unset key
set title 'runs/exp/charlm-cp-L2/checkpoint.safetensors: charlm, dim 64, 2 layers, pool=contextpool, step 2000'."\n(keys and values: ContextPool's pooled features)" font ',12'
plot 'docs/figures/attention.attention.dat' using 1:2:3 with image
set title 'runs/exp/charlm-plain-L2/checkpoint.safetensors: charlm, dim 64, 2 layers, pool=none, step 2000'."\n(keys and values: the layer's input)" font ',12'
plot 'docs/figures/attention.compare.dat' using 1:2:3 with image
unset multiplot
