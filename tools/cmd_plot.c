/* cmd_plot.c - `cpool plot KIND [options] --out FILE.png [--term dumb]`: the figures.
 *
 *     cpool plot support --ckpt runs/kjv/checkpoint.safetensors --out support.png
 *     cpool plot curves --csv runs/a/loss.csv:baseline --csv runs/b/loss.csv:contextpool \
 *                       --out curves.png
 *     cpool plot cost --term dumb                      # a text preview, no PNG
 *
 * Every kind is a function in a tools/plot_*.c file (plot_job.h); this file holds the table of
 * kinds and of options, the help, and the argument parsing. plot_run() takes argv and returns
 * the exit status with the error as one line (tests call it directly): 2 for the command line,
 * 1 for the data (a missing file, a checkpoint without the layer the figure shows). A
 * cpool_fail() deep inside a model comes back here through cpool_try, like cmd_lab.c's. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "plot_job.h"
#include "plots.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------ */
/* Options and kinds                                                                          */

enum {
    OPT_CKPT = 1 << 0,
    OPT_COMPARE = 1 << 1,
    OPT_TEXT = 1 << 2,
    OPT_DATA = 1 << 3,
    OPT_OFFSET = 1 << 4,
    OPT_LENGTH = 1 << 5,
    OPT_IMAGES = 1 << 6,
    OPT_SPLIT = 1 << 7,
    OPT_LAYER = 1 << 8,
    OPT_HEAD = 1 << 9,
    OPT_CSV = 1 << 10,
    OPT_METRIC = 1 << 11,
    OPT_X = 1 << 12,
    OPT_MAX_N = 1 << 13,
    OPT_DIM = 1 << 14,
    OPT_TOKENS = 1 << 15,
};

typedef struct PlotOption {
    const char *name;  /* "--ckpt" */
    unsigned flag;     /* OPT_... */
    const char *value; /* its value's name in the help */
    const char *help;
} PlotOption;

static const PlotOption plot_option_table[] = {
    {"--ckpt", OPT_CKPT, "C", "the checkpoint (written by cpool train)"},
    {"--compare", OPT_COMPARE, "C2", "a second checkpoint, drawn beside the first"},
    {"--text", OPT_TEXT, "\"passage\"", "the passage to read (default: a KJV verse)"},
    {"--data", OPT_DATA, "PATH",
     "a text file (charlm) or the Fashion-MNIST directory (vit, cnn); default: the "
     "checkpoint's data key"},
    {"--offset", OPT_OFFSET, "K", "the passage starts at byte K of --data [0]"},
    {"--length", OPT_LENGTH, "N",
     "the passage's length in bytes [110; attention 64; at most the model's seq_len]"},
    {"--images", OPT_IMAGES, "K", "how many images, one row each [4]"},
    {"--split", OPT_SPLIT, "S", "train, valid or test: where the examples come from"},
    {"--layer", OPT_LAYER, "L", "the layer (block) to show, from 0 [0]"},
    {"--head", OPT_HEAD, "H", "the attention head, from 0 [0]"},
    {"--csv", OPT_CSV, "FILE[:label]", "a run's loss.csv (repeat for more runs, up to 16)"},
    {"--metric", OPT_METRIC, "M",
     "train_loss, valid_loss, train_bpc, valid_bpc or valid_accuracy [train_bpc and "
     "valid_bpc, or valid_accuracy]"},
    {"--x", OPT_X, "X", "the x axis: tokens, step or time [tokens]"},
    {"--max-n", OPT_MAX_N, "N", "the longest sequence measured, a power of 2 >= 128 [8192]"},
    {"--dim", OPT_DIM, "D", "feature width of the measured layers [64]"},
    {"--tokens", OPT_TOKENS, "K", "how many support sizes to count [4096]"},
};
enum { N_PLOT_OPTIONS = sizeof plot_option_table / sizeof plot_option_table[0] };

typedef struct PlotKind {
    const char *name;
    int (*draw)(PlotJob *job);
    unsigned takes, requires; /* OPT_ flags */
    const char *summary;
    const char *reading; /* what the figure shows, for --help */
} PlotKind;

