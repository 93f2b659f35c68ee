/* plot_hist.c - `cpool plot hist`: how the support sizes s are distributed, per layer.
 *
 * The model reads the split (validation text for a charlm, test images otherwise, unless --split
 * says) from its start, window after window (seq_len bytes each) or batch after batch of images,
 * until every pool has given --tokens support sizes (one per token, or per output position of an
 * image). Each pool's values are counted in 40 equal bins over s_min .. s_max and drawn as
 * overlapping translucent bars, the share of positions in percent, one colour per layer. */
#include <string.h>

#include "plot_job.h"

#define HIST_BINS 40

/* Up to job->options.tokens values of s per pool into values[pool * wanted + k], running the
 * model over the split; returns how many each pool got. */
static long collect_text(PlotJob *job, const PlotModel *m, float *values, long wanted) {
    const TextData *text = &job->data.text;
    DataSplit split = job->options.split;
    int seq_len = m->run.model.seq_len, batch = 2048 / seq_len > 1 ? 2048 / seq_len : 1;
    long windows = text_data_windows(text, split), next_window = 0, got = 0;
    int *tokens = plot_alloc(job, sizeof(int) * (size_t)batch * seq_len);
    while (got < wanted && next_window < windows) {
        int b = 0; /* fill a batch with consecutive windows of the split */
        for (; b < batch && next_window < windows; b++, next_window++) {
            const unsigned char *start = text->bytes + text->begin[split] + next_window * seq_len;
            for (int t = 0; t < seq_len; t++) tokens[b * seq_len + t] = start[t];
        }
        ModelAux aux;
        plot_forward(job, m, tokens, b, seq_len, NULL, &aux);
        long take = (long)b * seq_len < wanted - got ? (long)b * seq_len : wanted - got;
        for (int l = 0; l < aux.count; l++)
            for (long k = 0; k < take; k++)
                values[l * wanted + got + k] = (float)aux.layers[l].pool.support->data[k];
        got += take;
    }
    return got;
}

static long collect_images(PlotJob *job, const PlotModel *m, float *values, long wanted) {
    DataSplit split = job->options.split;
    int count = job->data.images.count[split], indices[64];
    long got[MODEL_MAX_LAYERS] = {0}, fewest = 0;
    for (int b = 0; b < 64; b++) indices[b] = b % count;
    Tensor *batch = plot_image_batch(job, split, indices, 64);
    for (int first = 0; first < count && fewest < wanted; first += 64) {
        int n = count - first < 64 ? count - first : 64;
        for (int b = 0; b < n; b++) indices[b] = first + b;
        plot_image_fill(job, batch, split, indices, n);
        ModelAux aux;
        plot_forward(job, m, NULL, n, 0, batch, &aux);
        fewest = wanted;
        for (int p = 0; p < aux.count; p++) { /* pools have different sizes on a cnn */
            const Tensor *s = aux.layers[p].pool.support;
            for (long k = 0; k < s->size && got[p] < wanted; k++)
                values[p * wanted + got[p]++] = (float)s->data[k];
            if (got[p] < fewest) fewest = got[p];
        }
    }
    return fewest;
}

/* One pool's histogram: share[i] = percent of its values in bin i; returns their mean. */
static double count_bins(const float *values, long count, double low, double high,
                         double share[HIST_BINS]) {
    long bins[HIST_BINS] = {0};
    double sum = 0, width = (high - low) / HIST_BINS;
    for (long k = 0; k < count; k++) {
        int bin = (int)((values[k] - low) / width); /* s_max itself goes in the last bin */
        bins[bin < 0 ? 0 : bin >= HIST_BINS ? HIST_BINS - 1 : bin]++;
        sum += values[k];
    }
    for (int i = 0; i < HIST_BINS; i++) share[i] = 100.0 * (double)bins[i] / (double)count;
    return sum / (double)count;
}

static void write_histograms(PlotJob *job, const PlotModel *m, const float *values, long wanted,
                             long count, double low, double high) {
    Figure *fig = &job->fig;
    FILE *data = figure_data(fig, "counts");
    int pools = plot_pool_count(m);
    double width = (high - low) / HIST_BINS, tallest = 0, mean[MODEL_MAX_LAYERS];
    for (int p = 0; p < pools; p++) {
        double share[HIST_BINS];
        mean[p] = count_bins(values + p * wanted, count, low, high, share);
        fprintf(data, "# pool %d: bin centre, share of positions (%%)\n", p);
        for (int i = 0; i < HIST_BINS; i++) {
            fprintf(data, "%.6g %.6g\n", low + (i + 0.5) * width, share[i]);
            if (share[i] > tallest) tallest = share[i];
        }
        fprintf(data, "\n\n");
    }
    /* room above the tallest bar for the key, but never past 100% */
    figure_script(fig, "set yrange [0:%g]\n", tallest * 1.25 < 100 ? tallest * 1.25 : 100);
    for (int p = 0; p < pools; p++) {
        char name[64];
        figure_script(fig,
                      "%s'%s' index %d using 1:2 with boxes lc rgb '%s' title '%s (mean s = "
                      "%.2f)'",
                      p ? ", \\\n     " : "plot ", figure_data_path(fig, "counts"), p,
                      plot_colour(p), plot_pool_name(m, p, name, sizeof name), mean[p]);
    }
    figure_script(fig, "\n");
}

int plot_hist(PlotJob *job) {
    PlotModel *m = &job->models[0];
    int status = plot_load_model(job, m, job->options.ckpt);
    if (!status) status = plot_require_pool(job, m, "support sizes");
    if (!status) status = plot_load_data(job, m);
    if (status) return status;
    int text = m->run.model.kind == MODEL_CHARLM;
    if (!job->options.split_given) job->options.split = text ? SPLIT_VALID : SPLIT_TEST;
    long wanted = job->options.tokens;
    float *values = plot_alloc(job, sizeof(float) * (size_t)(wanted * plot_pool_count(m)));
    long count =
        text ? collect_text(job, m, values, wanted) : collect_images(job, m, values, wanted);
    if (count == 0)
        return plot_error(job, PLOT_EXIT_DATA, "the %s split gave no positions to count",
                          split_name(job->options.split));
    const ContextPoolConfig *cp = text || m->run.model.kind == MODEL_VIT
                                      ? &m->model.blocks[0].pool.config
                                      : &m->model.pools[0].config;
    if ((status = plot_figure_open(job)) != 0) return status;
    Figure *fig = &job->fig;
    char caption[400], title[200];
    plot_model_caption(m, caption, sizeof caption);
    plot_canvas(job, 1200, 750, 0, 0);
    snprintf(title, sizeof title, "Support sizes s at %ld %s of the %s split", count,
             text ? "characters" : "image positions",
             job->options.split == SPLIT_VALID ? "validation" : split_name(job->options.split));
    plot_title(job, "set title", title, caption);
    figure_script(fig,
                  "set xlabel 'support size s (%s)'\nset ylabel 'share of positions (%%)'\n"
                  "set xrange [%g:%g]\n"
                  "set boxwidth %g\n"
                  "set style fill transparent solid 0.35 border\nset grid ytics lc rgb '#dddddd'\n"
                  "set key top right box opaque\nset border 3\nset tics nomirror\n",
                  text                             ? "tokens"
                  : m->run.model.kind == MODEL_VIT ? "patches"
                                                   : "pixels",
                  cp->s_min, cp->s_max, (cp->s_max - cp->s_min) / HIST_BINS);
    write_histograms(job, m, values, wanted, count, cp->s_min, cp->s_max);
    return plot_figure_close(job);
}
