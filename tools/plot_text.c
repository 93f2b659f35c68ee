/* plot_text.c - `cpool plot support` and `cpool plot weights`: what ContextPool predicted for
 * each character of a passage, as a heatmap with one row per layer and the characters along x.
 *
 * The passage (plot_passage) is --text, or --length bytes of the file --data from byte --offset,
 * or a KJV verse cut to fit; the model reads it once (batch 1, no gradients) and every block
 * hands back its pool's support sizes s (B, N) and weights w (B, N) (ModelAux). Cell (i, layer)
 * is coloured by s_i in tokens, on the fixed scale s_min .. s_max of the model's config, or by
 * w_i in (0, 1). */
#include <errno.h>
#include <string.h>

#include "plot_job.h"

#define DEFAULT_VERSE                                                                              \
    "In the beginning God created the heaven and the earth. And the earth was without form, "      \
    "and void; and darkness was upon the face of the deep."
#define DEFAULT_VERSE_SOURCE "Genesis 1:1-2 (KJV)"
#define TEXT_DEFAULT_LENGTH  110 /* characters drawn by default: they stay readable */

/* ------------------------------------------------------------------------------------------ */
/* The passage                                                                                */

/* The default verse, cut at a word boundary to at most limit bytes. */
static void default_passage(PlotPassage *passage, int limit) {
    int n = (int)strlen(DEFAULT_VERSE);
    if (n > limit) {
        n = limit;
        while (n > limit / 2 && DEFAULT_VERSE[n] != ' ') n--; /* end on a whole word */
    }
    memcpy(passage->bytes, DEFAULT_VERSE, (size_t)n);
    passage->length = n;
    snprintf(passage->source, sizeof passage->source, "%s%s", DEFAULT_VERSE_SOURCE,
             n < (int)strlen(DEFAULT_VERSE) ? ", the start" : "");
}

static int passage_from_file(PlotJob *job, PlotPassage *passage, int length) {
    const PlotOptions *o = &job->options;
    FILE *fp = fopen(o->data, "rb");
    if (!fp)
        return plot_error(job, PLOT_EXIT_DATA, "%s: cannot open: %s", o->data, strerror(errno));
    size_t got = 0;
    if (fseek(fp, o->offset, SEEK_SET) == 0) got = fread(passage->bytes, 1, (size_t)length, fp);
    fclose(fp);
    if ((int)got < length)
        return plot_error(job, PLOT_EXIT_DATA,
                          "%s: --offset %ld --length %d reaches past the end of the file", o->data,
                          o->offset, length);
    passage->length = length;
    snprintf(passage->source, sizeof passage->source, "%s, bytes %ld..%ld", o->data, o->offset,
             o->offset + length - 1);
    return 0;
}

int plot_passage(PlotJob *job, const PlotModel *m, int max_len, PlotPassage *passage) {
    const PlotOptions *o = &job->options;
    int seq_len = m->run.model.seq_len;
    int given = o->text ? (int)strlen(o->text) : o->length;
    if (o->text && given == 0) return plot_error(job, PLOT_EXIT_USAGE, "--text is empty");
    if (given > seq_len)
        return plot_error(job, PLOT_EXIT_USAGE,
                          "the passage has %d bytes but %s reads at most seq_len=%d", given,
                          m->path, seq_len);
    int limit = max_len < seq_len ? max_len : seq_len;
    passage->bytes = plot_alloc(job, (size_t)(given > limit ? given : limit) + 1);
    if (o->text) {
        memcpy(passage->bytes, o->text, (size_t)given);
        passage->length = given;
        snprintf(passage->source, sizeof passage->source, "the passage given with --text");
        return 0;
    }
    if (o->data) return passage_from_file(job, passage, given ? given : limit);
    default_passage(passage, given ? given : limit);
    if (limit < max_len)
        plot_note(job, "the passage is cut to %d characters: %s has seq_len=%d\n", passage->length,
                  m->path, seq_len);
    return 0;
}

const char *plot_space_symbol(FigureTerm term) {
    return term == FIGURE_PNG ? "␣" : "_";
}

const char *plot_char_label(unsigned char c, FigureTerm term, char *out, size_t out_len) {
    int png = term == FIGURE_PNG;
    if (c == '\'')
        snprintf(out, out_len, "''"); /* a quote, doubled inside a single-quoted string */
    else if (c > ' ' && c < 127)
        snprintf(out, out_len, "%c", c);
    else if (c == ' ')
        snprintf(out, out_len, "%s", plot_space_symbol(term));
    else
        snprintf(out, out_len, "%s", c == '\n' ? (png ? "↵" : "|") : png ? "·" : ".");
    return out;
}

