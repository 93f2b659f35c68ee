/* cmd_synth.c - `cpool synth`: train the synthetic task whose right support sizes are known,
 * print what the model learned and draw it.
 *
 *     cpool synth [--steps N] [--seed S] [--out FILE.png] [--term png|dumb] [--help]
 *
 * The task, the model and the measures are in synth.h; docs/synthetic.md explains them and shows
 * the figure. This file is the command line: arguments, the printed summary and the figure.
 * Exit status: 0 done, 1 the figure could not be written (or the run failed), 2 a usage error. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "gnuplot.h"
#include "synth.h"
#include "util.h"

enum { SYNTH_EXIT_FIGURE = 1, SYNTH_EXIT_USAGE = 2 };

typedef struct SynthOptions {
    long steps; /* 0: the default config's */
    unsigned long long seed;
    int seed_given;
    const char *out; /* the PNG (with --term dumb: where the script and data go) */
    FigureTerm term;
    int help;
} SynthOptions;

static void synth_usage(FILE *out) {
    SynthConfig c = synth_default_config();
    fprintf(out,
            "usage: cpool synth [--steps N] [--seed S] [--out FILE.png] [--term png|dumb]\n"
            "\n"
            "Train a one-block ContextPool model on a task whose right support sizes are\n"
            "known (docs/synthetic.md). Sequences of %d tokens are cut into segments; each\n"
            "segment has a window width W in {",
            c.len);
    for (int k = 0; k < c.n_widths; k++) fprintf(out, "%s%g", k ? ", " : "", c.widths[k]);
    fprintf(out,
            "} tokens, shown on all its tokens. The target\n"
            "is the Gaussian moving average of the tokens' random values with the segment's\n"
            "width, which the layer computes exactly when its support size s_i equals W_i.\n"
            "Then print the Pearson correlation between W and the learned s on held-out\n"
            "sequences and the mean s per width, and draw them.\n"
            "\n"
            "  --steps N      training steps (default %ld; about 10 ms each in float32)\n"
            "  --seed S       seed of the initialisation and the data (default %llu)\n"
            "  --out FILE.png the figure (default synthetic.png); its gnuplot script FILE.gp\n"
            "                 and data FILE.*.dat are kept beside it\n"
            "  --term dumb    draw the figure as text on standard output instead (the script\n"
            "                 and data still go beside --out)\n"
            "\n"
            "exit status: 0 done, 1 the figure could not be written, 2 a usage error.\n",
            c.steps, (unsigned long long)c.seed);
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                  */

static int usage_error(char *err, size_t err_len, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_error(char *err, size_t err_len, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_len, format, args);
    va_end(args);
    return SYNTH_EXIT_USAGE;
}

/* text as a decimal integer in [0, max]: 0, or -1 (junk, a sign, out of range). */
static int parse_integer(const char *text, unsigned long long max, unsigned long long *value) {
    char *end = NULL;
    errno = 0;
    *value = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || text[0] == '+' || errno == ERANGE ||
        *value > max)
        return -1;
    return 0;
}

static int parse_option(SynthOptions *o, const char *option, const char *value, char *err,
                        size_t err_len) {
    unsigned long long number;
    if (strcmp(option, "--steps") == 0) {
        if (o->steps) return usage_error(err, err_len, "--steps given twice");
        if (parse_integer(value, 100000000, &number) != 0 || number == 0)
            return usage_error(err, err_len, "--steps '%s' must be an integer in [1, 1e8]", value);
        o->steps = (long)number;
    } else if (strcmp(option, "--seed") == 0) {
        if (o->seed_given) return usage_error(err, err_len, "--seed given twice");
        if (parse_integer(value, ~0ULL, &number) != 0)
            return usage_error(err, err_len, "--seed '%s' must be a non-negative integer", value);
        o->seed = number, o->seed_given = 1;
    } else if (strcmp(option, "--out") == 0) {
        size_t n = strlen(value);
        if (n < 5 || strcmp(value + n - 4, ".png") != 0)
            return usage_error(err, err_len, "--out '%s' must name a .png file", value);
        o->out = value;
    } else { /* --term */
        if (strcmp(value, "png") != 0 && strcmp(value, "dumb") != 0)
            return usage_error(err, err_len, "--term '%s': png or dumb", value);
        o->term = strcmp(value, "dumb") == 0 ? FIGURE_DUMB : FIGURE_PNG;
    }
    return 0;
}

