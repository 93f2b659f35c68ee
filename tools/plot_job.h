/* plot_job.h - what every kind of figure shares: the options, the figure being written, the
 * checkpoints loaded, and the one way out on an error (internal to cmd_plot.c and plot_*.c).
 *
 * A kind is a function int draw(PlotJob *job) that returns an exit status: 0, PLOT_EXIT_DATA
 * (a file, a checkpoint that does not fit the figure) or PLOT_EXIT_USAGE (the command line), with
 * one line in job->err. Everything it allocates hangs off the job (plot_alloc, job->tape,
 * job->models), so cmd_plot.c frees it all, also after a cpool_fail() deep inside the model,
 * which cpool_try() unwinds back there.
 *
 *     static int draw_example(PlotJob *job) {
 *         PlotModel *m = &job->models[0];
 *         int status = plot_load_model(job, m, job->options.ckpt);
 *         if (status) return status;
 *         ... run it, keep numbers in plot_alloc'd arrays ...
 *         if ((status = plot_figure_open(job)) != 0) return status;
 *         FILE *data = figure_data(&job->fig, "values");
 *         ... write data, then the script with figure_script(&job->fig, ...) ...
 *         return plot_figure_close(job);
 *     }
 */
#ifndef CPOOL_PLOT_JOB_H
#define CPOOL_PLOT_JOB_H

#include <stdio.h>

#include "gnuplot.h"
#include "model.h"
#include "run.h"
#include "run_config.h"
#include "split.h"
#include "tape.h"

enum { PLOT_EXIT_DATA = 1, PLOT_EXIT_USAGE = 2 };

#define PLOT_MAX_CSV   FIGURE_MAX_DATA
#define PLOT_MAX_OWNED 64

/* The command line, parsed (cmd_plot.c says which kinds take which option). */
typedef struct PlotOptions {
    const char *out;               /* --out FILE.png */
    FigureTerm term;               /* --term png | dumb */
    const char *ckpt, *compare;    /* --ckpt C, --compare C2 */
    const char *text;              /* --text "passage" */
    const char *data;              /* --data FILE or DIR */
    long offset;                   /* --offset K: the passage's first byte in --data */
    int length;                    /* --length N: its bytes; 0 = the kind's default */
    int images;                    /* --images K */
    DataSplit split;               /* --split */
    int split_given;               /* 0: the kind's default split */
    int layer, head;               /* --layer L --head H (0-based) */
    const char *csv[PLOT_MAX_CSV]; /* --csv FILE[:label], repeatable */
    int n_csv;
    const char *metric; /* --metric, NULL = the kind's default */
    const char *x_axis; /* --x tokens | step | time */
    int max_n, dim;     /* --max-n, --dim (cost) */
    long tokens;        /* --tokens: how many s values the histogram counts */
} PlotOptions;

/* A checkpoint, loaded: the run's config and the model with the saved parameters. */
typedef struct PlotModel {
    const char *path;
    RunConfig run;
    Model model;
    int built; /* model_init done: model_free needed */
    long step; /* training steps the checkpoint had done */
} PlotModel;

typedef struct PlotJob {
    PlotOptions options;
    const char *kind;              /* "support", "curves", ... */
    int (*draw)(struct PlotJob *); /* the kind's function */
    const char *out_path;          /* --out, or a file in temp_dir for a preview without --out */
    char temp_dir[64];             /* "" or the directory made for such a preview */
    Figure fig;
    int fig_open;        /* figure_open done, figure_close not yet */
    PlotModel models[2]; /* --ckpt, --compare */
    Tape *tape;          /* for the forward passes, no_grad */
    RunData data;        /* the dataset, when a kind reads one (plot_load_data) */
    int data_loaded;
    void *owned[PLOT_MAX_OWNED];
    int n_owned;
    FILE *report; /* tables and notes, or NULL */
    char *err;
    size_t err_len;
    int status;      /* what the kind's draw returned */
    int fail_status; /* the exit status a cpool_fail() means now */
} PlotJob;

/* plot_job.c ------------------------------------------------------------------------------- */

