/* plot_image.c - `cpool plot image-support`: Fashion-MNIST images beside what ContextPool
 * predicted on them.
 *
 * One row per image (the first image of each class in the split, so the rows differ), and in each
 * row: the image with its label and the model's prediction, then for every pool (the vit's
 * blocks, or the cnn's two pooling stages) the map of support sizes s and of pooling weights w.
 * On the vit a map is the (G, G) grid of patch tokens; on the cnn w covers the stage's input
 * (28 x 28, then 14 x 14) and s its output positions (14 x 14, then 7 x 7). */
#include <string.h>

#include "plot_job.h"

static const char *const class_names[IMAGE_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* Up to k images of the split, each of a class not yet taken (in order); returns how many. */
static int pick_images(const ImageData *images, DataSplit split, int k, int *picked) {
    int n = 0, taken[IMAGE_CLASSES] = {0};
    for (int i = 0; i < images->count[split] && n < k; i++) {
        int label = images->labels[split][i];
        if (taken[label] && k <= IMAGE_CLASSES) continue;
        taken[label] = 1;
        picked[n++] = i;
    }
    return n;
}

/* Map b of t (B, H, W) as a gnuplot image block: "x y value" rows, then two blank lines. */
static void write_map(FILE *data, const Tensor *t, int b, double scale) {
    int h = t->shape[1], w = t->shape[2];
    const real *map = t->data + (long)b * h * w;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) fprintf(data, "%d %d %.5g\n", x, y, map[y * w + x] * scale);
        fprintf(data, "\n");
    }
    fprintf(data, "\n");
}

/* The largest logit's class. */
static int predicted(const Tensor *logits, int b) {
    const real *row = logits->data + (long)b * IMAGE_CLASSES;
    int best = 0;
    for (int c = 1; c < IMAGE_CLASSES; c++)
        if (row[c] > row[best]) best = c;
    return best;
}

/* What the figure needs from the forward pass, written to the data files at once. */
static void write_data(PlotJob *job, const Tensor *batch, const ModelAux *aux, int pools) {
    Figure *fig = &job->fig;
    FILE *image_data = figure_data(fig, "images");
    FILE *support = figure_data(fig, "support"), *weights = figure_data(fig, "weights");
    fprintf(image_data, "# x y pixel, one block per image\n");
    fprintf(support, "# x y s, block image * pools + pool\n");
    fprintf(weights, "# x y w, block image * pools + pool\n");
    Tensor view = *batch; /* (n, 28, 28): the channel axis dropped */
    view.ndim = 3, view.shape[1] = IMAGE_SIZE, view.shape[2] = IMAGE_SIZE;
    for (int b = 0; b < batch->shape[0]; b++) {
        write_map(image_data, &view, b, 1.0);
        for (int p = 0; p < pools; p++) {
            write_map(support, aux->layers[p].pool.support, b, 1.0);
            write_map(weights, aux->layers[p].pool.weights, b, 1.0);
        }
    }
}

/* One `with image` panel: block `block` of data file `name`, side x side cells. */
static void write_image_panel(PlotJob *job, const char *name, int block, int side,
                              const char *title, double low, double high, int colorbox) {
    figure_script(&job->fig, "set cbrange [%g:%g]\n", low, high);
    const char *style = plot_heatmap(job, low, high, 0);
    figure_script(&job->fig,
                  "set title '%s'\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n"
                  "%s\nplot '%s' index %d %s\n",
                  title, side - 1, side - 1, colorbox ? "set colorbox" : "unset colorbox",
                  figure_data_path(&job->fig, name), block, style);
}

static void write_script(PlotJob *job, const PlotModel *m, const ModelAux *aux,
                         const Tensor *logits, const int *labels, int n) {
    Figure *fig = &job->fig;
    int pools = plot_pool_count(m), columns = 1 + 2 * pools;
    const ContextPoolConfig *cp = m->run.model.kind == MODEL_CNN ? &m->model.pools[0].config
                                                                 : &m->model.blocks[0].pool.config;
    plot_canvas(job, 60 + 330 * columns, 150 + 300 * n, 40 * columns, 20 * n + 4);
    char caption[400], command[64], heading[300];
    plot_model_caption(m, caption, sizeof caption);
    const char *unit = m->run.model.kind == MODEL_CNN ? "pixels of the pooled feature map"
                                                      : "patches of the token grid";
    snprintf(command, sizeof command, "set multiplot layout %d,%d title", n, columns);
    snprintf(heading, sizeof heading,
             "ContextPool on Fashion-MNIST %s images: support sizes s (in %s) and pooling "
             "weights w",
             split_name(job->options.split), unit);
    plot_title(job, command, heading, caption);
    figure_script(fig, "set size ratio -1\nunset xtics\nunset ytics\nunset key\n"
                       "set cbtics font ',9'\nset title font ',11'\n");
    for (int b = 0; b < n; b++) {
        char title[200], pool_name[64];
        int guess = predicted(logits, b);
        if (guess == labels[b])
            snprintf(title, sizeof title, "%s (predicted right)", class_names[labels[b]]);
        else
            snprintf(title, sizeof title, "%s (predicted: %s)", class_names[labels[b]],
                     class_names[guess]);
        plot_palette(job, PLOT_GREY);
        write_image_panel(job, "images", b, IMAGE_SIZE, title, 0, 1, 0);
        for (int p = 0; p < pools; p++) {
            plot_pool_name(m, p, pool_name, sizeof pool_name);
            const Tensor *s = aux->layers[p].pool.support, *w = aux->layers[p].pool.weights;
            snprintf(title, sizeof title, "s, %s", pool_name);
            plot_palette(job, PLOT_VIRIDIS);
            write_image_panel(job, "support", b * pools + p, s->shape[1], title, cp->s_min,
                              cp->s_max, 1);
            snprintf(title, sizeof title, "w, %s", pool_name);
            plot_palette(job, PLOT_MAGMA);
            write_image_panel(job, "weights", b * pools + p, w->shape[1], title, 0, 1, 1);
        }
    }
    figure_script(fig, "unset multiplot\n");
}

int plot_image_support(PlotJob *job) {
    PlotModel *m = &job->models[0];
    int status = plot_load_model(job, m, job->options.ckpt);
    if (!status && m->run.model.kind == MODEL_CHARLM)
        status = plot_error(job, PLOT_EXIT_DATA,
                            "%s: a charlm model; image-support needs a vit or cnn checkpoint "
                            "(for text: cpool plot support)",
                            m->path);
    if (!status) status = plot_require_pool(job, m, "support sizes");
    if (!status) status = plot_load_data(job, m);
    if (status) return status;
    DataSplit split = job->options.split;
    int *picked = plot_alloc(job, sizeof(int) * (size_t)job->options.images);
    int n = pick_images(&job->data.images, split, job->options.images, picked);
    if (n == 0)
        return plot_error(job, PLOT_EXIT_DATA, "the %s split has no images", split_name(split));
    int *labels = plot_alloc(job, sizeof(int) * (size_t)n);
    for (int b = 0; b < n; b++) labels[b] = job->data.images.labels[split][picked[b]];
    Tensor *batch = plot_image_batch(job, split, picked, n);
    ModelAux aux;
    Tensor *logits = plot_forward(job, m, NULL, n, 0, batch, &aux);
    if ((status = plot_figure_open(job)) != 0) return status;
    write_data(job, batch, &aux, plot_pool_count(m));
    write_script(job, m, &aux, logits, labels, n);
    return plot_figure_close(job);
}
