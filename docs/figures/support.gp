# docs/figures/support.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/support.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/support.png'
set output outfile
set terminal @terminal size 1677,390
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set title 'Support sizes s_i that ContextPool predicts for each character'."\n".'{/*0.8 runs/exp/charlm-cp-L2/checkpoint.safetensors: charlm, dim 64, 2 layers, pool=contextpool, step 2000; Genesis 1:1-2 (KJV), the start}' font ',15'
set xtics scale 0 noenhanced font 'DejaVu Sans Mono,12' ('I' 0, 'n' 1, '␣' 2, 't' 3, 'h' 4, 'e' 5, '␣' 6, 'b' 7, 'e' 8, 'g' 9, 'i' 10, 'n' 11, 'n' 12, 'i' 13, 'n' 14, 'g' 15 \
    , '␣' 16, 'G' 17, 'o' 18, 'd' 19, '␣' 20, 'c' 21, 'r' 22, 'e' 23, 'a' 24, 't' 25, 'e' 26, 'd' 27, '␣' 28, 't' 29, 'h' 30, 'e' 31 \
    , '␣' 32, 'h' 33, 'e' 34, 'a' 35, 'v' 36, 'e' 37, 'n' 38, '␣' 39, 'a' 40, 'n' 41, 'd' 42, '␣' 43, 't' 44, 'h' 45, 'e' 46, '␣' 47 \
    , 'e' 48, 'a' 49, 'r' 50, 't' 51, 'h' 52, '.' 53, '␣' 54, 'A' 55, 'n' 56, 'd' 57, '␣' 58, 't' 59, 'h' 60, 'e' 61, '␣' 62, 'e' 63 \
    , 'a' 64, 'r' 65, 't' 66, 'h' 67, '␣' 68, 'w' 69, 'a' 70, 's' 71, '␣' 72, 'w' 73, 'i' 74, 't' 75, 'h' 76, 'o' 77, 'u' 78, 't' 79 \
    , '␣' 80, 'f' 81, 'o' 82, 'r' 83, 'm' 84, ',' 85, '␣' 86, 'a' 87, 'n' 88, 'd' 89, '␣' 90, 'v' 91, 'o' 92, 'i' 93, 'd' 94, ';' 95 \
    , '␣' 96, 'a' 97, 'n' 98, 'd' 99, '␣' 100, 'd' 101, 'a' 102, 'r' 103, 'k' 104, 'n' 105, 'e' 106, 's' 107, 's' 108)
set xlabel 'the passage, one character per cell (␣ is a space)'
set ytics scale 0 ('layer 0' 0, 'layer 1' 1)
set xrange [-0.5:108.5]
set yrange [1.5:-0.5]
set cbrange [0.5:8]
set cblabel 'support size s_i (tokens)'
set colorbox
unset key
set lmargin 10
plot 'docs/figures/support.values.dat' using 1:2:3 with image