static const PlotKind plot_kinds[] = {
    {"support", plot_support, OPT_CKPT | OPT_TEXT | OPT_DATA | OPT_OFFSET | OPT_LENGTH, OPT_CKPT,
     "support sizes s_i over a passage, a row per layer (charlm with ContextPool)",
     "Each character of the passage is a cell coloured by the support size s_i its layer's\n"
     "ContextPool predicted there: the standard deviation, in tokens, of the Gaussian window\n"
     "the pooled feature i averages over. The characters run along the x axis."},
    {"weights", plot_weights, OPT_CKPT | OPT_TEXT | OPT_DATA | OPT_OFFSET | OPT_LENGTH, OPT_CKPT,
     "pooling weights w_j over a passage, a row per layer (charlm with ContextPool)",
     "Like support, coloured by the pooling weight w_j in (0, 1): how much token j counts in\n"
     "every window that covers it."},
    {"image-support", plot_image_support, OPT_CKPT | OPT_DATA | OPT_IMAGES | OPT_SPLIT, OPT_CKPT,
     "Fashion-MNIST images beside their maps of s and w (vit or cnn with ContextPool)",
     "One row per image: the image, then for each layer (vit) or pooling stage (cnn) the map\n"
     "of support sizes s (in tokens of the layer's grid) and of pooling weights w."},
    {"attention", plot_attention,
     OPT_CKPT | OPT_COMPARE | OPT_TEXT | OPT_DATA | OPT_OFFSET | OPT_LENGTH | OPT_LAYER | OPT_HEAD,
     OPT_CKPT,
     "attention probabilities of a layer and head over a passage; --compare: two side by side",
     "Row i is query i's attention: the probability it gives each key j (a causal model\n"
     "leaves everything right of the diagonal empty)."},
    {"curves", plot_curves, OPT_CSV | OPT_METRIC | OPT_X, OPT_CSV,
     "training curves of several runs on one plot (their loss.csv files)",
     "One colour per run. By default a char-LM run shows its training loss in bits per\n"
     "character (thin) and its validation bpc (points); an image run its validation accuracy."},
    {"cost", plot_cost, OPT_MAX_N | OPT_DIM, 0,
     "measured time and memory of ContextPool and of attention for N = 128 .. max-n",
     "Forward + backward of op_contextpool1d and of an attention layer on one sequence of N\n"
     "tokens (B = 1), timed here and now; memory is the tape arena's peak. Log-log axes: a\n"
     "slope of 1 is linear cost, 2 quadratic. The table is printed too."},
    {"hist", plot_hist, OPT_CKPT | OPT_DATA | OPT_SPLIT | OPT_TOKENS, OPT_CKPT,
     "histogram of the support sizes s per layer, over validation text (or test images)",
     "How often each support size occurs, one colour per layer (pooling stage), over the first\n"
     "--tokens positions of the split."},
};
enum { N_PLOT_KINDS = sizeof plot_kinds / sizeof plot_kinds[0] };