/* argv[0] is the command name. 0, or SYNTH_EXIT_USAGE with the reason in err. */
static int synth_parse_arguments(int argc, char **argv, SynthOptions *o, char *err,
                                 size_t err_len) {
    *o = (SynthOptions){.out = "synthetic.png", .term = FIGURE_PNG};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            o->help = 1;
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0)
            return usage_error(err, err_len, "unexpected argument '%s' (see cpool synth --help)",
                               arg);
        const char *known[] = {"--steps", "--seed", "--out", "--term"};
        int is_known = 0;
        for (int k = 0; k < 4; k++) is_known |= strcmp(arg, known[k]) == 0;
        if (!is_known)
            return usage_error(err, err_len, "unknown option '%s' (see cpool synth --help)", arg);
        if (i + 1 >= argc)
            return usage_error(err, err_len, "%s needs a value (see cpool synth --help)", arg);
        int status = parse_option(o, arg, argv[++i], err, err_len);
        if (status) return status;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The summary                                                                                */

static void synth_print_config(FILE *out, const SynthConfig *c) {
    fprintf(out, "synthetic task: widths W in {");
    for (int k = 0; k < c->n_widths; k++) fprintf(out, "%s%g", k ? ", " : "", c->widths[k]);
    fprintf(out,
            "} tokens, segments of %d..%d tokens; %d sequences of %d tokens per step\n"
            "model: one ContextPool layer, dim %d, s in (0.5, %g), radius %d; %ld AdamW steps, "
            "lr %g; seed %llu; %s\n",
            c->segment_min, c->segment_max, c->batch, c->len, c->dim, c->s_max, synth_radius(c),
            c->steps, c->lr, (unsigned long long)c->seed, REAL_NAME);
}

static void synth_print_result(FILE *out, const SynthConfig *c, const SynthResult *r) {
    long n = (long)r->eval.batch * r->eval.len;
    double w_mean = 0, w_square = 0;
    for (long i = 0; i < n; i++) w_mean += r->weight[i], w_square += r->weight[i] * r->weight[i];
    w_mean /= n;
    double w_var = w_square / n - w_mean * w_mean;
    fprintf(out,
            "held-out set: %d sequences, %ld tokens (trained in %.1f s)\n"
            "  normalised squared error %.6f   (predicting 0: 1; the best single s for every "
            "token, s = %.1f: %.4f)\n"
            "  Pearson r(true W, learned s) = %.5f   (before training: %.2f)\n"
            "  true W (tokens)   learned s: mean     std   tokens\n",
            r->eval.batch, n, r->seconds, r->eval_loss, r->fixed_support, r->fixed_loss,
            r->correlation, r->initial_correlation);
    for (int k = 0; k < c->n_widths; k++)
        fprintf(out, "  %15g   %15.3f %7.3f %8ld\n", c->widths[k], r->mean_support[k],
                r->std_support[k], r->count[k]);
    fprintf(out, "  pooling weights w: mean %.3f, std %.3f (the target weighs tokens equally)\n",
            w_mean, w_var > 0 ? sqrt(w_var) : 0);
}

/* ------------------------------------------------------------------------------------------ */
/* The figure                                                                                 */

/* The held-out sequence showing the most different widths (the first such): the trace panel. */
static int most_varied_sequence(const SynthConfig *c, const SynthResult *r) {
    int best = 0, best_count = -1;
    for (int b = 0; b < r->eval.batch; b++) {
        int seen[SYNTH_MAX_WIDTHS] = {0}, count = 0;
        for (int i = 0; i < r->eval.len; i++) seen[r->eval.width_class[b * r->eval.len + i]] = 1;
        for (int k = 0; k < c->n_widths; k++) count += seen[k];
        if (count > best_count) best = b, best_count = count;
    }
    return best;
}

/* tokens: W jittered (times 2^u, u uniform in +-0.15, so that a width's tokens form a column on
 * the log axis), s after training, W, s before training.
 * means: W, mean s, std s.  trace: position, W, s after, s before (one sequence). */
