# docs/figures/hist.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/hist.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/hist.png'
set output outfile
set terminal @terminal size 1200,750
set title 'Support sizes s at 4096 characters of the validation split'."\n".'{/*0.8 runs/exp/charlm-cp-L2/checkpoint.safetensors: charlm, dim 64, 2 layers, pool=contextpool, step 2000}' font ',15'
set xlabel 'support size s (tokens)'
set ylabel 'share of positions (%)'
set xrange [0.5:8]
set boxwidth 0.1875
set style fill transparent solid 0.35 border
set grid ytics lc rgb '#dddddd'
set key top right box opaque
set border 3
set tics nomirror
set yrange [0:24.8108]
plot 'docs/figures/hist.counts.dat' index 0 using 1:2 with boxes lc rgb '#1f77b4' title 'layer 0 (mean s = 1.50)', \
     'docs/figures/hist.counts.dat' index 1 using 1:2 with boxes lc rgb '#d62728' title 'layer 1 (mean s = 1.64)'
