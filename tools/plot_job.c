/* plot_job.c - the helpers every kind of figure shares (plot_job.h): errors, memory that goes
 * with the job, opening and closing the figure, its canvas, colour maps and safe labels. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "plot_job.h"
#include "util.h"

int plot_error(PlotJob *job, int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(job->err, job->err_len, format, args);
    va_end(args);
    return status;
}

void *plot_alloc(PlotJob *job, size_t bytes) {
    if (job->n_owned == PLOT_MAX_OWNED)
        cpool_fail("plot_alloc: more than %d buffers in one figure", PLOT_MAX_OWNED);
    void *p = xcalloc(1, bytes ? bytes : 1);
    job->owned[job->n_owned++] = p;
    return p;
}

void plot_note(PlotJob *job, const char *format, ...) {
    if (!job->report) return;
    va_list args;
    va_start(args, format);
    vfprintf(job->report, format, args);
    va_end(args);
}

int plot_figure_open(PlotJob *job) {
    if (figure_open(&job->fig, job->out_path, job->options.term, job->err, job->err_len) != 0)
        return PLOT_EXIT_DATA;
    job->fig_open = 1;
    return 0;
}

int plot_figure_close(PlotJob *job) {
    job->fig_open = 0;
    if (figure_close(&job->fig, job->err, job->err_len) != 0) return PLOT_EXIT_DATA;
    if (job->options.term == FIGURE_PNG) plot_note(job, "wrote %s\n", job->out_path);
    return 0;
}

static int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

void plot_canvas(PlotJob *job, int width_px, int height_px, int columns, int rows) {
    if (job->options.term == FIGURE_PNG)
        figure_script(&job->fig, "set terminal @terminal size %d,%d\n", width_px, height_px);
    else if (columns > 0)
        figure_script(&job->fig, "set terminal @terminal size %d,%d\n", columns, rows);
    else
        figure_script(&job->fig, "set terminal @terminal size %d,%d\n",
                      clamp_int(width_px / 10, 80, 200), clamp_int(height_px / 20, 24, 60));
}

void plot_palette(PlotJob *job, PlotPalette palette) {
    static const char *const defined[] = {
        /* viridis and magma (matplotlib's), sampled at five points */
        [PLOT_VIRIDIS] = "set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', "
                         "3 '#5ec962', 4 '#fde725')\n",
        [PLOT_MAGMA] = "set palette defined (0 '#000004', 1 '#51127c', 2 '#b73779', "
                       "3 '#fc8961', 4 '#fcfdbf')\n",
        [PLOT_GREY] = "set palette grey\n",
    };
    figure_script(&job->fig, "%s", defined[palette]);
}

const char *plot_heatmap(PlotJob *job, double low, double high, int log_scale) {
    if (job->options.term == FIGURE_PNG) return "using 1:2:3 with image";
    /* shade(v): character 1 + floor(10 t) of the ramp, t = v's place in [low, high] */
    if (log_scale)
        figure_script(&job->fig, "shade_t(v) = (log10(v) - log10(%g)) / (log10(%g) - log10(%g))\n",
                      low, high, low);
    else
        figure_script(&job->fig, "shade_t(v) = (v - %g) / (%g - %g)\n", low, high, low);
    figure_script(&job->fig,
                  "shade_k(v) = 1 + floor(9.999 * (shade_t(v) < 0 ? 0 : shade_t(v) > 1 ? 1 : "
                  "shade_t(v)))\n"
                  "shade(v) = substr(\" .:-=+*#%%@\", shade_k(v), shade_k(v))\n"
                  "set datafile missing 'NaN'\n" /* blank: `with labels` would print "NaN" */
                  "set label 99 'shades from %g to %g%s: \" .:-=+*#%%@\"' at screen 0, screen 0 "
                  "left front\n",
                  low, high, log_scale ? " (log scale)" : "");
    return "using 1:2:(shade($3)) with labels";
}

const char *plot_colour(int i) {
    static const char *const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                          "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    return colours[i % 8];
}

char *plot_literal(const PlotJob *job, const char *text, char *out, size_t out_len) {
    int enhanced = job->options.term == FIGURE_PNG; /* the text preview is plain */
    size_t k = 0;
    for (const char *c = text; *c && k + 4 < out_len; c++) {
        if (*c == '\'')
            out[k++] = '\'';
        else if (enhanced && strchr("^_@&~{}\\", *c))
            out[k++] = '\\';
        out[k++] = *c;
    }
    out[k] = '\0';
    return out;
}

void plot_title(PlotJob *job, const char *command, const char *title, const char *subtitle) {
    char literal[1200];
    plot_literal(job, subtitle, literal, sizeof literal);
    int png = job->options.term == FIGURE_PNG;
    figure_script(&job->fig, "%s '%s'.\"\\n\".'%s%s%s' font ',15'\n", command, title,
                  png ? "{/*0.8 " : "", literal, png ? "}" : "");
}

char *plot_stem(const char *path, char *out, size_t out_len) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    int n = dot && dot != name ? (int)(dot - name) : (int)strlen(name);
    snprintf(out, out_len, "%.*s", n, name);
    return out;
}