static void write_figure_data(Figure *fig, const SynthConfig *c, const SynthResult *r) {
    Rng jitter;
    rng_seed(&jitter, 12345);
    FILE *tokens = figure_data(fig, "tokens");
    long n = (long)r->eval.batch * r->eval.len;
    for (long i = 0; i < n; i++)
        fprintf(tokens, "%.5g %.6g %g %.6g\n",
                r->eval.width[i] * exp2(rng_range(&jitter, -.15, .15)), r->support[i],
                r->eval.width[i], r->initial_support[i]);
    FILE *means = figure_data(fig, "means");
    for (int k = 0; k < c->n_widths; k++)
        if (r->count[k])
            fprintf(means, "%g %.6g %.6g\n", c->widths[k], r->mean_support[k], r->std_support[k]);
    FILE *trace = figure_data(fig, "trace");
    int b = most_varied_sequence(c, r);
    for (int i = 0; i < r->eval.len; i++) {
        long at = (long)b * r->eval.len + i;
        fprintf(trace, "%d %g %.6g %.6g\n", i, r->eval.width[at], r->support[at],
                r->initial_support[at]);
    }
}

/* Left: every held-out token, s against its true width on log-2 axes, before and after. */
static void write_scatter_panel(Figure *fig, const SynthConfig *c, const SynthResult *r) {
    double low = c->widths[0], high = c->widths[0];
    for (int k = 0; k < c->n_widths; k++) {
        if (c->widths[k] < low) low = c->widths[k];
        if (c->widths[k] > high) high = c->widths[k];
    }
    figure_script(fig,
                  "set title 'every held-out token: learned s against the true width'\n"
                  "set logscale xy 2\n"
                  "set xrange [%g:%g]\nset yrange [0.4:%g]\n"
                  "set xtics (",
                  low / 1.6, high * 1.6, c->s_max * 1.6);
    for (int k = 0; k < c->n_widths; k++)
        figure_script(fig, "%s'%g' %g", k ? ", " : "", c->widths[k], c->widths[k]);
    figure_script(
        fig,
        ")\nset ytics (0.5, 1, 2, 4, 8, 16, 32, 64)\n"
        "set xlabel 'true window width W (tokens)'\n"
        "set ylabel 'learned support size s (tokens)'\n"
        "set grid\nset key top left box opaque samplen 2\n"
        "plot x with lines dashtype 2 linecolor rgb 'black' title 'ideal: s = W', \\\n"
        /* the tokens as small dots; NaN rows only draw their key entries, with larger dots */
        "     '%s' using 1:4 with points pointtype 7 pointsize 0.3 linecolor rgb '#b0808080' "
        "notitle, \\\n"
        "     NaN with points pointtype 7 pointsize 1 linecolor rgb '#808080' "
        "title 'a token before training (r = %.2f)', \\\n"
        "     '%s' using 1:2 with points pointtype 7 pointsize 0.3 linecolor rgb '#a01f77b4' "
        "notitle, \\\n"
        "     NaN with points pointtype 7 pointsize 1 linecolor rgb '#1f77b4' "
        "title 'a token after %ld steps (r = %.5f)', \\\n"
        "     '%s' using 1:2:3 with yerrorbars pointtype 5 pointsize 1.1 linewidth 1.5 "
        "linecolor rgb '#d62728' title 'mean ± std per width'\n",
        figure_data_path(fig, "tokens"), r->initial_correlation, figure_data_path(fig, "tokens"),
        c->steps, r->correlation, figure_data_path(fig, "means"));
}

/* Right: one held-out sequence, the true width as steps and s along it. */
static void write_trace_panel(Figure *fig, const SynthConfig *c, const SynthResult *r) {
    figure_script(fig,
                  "unset logscale\nset title 'one held-out sequence, token by token'\n"
                  "set xrange [0:%d]\nset yrange [0:%g]\nset xtics auto\nset ytics auto\n"
                  "set xlabel 'token position i'\nset ylabel 'support size (tokens)'\n"
                  "set key top left box opaque samplen 2\n"
                  "plot '%s' using 1:2 with steps linewidth 4 linecolor rgb '#a0000000' "
                  "title 'true width W_i', \\\n"
                  "     '%s' using 1:4 with lines linewidth 1 dashtype 3 "
                  "linecolor rgb '#606060' title 's_i before training', \\\n"
                  "     '%s' using 1:3 with lines linewidth 1.5 linecolor rgb '#d62728' "
                  "title 's_i after training'\n",
                  r->eval.len - 1, c->s_max * 1.15, figure_data_path(fig, "trace"),
                  figure_data_path(fig, "trace"), figure_data_path(fig, "trace"));
}

