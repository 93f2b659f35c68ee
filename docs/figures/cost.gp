# docs/figures/cost.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/cost.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/cost.png'
set output outfile
set terminal @terminal size 1500,650
set multiplot layout 1,2 title 'Cost of one forward + backward pass vs sequence length N'."\n".'{/*0.8 B = 1, dim 64, float32, one thread}' font ',15'
set logscale xy 2
set logscale y 10
set format y '10^{%L}'
set xlabel 'sequence length N (tokens)'
set xtics 128, 2
set grid lc rgb '#dddddd'
set key top left box opaque
set xrange [100:10240]
set title 'time'
set ylabel 'time per forward + backward (ms)'
plot 'docs/figures/cost.cost.dat' using 1:2 with linespoints pt 7 lw 2.5 lc rgb '#1f77b4' title 'ContextPool (op\_contextpool1d)', \
     '' using 1:4 with linespoints pt 5 lw 2.5 lc rgb '#d62728' title 'attention (attention\_forward)', \
     0.042934 * (x / 128) with lines dt 2 lw 1 lc rgb '#777777' title 'slope 1: ∝ N', \
     0.293937 * (x / 128)**2 with lines dt 3 lw 1 lc rgb '#777777' title 'slope 2: ∝ N^2'
set title 'memory'
set ylabel 'tape arena peak (MB)'
plot 'docs/figures/cost.cost.dat' using 1:3 with linespoints pt 7 lw 2.5 lc rgb '#1f77b4' title 'ContextPool (op\_contextpool1d)', \
     '' using 1:5 with linespoints pt 5 lw 2.5 lc rgb '#d62728' title 'attention (attention\_forward)', \
     0.0773315 * (x / 128) with lines dt 2 lw 1 lc rgb '#777777' title 'slope 1: ∝ N', \
     0.627808 * (x / 128)**2 with lines dt 3 lw 1 lc rgb '#777777' title 'slope 2: ∝ N^2'
unset multiplot
