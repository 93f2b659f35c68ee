# docs/figures/synthetic.gp - drawn by `cpool plot`; redraw it with `gnuplot docs/figures/synthetic.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/synthetic.png'
set output outfile
set terminal @terminal size 1500,650
set multiplot layout 1,2 title "Synthetic task: a one-block ContextPool model learns the support size each token needs\n{/*0.85 Pearson r(true width, learned s) = 0.99993 over 4096 held-out tokens;   normalised squared error 7.1e-05 (one s for every token, at best: 0.29)}"
set title 'every held-out token: learned s against the true width'
set logscale xy 2
set xrange [0.625:12.8]
set yrange [0.4:19.2]
set xtics ('1' 1, '2' 2, '4' 4, '8' 8)
set ytics (0.5, 1, 2, 4, 8, 16, 32, 64)
set xlabel 'true window width W (tokens)'
set ylabel 'learned support size s (tokens)'
set grid
set key top left box opaque samplen 2
plot x with lines dashtype 2 linecolor rgb 'black' title 'ideal: s = W', \
     'docs/figures/synthetic.tokens.dat' using 1:4 with points pointtype 7 pointsize 0.3 linecolor rgb '#b0808080' notitle, \
     NaN with points pointtype 7 pointsize 1 linecolor rgb '#808080' title 'a token before training (r = -0.46)', \
     'docs/figures/synthetic.tokens.dat' using 1:2 with points pointtype 7 pointsize 0.3 linecolor rgb '#a01f77b4' notitle, \
     NaN with points pointtype 7 pointsize 1 linecolor rgb '#1f77b4' title 'a token after 1000 steps (r = 0.99993)', \
     'docs/figures/synthetic.means.dat' using 1:2:3 with yerrorbars pointtype 5 pointsize 1.1 linewidth 1.5 linecolor rgb '#d62728' title 'mean ± std per width'
unset logscale
set title 'one held-out sequence, token by token'
set xrange [0:255]
set yrange [0:13.8]
set xtics auto
set ytics auto
set xlabel 'token position i'
set ylabel 'support size (tokens)'
set key top left box opaque samplen 2
plot 'docs/figures/synthetic.trace.dat' using 1:2 with steps linewidth 4 linecolor rgb '#a0000000' title 'true width W_i', \
     'docs/figures/synthetic.trace.dat' using 1:4 with lines linewidth 1 dashtype 3 linecolor rgb '#606060' title 's_i before training', \
     'docs/figures/synthetic.trace.dat' using 1:3 with lines linewidth 1.5 linecolor rgb '#d62728' title 's_i after training'
unset multiplot