static const PlotKind *find_kind(const char *name) {
    for (int k = 0; k < N_PLOT_KINDS; k++)
        if (strcmp(plot_kinds[k].name, name) == 0) return &plot_kinds[k];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Help                                                                                       */

static void print_kind_usage(FILE *out, const PlotKind *kind) {
    fprintf(out, "  cpool plot %s", kind->name);
    for (int i = 0; i < N_PLOT_OPTIONS; i++) {
        const PlotOption *o = &plot_option_table[i];
        if (!(kind->takes & o->flag)) continue;
        const char *open = kind->requires & o->flag ? "" : "[";
        fprintf(out, " %s%s %s%s", open, o->name, o->value, *open ? "]" : "");
    }
    fprintf(out, " --out FILE.png\n");
}

static void usage(FILE *out, const PlotKind *only) {
    fprintf(out, "usage: cpool plot KIND [options] --out FILE.png [--term dumb]\n\n");
    if (!only) {
        fprintf(out, "Draw a figure with gnuplot. FILE.gp (the script) and FILE.NAME.dat (its\n"
                     "data) are kept beside the PNG, so `gnuplot FILE.gp` redraws it. --term\n"
                     "dumb prints a text preview instead (--out is then optional).\n\nkinds:\n");
        for (int k = 0; k < N_PLOT_KINDS; k++)
            fprintf(out, "  %-14s %s\n", plot_kinds[k].name, plot_kinds[k].summary);
        fprintf(out, "\n`cpool plot KIND --help` gives a kind's options. docs/figures.md shows "
                     "every figure.\n");
    } else {
        print_kind_usage(out, only);
        fprintf(out, "\n%s\n%s\n\noptions:\n", only->summary, only->reading);
        for (int i = 0; i < N_PLOT_OPTIONS; i++) {
            const PlotOption *o = &plot_option_table[i];
            if (only->takes & o->flag)
                fprintf(out, "  %-9s %-13s %s\n", o->name, o->value, o->help);
        }
        fprintf(out, "  %-9s %-13s %s\n  %-9s %-13s %s\n", "--out", "FILE.png",
                "the figure (written atomically; FILE.gp and FILE.*.dat beside it)", "--term",
                "png|dumb", "dumb: a text preview on standard output instead of a PNG");
    }
    fprintf(out, "\nexit status: 0 done, 1 a data error (a file, a checkpoint that does not fit\n"
                 "the figure), 2 a usage error (the command line).\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                  */

static int parse_int(PlotJob *job, const char *option, const char *text, long min, long max,
                     long *value) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min || v > max)
        return plot_error(job, PLOT_EXIT_USAGE, "%s '%s': expected an integer in %ld..%ld", option,
                          text, min, max);
    *value = v;
    return 0;
}

/* A string option's value; given twice is an error. */
static int set_string(PlotJob *job, const char *option, const char **slot, const char *value) {
    if (*slot) return plot_error(job, PLOT_EXIT_USAGE, "%s given twice", option);
    *slot = value;
    return 0;
}

static int set_choice(PlotJob *job, const PlotOption *o, const char *value) {
    PlotOptions *p = &job->options;
    if (o->flag == OPT_SPLIT) {
        if (split_parse(value, &p->split) == 0) return 0;
        return plot_error(job, PLOT_EXIT_USAGE, "--split '%s': expected train, valid or test",
                          value);
    }
    /* OPT_X */
    if (strcmp(value, "tokens") && strcmp(value, "step") && strcmp(value, "time"))
        return plot_error(job, PLOT_EXIT_USAGE, "--x '%s': expected tokens, step or time", value);
    return set_string(job, "--x", &p->x_axis, value);
}

static int set_number(PlotJob *job, const PlotOption *o, const char *value) {
    PlotOptions *p = &job->options;
    long v = 0;
    struct {
        unsigned flag;
        long min, max;
    } ranges[] = {{OPT_OFFSET, 0, LONG_MAX}, {OPT_LENGTH, 1, 4096},
                  {OPT_IMAGES, 1, 16},       {OPT_LAYER, 0, MODEL_MAX_LAYERS - 1},
                  {OPT_HEAD, 0, 1024},       {OPT_MAX_N, 128, 1 << 16},
                  {OPT_DIM, 1, 4096},        {OPT_TOKENS, 1, 1L << 24}};
    int r = 0;
    while (ranges[r].flag != o->flag) r++;
    int status = parse_int(job, o->name, value, ranges[r].min, ranges[r].max, &v);
    if (status) return status;
    switch (o->flag) {
    case OPT_OFFSET:
        p->offset = v;
        break;
    case OPT_LENGTH:
        p->length = (int)v;
        break;
    case OPT_IMAGES:
        p->images = (int)v;
        break;
    case OPT_LAYER:
        p->layer = (int)v;
        break;
    case OPT_HEAD:
        p->head = (int)v;
        break;
    case OPT_MAX_N:
        if (v & (v - 1))
            return plot_error(job, PLOT_EXIT_USAGE, "--max-n %ld: expected a power of 2", v);
        p->max_n = (int)v;
        break;
    case OPT_DIM:
        p->dim = (int)v;
        break;
    default:
        p->tokens = v;
        break;
    }
    return 0;
}

static int set_option(PlotJob *job, const PlotOption *o, const char *value) {
    PlotOptions *p = &job->options;
    switch (o->flag) {
    case OPT_CKPT:
        return set_string(job, o->name, &p->ckpt, value);
    case OPT_COMPARE:
        return set_string(job, o->name, &p->compare, value);
    case OPT_TEXT:
        return set_string(job, o->name, &p->text, value);
    case OPT_DATA:
        return set_string(job, o->name, &p->data, value);
    case OPT_METRIC:
        return set_string(job, o->name, &p->metric, value);
    case OPT_SPLIT:
    case OPT_X:
        return set_choice(job, o, value);
    case OPT_CSV:
        if (p->n_csv == PLOT_MAX_CSV)
            return plot_error(job, PLOT_EXIT_USAGE, "--csv: at most %d runs", PLOT_MAX_CSV);
        p->csv[p->n_csv++] = value;
        return 0;
    default:
        return set_number(job, o, value);
    }
}

/* --out and --term, which every kind takes. 1 if argv[*i] was neither. */
static int parse_common(PlotJob *job, const char *arg, const char *value, int *status) {
    if (strcmp(arg, "--out") == 0) {
        *status = set_string(job, arg, &job->options.out, value);
    } else if (strcmp(arg, "--term") == 0) {
        if (strcmp(value, "png") == 0)
            job->options.term = FIGURE_PNG;
        else if (strcmp(value, "dumb") == 0)
            job->options.term = FIGURE_DUMB;
        else
            *status = plot_error(job, PLOT_EXIT_USAGE, "--term '%s': expected png or dumb", value);
    } else {
        return 1;
    }
    return 0;
}

static int parse_option(PlotJob *job, const PlotKind *kind, int argc, char **argv, int *i) {
    const char *arg = argv[*i];
    if (strncmp(arg, "--", 2) != 0)
        return plot_error(job, PLOT_EXIT_USAGE,
                          "unexpected argument '%s' (see cpool plot %s --help)", arg, kind->name);
    if (*i + 1 >= argc)
        return plot_error(job, PLOT_EXIT_USAGE, "%s needs a value (see cpool plot %s --help)", arg,
                          kind->name);
    const char *value = argv[++*i];
    int status = 0;
    if (parse_common(job, arg, value, &status) == 0) return status;
    for (int k = 0; k < N_PLOT_OPTIONS; k++) {
        const PlotOption *o = &plot_option_table[k];
        if (strcmp(arg, o->name) != 0) continue;
        if (!(kind->takes & o->flag))
            return plot_error(job, PLOT_EXIT_USAGE, "%s does not apply to `cpool plot %s`", arg,
                              kind->name);
        return set_option(job, o, value);
    }
    return plot_error(job, PLOT_EXIT_USAGE, "unknown option '%s' (see cpool plot %s --help)", arg,
                      kind->name);
}

static int parse_arguments(PlotJob *job, const PlotKind *kind, int argc, char **argv) {
    PlotOptions *p = &job->options;
    *p = (PlotOptions){.term = FIGURE_PNG,
                       .split = SPLIT_TEST,
                       .images = 4,
                       .max_n = 8192,
                       .dim = 64,
                       .tokens = 4096};
    for (int i = 2; i < argc; i++) {
        p->split_given |= strcmp(argv[i], "--split") == 0;
        int status = parse_option(job, kind, argc, argv, &i);
        if (status) return status;
    }
    for (int k = 0; k < N_PLOT_OPTIONS; k++) {
        const PlotOption *o = &plot_option_table[k];
        int given = o->flag == OPT_CKPT ? p->ckpt != NULL : o->flag == OPT_CSV ? p->n_csv > 0 : 1;
        if ((kind->requires & o->flag) && !given)
            return plot_error(job, PLOT_EXIT_USAGE, "%s %s is required", o->name, o->value);
    }
    if (!p->out && p->term == FIGURE_PNG)
        return plot_error(job, PLOT_EXIT_USAGE, "--out FILE.png is required (or --term dumb)");
    if (p->offset && !p->data)
        return plot_error(job, PLOT_EXIT_USAGE, "--offset needs --data FILE (the text it is in)");
    if (p->text && (p->data || p->offset || p->length))
        return plot_error(job, PLOT_EXIT_USAGE,
                          "--text excludes --data, --offset and --length (the passage is one or "
                          "the other)");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The job                                                                                    */

/* A preview without --out: the script and data go to a temporary directory, removed after. */
static int make_preview_dir(PlotJob *job) {
    strcpy(job->temp_dir, "/tmp/cpool-plot-XXXXXX");
    if (!mkdtemp(job->temp_dir)) {
        job->temp_dir[0] = '\0';
        return plot_error(job, PLOT_EXIT_DATA, "cannot make a temporary directory: %s",
                          strerror(errno));
    }
    char *path = plot_alloc(job, sizeof job->temp_dir + 32);
    sprintf(path, "%s/%s.png", job->temp_dir, job->kind);
    job->out_path = path;
    return 0;
}

static void remove_preview_dir(const char *dir_path) {
    DIR *dir = opendir(dir_path);
    if (!dir) return;
    char path[512];
    for (struct dirent *d; (d = readdir(dir));) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir_path, d->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(dir_path);
}

static void plot_job_free(PlotJob *job) {
    if (job->fig_open) figure_abort(&job->fig);
    for (int m = 0; m < 2; m++)
        if (job->models[m].built) model_free(&job->models[m].model);
    if (job->tape) tape_free(job->tape);
    if (job->data_loaded) run_data_free(&job->data);
    for (int i = 0; i < job->n_owned; i++) free(job->owned[i]);
    if (job->temp_dir[0]) remove_preview_dir(job->temp_dir);
    free(job);
}

/* Fail before the work (and its notes on stdout), not after it, when --out cannot take the
 * figure. */
static int check_out(PlotJob *job, const char *out_path) {
    char err[1024];
    if (figure_check_out(out_path, err, sizeof err) != 0)
        return plot_error(job, PLOT_EXIT_DATA, "%s", err);
    return 0;
}

static void plot_steps(void *arg) {
    PlotJob *job = arg;
    int status = 0;
    if (job->options.out)
        status = check_out(job, job->out_path = job->options.out);
    else
        status = make_preview_dir(job);
    if (!status) status = job->draw(job);
    job->status = status;
}

/* The figure, with cpool_fail() caught (cpool_try); frees the job. */
static int plot_job_run(PlotJob *job) {
    job->fail_status = PLOT_EXIT_DATA;
    int status;
    if (cpool_try(plot_steps, job, job->err, job->err_len) == 0)
        status = job->status;
    else
        status = job->fail_status;
    plot_job_free(job);
    return status;
}

int plot_run(int argc, char **argv, FILE *report, char *err, size_t err_len) {
    err[0] = '\0';
    const PlotKind *kind = argc >= 2 ? find_kind(argv[1]) : NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(report ? report : stdout, kind);
            return 0;
        }
    if (argc < 2 || argv[1][0] == '-') {
        snprintf(err, err_len, "which figure? (cpool plot KIND ...; see cpool plot --help)");
        return PLOT_EXIT_USAGE;
    }
    if (!kind) {
        char names[256] = "";
        for (int k = 0; k < N_PLOT_KINDS; k++)
            strcat(strcat(names, k ? " " : ""), plot_kinds[k].name);
        snprintf(err, err_len, "unknown figure '%s' (kinds: %s)", argv[1], names);
        return PLOT_EXIT_USAGE;
    }
    PlotJob *job = xcalloc(1, sizeof *job);
    job->kind = kind->name;
    job->draw = kind->draw;
    job->report = report;
    job->err = err;
    job->err_len = err_len;
    int status = parse_arguments(job, kind, argc, argv);
    if (status) {
        plot_job_free(job);
        return status;
    }
    return plot_job_run(job);
}

int cmd_plot(int argc, char **argv) {
    char err[1024];
    int status = plot_run(argc, argv, stdout, err, sizeof err);
    if (status) fprintf(stderr, "cpool plot: %s\n", err);
    return status;
}
