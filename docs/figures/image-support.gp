# docs/figures/image-support.gp - a contextpool-c figure; redraw it with `gnuplot docs/figures/image-support.gp`.
terminal = "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
set terminal @terminal size 1200,800
if (!exists("outfile")) outfile = 'docs/figures/image-support.png'
set output outfile
set terminal @terminal size 1710,1350
set multiplot layout 4,5 title 'ContextPool on Fashion-MNIST test images: support sizes s (in pixels of the pooled feature map) and pooling weights w'."\n".'{/*0.8 runs/exp/cnn-cp/checkpoint.safetensors: cnn, channels 16, pool=contextpool, step 1500}' font ',15'
set size ratio -1
unset xtics
unset ytics
unset key
set cbtics font ',9'
set title font ',11'
set palette grey
set cbrange [0:1]
set title 'Ankle boot (predicted: Sneaker)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
unset colorbox
plot 'docs/figures/image-support.images.dat' index 0 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 0 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 0 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:6.5]
set yrange [6.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 1 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 1 using 1:2:3 with image
set palette grey
set cbrange [0:1]
set title 'Pullover (predicted: Bag)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
unset colorbox
plot 'docs/figures/image-support.images.dat' index 1 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 2 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 2 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:6.5]
set yrange [6.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 3 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 3 using 1:2:3 with image
set palette grey
set cbrange [0:1]
set title 'Trouser (predicted right)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
unset colorbox
plot 'docs/figures/image-support.images.dat' index 2 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 4 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 4 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:6.5]
set yrange [6.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 5 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 5 using 1:2:3 with image
set palette grey
set cbrange [0:1]
set title 'Shirt (predicted: Pullover)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
unset colorbox
plot 'docs/figures/image-support.images.dat' index 3 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 6 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 0 (28x28 -> 14x14)'
set xrange [-0.5:27.5]
set yrange [27.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 6 using 1:2:3 with image
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set cbrange [0.5:2]
set title 's, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:6.5]
set yrange [6.5:-0.5]
set colorbox
plot 'docs/figures/image-support.support.dat' index 7 using 1:2:3 with image
set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', 3 '#fc8961', 4 '#fcfdbf')
set cbrange [0:1]
set title 'w, pool 1 (14x14 -> 7x7)'
set xrange [-0.5:13.5]
set yrange [13.5:-0.5]
set colorbox
plot 'docs/figures/image-support.weights.dat' index 7 using 1:2:3 with image
unset multiplot
