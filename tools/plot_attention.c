/* plot_attention.c - `cpool plot attention`: a layer's attention probabilities over a passage,
 * query i down the y axis, key j along x, the characters on both; with --compare, the same
 * passage, layer and head of a second checkpoint beside it (on one colour scale), so a model with
 * ContextPool and one without can be compared.
 *
 * The probabilities are those the block's attention used (BlockAux.probs, (B, heads, N, N)):
 * with pool_feeds = kv the keys are ContextPool's pooled features, so row i shows where query i
 * reads pooled context. A causal model's entries with j > i are masked (exactly 0); they are
 * left blank, so the triangle that exists stands out. */
#include <math.h>
#include <string.h>

#include "plot_job.h"

#define ATTENTION_DEFAULT_LENGTH 64 /* characters on each axis by default */

/* Layer and head exist in this model? */
static int check_layer_head(PlotJob *job, const PlotModel *m) {
    const ModelConfig *c = &m->run.model;
    if (job->options.layer >= c->layers)
        return plot_error(job, PLOT_EXIT_USAGE, "--layer %d: %s has %d layer%s (0..%d)",
                          job->options.layer, m->path, c->layers, c->layers == 1 ? "" : "s",
                          c->layers - 1);
    if (job->options.head >= c->heads)
        return plot_error(job, PLOT_EXIT_USAGE, "--head %d: %s has %d head%s per layer (0..%d)",
                          job->options.head, m->path, c->heads, c->heads == 1 ? "" : "s",
                          c->heads - 1);
    return 0;
}

static int load_checked(PlotJob *job, PlotModel *m, const char *path) {
    int status = plot_load_model(job, m, path);
    if (!status) status = plot_require_kind(job, m, MODEL_CHARLM, "an attention map over text");
    if (!status) status = check_layer_head(job, m);
    return status;
}

/* The chosen layer and head's probabilities (n, n) for the passage into probs. */
static void read_probs(PlotJob *job, const PlotModel *m, const PlotPassage *passage, float *probs) {
    int n = passage->length;
    int *tokens = plot_alloc(job, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tokens[i] = passage->bytes[i];
    ModelAux aux;
    plot_forward(job, m, tokens, 1, n, NULL, &aux);
    const Tensor *p = aux.layers[job->options.layer].probs; /* (1, heads, n, n) */
    const real *head = p->data + (long)job->options.head * n * n;
    for (long k = 0; k < (long)n * n; k++) probs[k] = (float)head[k];
}

/* The power of ten at or below x. */
static double log_floor(double x) {
    return pow(10.0, floor(log10(x)));
}

static void write_attention_panel(PlotJob *job, const PlotModel *m, const PlotPassage *passage,
                                  const float *probs, const char *name) {
    Figure *fig = &job->fig;
    int n = passage->length;
    FILE *data = figure_data(fig, name);
    fprintf(data, "# key_j query_i probability (NaN: masked, j > i in a causal model)\n");
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            if (j > i) /* the charlm is causal: masked, left blank */
                fprintf(data, "%d %d NaN\n", j, i);
            else
                fprintf(data, "%d %d %.6g\n", j, i, probs[(long)i * n + j]);
        fprintf(data, "\n");
    }
    char caption_text[400], caption[600];
    plot_model_caption(m, caption_text, sizeof caption_text);
    const char *feeds = m->run.model.pool == MODEL_POOL_CONTEXTPOOL &&
                                m->run.model.variant.pool_feeds == BLOCK_POOL_FEEDS_KV
                            ? "\\n(keys and values: ContextPool's pooled features)"
                            : "\\n(keys and values: the layer's input)";
    figure_script(fig, "set title '%s'.\"%s\" font ',12'\n",
                  plot_literal(job, caption_text, caption, sizeof caption), feeds);
    const char *style = plot_heatmap(job, log_floor(0.1 / n), 1.0, 1);
    figure_script(fig, "plot '%s' %s\n", figure_data_path(fig, name), style);
}

/* On a log colour scale from about a tenth of uniform attention (0.1 / n, where a few keys
 * stand out and most are faint) to 1 (a query attending to one key). */
static void write_figure(PlotJob *job, const PlotPassage *passage, int n_panels,
                         float *const probs[2]) {
    Figure *fig = &job->fig;
    int n = passage->length, side = 16 * n;
    plot_canvas(job, n_panels * (side + 330), side + 300, n_panels * (n + 30), n + 14);
    plot_palette(job, PLOT_VIRIDIS);
    char command[64], title[128];
    snprintf(command, sizeof command, "set multiplot layout 1,%d title", n_panels);
    snprintf(title, sizeof title, "Attention probabilities of layer %d, head %d",
             job->options.layer, job->options.head);
    plot_title(job, command, title, passage->source);
    plot_char_tics(job, "x", passage);
    plot_char_tics(job, "y", passage);
    figure_script(fig,
                  "set xtics rotate by 0\nset xlabel 'key j (the character attended to)'\n"
                  "set ylabel 'query i (the character attending)'\n"
                  "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\nset size ratio -1\n"
                  "set logscale cb\nset cbrange [%g:1]\nset format cb '10^{%%L}'\n"
                  "set cblabel 'probability P_{ij} (log scale)'\nunset key\n",
                  n - 1, n - 1, log_floor(0.1 / n));
    for (int p = 0; p < n_panels; p++)
        write_attention_panel(job, &job->models[p], passage, probs[p], p ? "compare" : "attention");
    figure_script(fig, "unset multiplot\n");
}

int plot_attention(PlotJob *job) {
    int n_panels = job->options.compare ? 2 : 1, status = 0;
    for (int p = 0; p < n_panels && !status; p++)
        status = load_checked(job, &job->models[p], p ? job->options.compare : job->options.ckpt);
    PlotPassage passage;
    /* The shorter context of the two decides how much of the default verse fits. */
    PlotModel *shorter = &job->models[0];
    if (n_panels == 2 && job->models[1].run.model.seq_len < shorter->run.model.seq_len)
        shorter = &job->models[1];
    if (!status) status = plot_passage(job, shorter, ATTENTION_DEFAULT_LENGTH, &passage);
    if (status) return status;
    float *probs[2] = {NULL, NULL};
    for (int p = 0; p < n_panels; p++) {
        probs[p] = plot_alloc(job, sizeof(float) * (size_t)passage.length * passage.length);
        read_probs(job, &job->models[p], &passage, probs[p]);
    }
    if ((status = plot_figure_open(job)) != 0) return status;
    write_figure(job, &passage, n_panels, probs);
    return plot_figure_close(job);
}