/* One line into job->err; returns status. */
int plot_error(PlotJob *job, int status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Zeroed memory freed with the job. */
void *plot_alloc(PlotJob *job, size_t bytes);
/* A note for the reader (on job->report, when there is one). */
void plot_note(PlotJob *job, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* figure_open on job->out_path with the chosen terminal; figure_close. */
int plot_figure_open(PlotJob *job);
int plot_figure_close(PlotJob *job);
/* The canvas: in pixels for a PNG, in characters for the text preview (0, 0: the pixels scaled
 * down, a character being about 10 x 20 pixels). */
void plot_canvas(PlotJob *job, int width_px, int height_px, int columns, int rows);

/* Colour maps for `with image`: perceptually uniform ones for values, grey for pictures. */
typedef enum PlotPalette { PLOT_VIRIDIS, PLOT_MAGMA, PLOT_GREY } PlotPalette;
void plot_palette(PlotJob *job, PlotPalette palette);

/* How a heatmap's cells are drawn, after `plot 'file'`: "using 1:2:3 with image" in a PNG; in
 * the text preview, where images do not show, one character per cell from the ramp " .:-=+*#%@"
 * (low to high over [low, high], on a log scale when log_scale), with the function that picks it
 * defined in the script first. Set cbrange and the palette as usual for the PNG. */
const char *plot_heatmap(PlotJob *job, double low, double high, int log_scale);
/* A distinct colour for series i (runs, layers): "#1f77b4", ... */
const char *plot_colour(int i);
/* text made safe inside a single-quoted gnuplot string: quotes doubled and, for a PNG (whose
 * text is enhanced), ^ _ @ & ~ { } \ taken literally. Into out; returns out. */
char *plot_literal(const PlotJob *job, const char *text, char *out, size_t out_len);
/* `COMMAND 'title'."\n".'subtitle' font ',15'`, COMMAND being "set title" or "set multiplot
 * layout R,C title": our title (enhanced text) over a smaller line of plain text (literal). */
void plot_title(PlotJob *job, const char *command, const char *title, const char *subtitle);
/* The last path component without its extension ("runs/kjv/loss.csv" -> "loss"). */
char *plot_stem(const char *path, char *out, size_t out_len);

/* plot_model.c ----------------------------------------------------------------------------- */

/* Read the checkpoint's config, build its model and load the parameters. */
int plot_load_model(PlotJob *job, PlotModel *m, const char *path);
/* PLOT_EXIT_DATA with "C: the model has pool=none: no NOUN to plot" unless it has ContextPool. */
int plot_require_pool(PlotJob *job, const PlotModel *m, const char *noun);
/* PLOT_EXIT_DATA unless the model is of kind `kind` (for_what names the figure). */
int plot_require_kind(PlotJob *job, const PlotModel *m, ModelKind kind, const char *for_what);
/* One forward pass under no_grad; aux receives what every layer computed (job->tape's arena,
 * valid until the next call). tokens (batch, len) for a charlm, images (B, 1, 28, 28) else. */
Tensor *plot_forward(PlotJob *job, const PlotModel *m, const int *tokens, int batch, int len,
                     Tensor *images, ModelAux *aux);
/* The model's dataset: --data, or the checkpoint's data key, into job->data. */
int plot_load_data(PlotJob *job, const PlotModel *m);
/* Images indices[0..n-1] of the split (job->data) as a batch (n, 1, 28, 28) of pixels in
 * [0, 1], freed with the job. */
Tensor *plot_image_batch(PlotJob *job, DataSplit split, const int *indices, int n);
/* Refill such a batch with n images (n at most the n it was made with). */
void plot_image_fill(PlotJob *job, Tensor *batch, DataSplit split, const int *indices, int n);
/* How many pools a model has: its blocks (charlm, vit) or its two pooling stages (cnn). */
int plot_pool_count(const PlotModel *m);
/* "layer 0", or for a cnn "pool 0 (28x28 -> 14x14)". */
char *plot_pool_name(const PlotModel *m, int index, char *out, size_t out_len);
/* "checkpoint.safetensors (charlm, 2 layers, step 1200)" for titles (plain text). */
char *plot_model_caption(const PlotModel *m, char *out, size_t out_len);

/* plot_text.c: the passage a text figure reads -------------------------------------------- */

typedef struct PlotPassage {
    unsigned char *bytes; /* plot_alloc'd */
    int length;
    char source[256]; /* "a KJV verse (Genesis 1:1-2)", "data/kjv.txt bytes 1000..1099" */
} PlotPassage;
/* --text; or --length bytes of --data from --offset; or the default verse (cut at a word to
 * --length, or to max_len). Never more than the model's seq_len: a longer passage asked for is
 * a usage error, the default verse is cut to fit. */
int plot_passage(PlotJob *job, const PlotModel *m, int max_len, PlotPassage *passage);
/* Byte c as a readable tic label, inside a single-quoted gnuplot string: in a PNG a space is an
 * open box, a newline an arrow (UTF-8); the text preview keeps to ASCII ('_' for a space). */
const char *plot_char_label(unsigned char c, FigureTerm term, char *out, size_t out_len);
/* What plot_char_label shows for a space, for axis labels. */
const char *plot_space_symbol(FigureTerm term);
/* set xtics with one label per character of the passage (the characters readable along x). */
void plot_char_tics(PlotJob *job, const char *axis, const PlotPassage *passage);

/* The kinds ---------------------------------------------------------------------------------- */
int plot_support(PlotJob *job);       /* plot_text.c */
int plot_weights(PlotJob *job);       /* plot_text.c */
int plot_image_support(PlotJob *job); /* plot_image.c */
int plot_attention(PlotJob *job);     /* plot_attention.c */
int plot_curves(PlotJob *job);        /* plot_curves.c */
int plot_cost(PlotJob *job);          /* plot_cost.c */
int plot_hist(PlotJob *job);          /* plot_hist.c */

#endif