void plot_char_tics(PlotJob *job, const char *axis, const PlotPassage *passage) {
    Figure *fig = &job->fig;
    figure_script(fig, "set %stics scale 0 noenhanced font 'DejaVu Sans Mono,12' (", axis);
    for (int i = 0; i < passage->length; i++) {
        char label[8];
        figure_script(fig, "%s'%s' %d", i ? ", " : "",
                      plot_char_label(passage->bytes[i], job->options.term, label, sizeof label),
                      i);
        if (i % 16 == 15 && i + 1 < passage->length) figure_script(fig, " \\\n    ");
    }
    figure_script(fig, ")\n");
}

/* ------------------------------------------------------------------------------------------ */
/* The heatmap                                                                                */

/* What one text heatmap shows. */
typedef struct TextHeatmap {
    const char *what;     /* "support", "weights" */
    const char *title;    /* enhanced text */
    const char *cb_label; /* the colour bar's label, with units */
    double low, high;     /* the colour scale */
    PlotPalette palette;
} TextHeatmap;

/* Run the model on the passage; values[layer * n + i] = s_i (support) or w_i (weights). */
static void read_pool_values(PlotJob *job, const PlotModel *m, const PlotPassage *passage,
                             int support, float *values) {
    int n = passage->length;
    int *tokens = plot_alloc(job, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tokens[i] = passage->bytes[i];
    ModelAux aux;
    plot_forward(job, m, tokens, 1, n, NULL, &aux);
    for (int l = 0; l < aux.count; l++) {
        const Tensor *t = support ? aux.layers[l].pool.support : aux.layers[l].pool.weights;
        for (int i = 0; i < n; i++) values[(long)l * n + i] = (float)t->data[i];
    }
}

static void write_heatmap(PlotJob *job, const PlotModel *m, const PlotPassage *passage,
                          const TextHeatmap *map, const float *values) {
    Figure *fig = &job->fig;
    int n = passage->length, layers = m->run.model.layers;
    FILE *data = figure_data(fig, "values");
    fprintf(data, "# character_index layer %s\n", map->what);
    for (int l = 0; l < layers; l++) {
        for (int i = 0; i < n; i++) fprintf(data, "%d %d %.6g\n", i, l, values[(long)l * n + i]);
        fprintf(data, "\n");
    }
    char caption[400], subtitle[700];
    plot_model_caption(m, caption, sizeof caption);
    snprintf(subtitle, sizeof subtitle, "%s; %s", caption, passage->source);
    /* at least 1100 pixels wide, so that a short passage still fits the subtitle */
    plot_canvas(job, 260 + 13 * n > 1100 ? 260 + 13 * n : 1100, 250 + 70 * layers,
                2 * n + 40 > 90 ? 2 * n + 40 : 90, 10 + 4 * layers);
    plot_palette(job, map->palette);
    plot_title(job, "set title", map->title, subtitle);
    plot_char_tics(job, "x", passage);
    figure_script(fig, "set xlabel 'the passage, one character per cell (%s is a space)'\n",
                  plot_space_symbol(job->options.term));
    const char *style = plot_heatmap(job, map->low, map->high, 0); /* (defines a function) */
    figure_script(fig, "set ytics scale 0 (");
    for (int l = 0; l < layers; l++) figure_script(fig, "%s'layer %d' %d", l ? ", " : "", l, l);
    figure_script(fig,
                  ")\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n"
                  "set cbrange [%g:%g]\nset cblabel '%s'\nset colorbox\n"
                  "unset key\nset lmargin 10\n"
                  "plot '%s' %s\n",
                  n - 1, layers - 1, map->low, map->high, map->cb_label,
                  figure_data_path(fig, "values"), style);
}

static int draw_text_heatmap(PlotJob *job, int support) {
    PlotModel *m = &job->models[0];
    int status = plot_load_model(job, m, job->options.ckpt);
    if (!status) status = plot_require_kind(job, m, MODEL_CHARLM, "this figure");
    if (!status) status = plot_require_pool(job, m, support ? "support sizes" : "pooling weights");
    PlotPassage passage;
    if (!status) status = plot_passage(job, m, TEXT_DEFAULT_LENGTH, &passage);
    if (status) return status;
    float *values = plot_alloc(job, sizeof(float) * (size_t)m->run.model.layers * passage.length);
    read_pool_values(job, m, &passage, support, values);
    const ContextPoolConfig *cp = &m->model.blocks[0].pool.config;
    TextHeatmap map = {"support",
                       "Support sizes s_i that ContextPool predicts for each character",
                       "support size s_i (tokens)",
                       cp->s_min,
                       cp->s_max,
                       PLOT_VIRIDIS};
    if (!support)
        map = (TextHeatmap){"weights",
                            "Pooling weights w_j that ContextPool gives each character",
                            "pooling weight w_j",
                            0.0,
                            1.0,
                            PLOT_MAGMA};
    if ((status = plot_figure_open(job)) != 0) return status;
    write_heatmap(job, m, &passage, &map, values);
    return plot_figure_close(job);
}

int plot_support(PlotJob *job) {
    return draw_text_heatmap(job, 1);
}
int plot_weights(PlotJob *job) {
    return draw_text_heatmap(job, 0);
}
