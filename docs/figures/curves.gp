# docs/figures/curves.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/curves.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/curves.png'
set output outfile
set title 'Training curves: bits per character' font ',15'
set xlabel 'tokens (characters) trained on'
set ylabel 'bits per character'
set format x '%.1s%c'
set xrange [0:*]
set grid lc rgb '#dddddd'
set key top right box opaque
set border 3
set tics nomirror
set offsets 0, 0, graph 0.05, graph 0.05
plot 'docs/figures/curves.run0.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#1f77b4' title 'plain L=2: valid', \
     'docs/figures/curves.run1.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#d62728' title 'plain L=4: valid', \
     'docs/figures/curves.run2.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#2ca02c' title 'plain L=6: valid', \
     'docs/figures/curves.run3.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#ff7f0e' title 'ContextPool L=1: valid', \
     'docs/figures/curves.run4.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#9467bd' title 'ContextPool L=2: valid', \
     'docs/figures/curves.run5.dat' index 0 using 1:2 with linespoints pt 7 ps 0.9 lw 2.5 lc rgb '#8c564b' title 'ContextPool L=3: valid'