static void write_figure_script(Figure *fig, const SynthConfig *c, const SynthResult *r) {
    if (fig->term == FIGURE_PNG) figure_script(fig, "set terminal @terminal size 1500,650\n");
    figure_script(fig,
                  "set multiplot layout 1,2 title \"Synthetic task: a one-block ContextPool model "
                  "learns the support size each token needs\\n{/*0.85 Pearson r(true width, "
                  "learned s) = %.5f over %ld held-out tokens;   normalised squared error %.2g "
                  "(one s for every token, at best: %.2g)}\"\n",
                  r->correlation, (long)r->eval.batch * r->eval.len, r->eval_loss, r->fixed_loss);
    write_scatter_panel(fig, c, r);
    write_trace_panel(fig, c, r);
    figure_script(fig, "unset multiplot\n");
}

/* The figure being written, for the cpool_try around its data and script. */
typedef struct FigureWrite {
    Figure fig;
    const SynthConfig *config;
    const SynthResult *result;
} FigureWrite;

static void write_figure_files(void *arg) {
    FigureWrite *write = arg;
    write_figure_data(&write->fig, write->config, write->result);
    write_figure_script(&write->fig, write->config, write->result);
}

/* The figure for a finished run: 0, or -1 with the reason in err and nothing left behind. */
static int synth_write_figure(const char *out_path, FigureTerm term, const SynthConfig *c,
                              const SynthResult *r, char *err, size_t err_len) {
    FigureWrite write = {.config = c, .result = r};
    if (figure_open(&write.fig, out_path, term, err, err_len) != 0) return -1;
    if (cpool_try(write_figure_files, &write, err, err_len) != 0) {
        figure_abort(&write.fig);
        return -1;
    }
    return figure_close(&write.fig, err, err_len);
}

/* What one run owns, reachable after a cpool_fail() inside it (cpool_try). */
typedef struct SynthJob {
    const SynthOptions *options;
    SynthConfig config;
    SynthResult result;
    int trained;
    int status; /* 0, or SYNTH_EXIT_FIGURE with err set */
    char err[1024];
} SynthJob;

static void synth_steps(void *arg) {
    SynthJob *job = arg;
    SynthConfig *config = &job->config;
    synth_print_config(stdout, config);
    fflush(stdout);
    Progress progress;
    progress_init(&progress, stderr, "tok", 0, config->steps,
                  config->steps >= 10 ? (int)(config->steps / 10) : 1);
    job->trained = 1; /* synth_train fills the result's buffers as it goes */
    synth_train(config, &progress, &job->result);
    progress_finish(&progress);
    synth_print_result(stdout, config, &job->result);
    fflush(stdout);
    const SynthOptions *o = job->options;
    if (synth_write_figure(o->out, o->term, config, &job->result, job->err, sizeof job->err) != 0) {
        job->status = SYNTH_EXIT_FIGURE;
        return;
    }
    if (o->term == FIGURE_PNG)
        printf("figure: %s (redraw: gnuplot %.*s.gp)\n", o->out, (int)strlen(o->out) - 4, o->out);
}

/* ------------------------------------------------------------------------------------------ */

int cmd_synth(int argc, char **argv) {
    SynthOptions options;
    char err[1024];
    if (synth_parse_arguments(argc, argv, &options, err, sizeof err) != 0) {
        fprintf(stderr, "cpool synth: %s\n", err);
        return SYNTH_EXIT_USAGE;
    }
    if (options.help) {
        synth_usage(stdout);
        return 0;
    }
    if (figure_check_out(options.out, err, sizeof err) != 0) { /* before training, not after */
        fprintf(stderr, "cpool synth: %s\n", err);
        return SYNTH_EXIT_FIGURE;
    }
    /* The model is small (16 x 256 tokens of 16 features a step): OpenMP's threads cost more
     * than they save (3x slower with 2 threads on our busy 2-core machine), so one thread
     * unless OMP_NUM_THREADS asks for more. The numbers are the same bits either way. */
    if (!getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
    SynthJob *job = xcalloc(1, sizeof *job);
    job->options = &options;
    job->config = synth_default_config();
    if (options.steps) job->config.steps = options.steps;
    if (options.seed_given) job->config.seed = options.seed;
    int status;
    if (cpool_try(synth_steps, job, err, sizeof err) != 0) {
        fprintf(stderr, "cpool synth: %s\n", err);
        status = SYNTH_EXIT_FIGURE;
    } else if ((status = job->status) != 0) {
        fprintf(stderr, "cpool synth: %s\n", job->err);
    }
    if (job->trained) synth_result_free(&job->result);
    free(job);
    return status;
}
