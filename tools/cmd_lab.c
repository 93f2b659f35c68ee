/* cmd_lab.c - `cpool lab LAYER`: run one layer once and write everything it computed.
 *
 *     cpool lab LAYER [--set key=value ...] --in x.npy [--params p.safetensors | --seed S]
 *                     [--grad-out gy.npy] [--double] --out DIR
 *
 * The point is comparison: feed the same x and parameters to PyTorch (or a hand calculation) and
 * check y, the attention probabilities, and the gradients for a chosen upstream gradient dL/dy.
 * docs/lab.md has a complete example.
 *
 * The work is lab_run(), which takes argv and returns the exit status with the error as one line,
 * so tests call it directly. Errors raised deep inside a layer or op (cpool_fail) are caught by
 * cpool_try in lab_run, which frees everything through the LabRun struct and returns: 2 if the
 * layer refused its config (a usage error), 1 for anything about the data. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "lab_layers.h"
#include "npy.h"
#include "safetensors.h"
#include "util.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };

typedef struct LabOptions {
    const LabLayer *layer;
    LabConfig config;
    const char *in_path, *params_path, *grad_out_path, *out_dir;
    unsigned long long seed;
    int seed_given;
} LabOptions;

/* Everything one run owns, reachable from one pointer so that cleanup works after a longjmp. */
typedef struct LabRun {
    LabOptions options;
    LabInput input;
    ParamSet params;
    Tape *tape;
    void *layer;
    Tensor *grad_out;
    Tensor *y, *aux[LAB_MAX_AUX];
    int status;      /* what lab_steps returned */
    int fail_status; /* the exit status a cpool_fail() means in the current phase */
    FILE *report;    /* progress lines, or NULL */
    char *err;
    size_t err_len;
} LabRun;

static int lab_error(LabRun *run, int status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int lab_error(LabRun *run, int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(run->err, run->err_len, format, args);
    va_end(args);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Help                                                                                       */

static void print_key(FILE *out, const LabKey *key) {
    char shown[48];
    if (key->type == LAB_CHOICE)
        lab_choice_name(key, (int)key->value, shown, sizeof shown);
    else if (key->shown_as)
        snprintf(shown, sizeof shown, "%s", key->shown_as);
    else if (key->source == LAB_REQUIRED)
        snprintf(shown, sizeof shown, "required");
    else if (key->source == LAB_FROM_LAST_AXIS)
        snprintf(shown, sizeof shown, "x's last axis");
    else if (key->source == LAB_FROM_AXIS_1)
        snprintf(shown, sizeof shown, "x's axis 1");
    else
        snprintf(shown, sizeof shown, "%g", key->value);
    fprintf(out, "      %-11s [%s]%*s %s", key->name, shown, (int)(16 - strlen(shown)), "",
            key->help);
    if (key->type == LAB_CHOICE) fprintf(out, ": %s", key->choices);
    fprintf(out, "\n");
}

static void print_layer(FILE *out, const LabLayer *layer) {
    fprintf(out, "  %-13s %s\n", layer->name, layer->summary);
    fprintf(out, "      input: %s\n", layer->input);
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name; k++) print_key(out, &layer->keys[k]);
}

static void usage(FILE *out, const LabLayer *only) {
    fprintf(
        out,
        "usage: cpool lab LAYER [--set key=value ...] --in x.npy [--params p.safetensors | "
        "--seed S]\n"
        "                 [--grad-out gy.npy] [--double] --out DIR\n"
        "\n"
        "Run one layer once (in %s; --double re-runs in cpool64 for float64) and write to DIR\n"
        "(created if missing; every file written atomically):\n"
        "  y.npy                    the output\n"
        "  params.safetensors       the parameters used: read from --params, or initialised\n"
        "                           as the layer does from --seed S (default 0)\n"
        "  attn.npy                 attention and block: the probabilities (B, heads, N, N)\n"
        "  weights.npy              contextpool1d/2d, and block with pool=contextpool: the\n"
        "                           pooling weights w, one per input token (pixel)\n"
        "  support.npy              the same: the support sizes s, one per output token\n"
        "  grad_in.npy              with --grad-out gy.npy (dL/dy, y's shape): dL/dx\n"
        "                           (not for embedding, whose input is integer ids)\n"
        "  grad_params.safetensors  with --grad-out: dL/dparameter, same names as params\n"
        "Files are float32 (F32), or float64 (F64) with --double. Parameter names are those of\n"
        "a PyTorch module of the same structure (\"qkv.weight\", \"ffn.fc1.bias\").\n"
        "\n"
        "layers and their keys (--set key=value, repeatable; the default in brackets; keys\n"
        "marked x's ... are read from the input's shape when not set):\n",
        REAL_NAME);
    for (int i = 0; i < lab_layer_count; i++)
        if (!only || only == &lab_layers[i]) print_layer(out, &lab_layers[i]);
    fprintf(out, "\nexit status: 0 done, 1 a data error (a file, a shape that does not fit),\n"
                 "2 a usage error (the command line or the layer's config).\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                  */

/* The value after option argv[*i], or NULL (with err) if there is none. */
static const char *option_value(LabRun *run, int argc, char **argv, int *i) {
    if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
        lab_error(run, EXIT_USAGE, "%s needs a value (see cpool lab --help)", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse_seed(LabRun *run, const char *text) {
    if (run->options.seed_given) return lab_error(run, EXIT_USAGE, "--seed given twice");
    char *end = NULL;
    errno = 0;
    run->options.seed = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || errno == ERANGE)
        return lab_error(run, EXIT_USAGE, "--seed '%s' is not a non-negative integer", text);
    run->options.seed_given = 1;
    return 0;
}

/* --double in this build: float64 already, or a sign that lab_run was called directly from the
 * float32 program (cmd_lab() re-executes cpool64 before getting here). */
static int parse_double(LabRun *run) {
#ifdef CPOOL_DOUBLE
    (void)run;
    return 0;
#else
    return lab_error(run, EXIT_USAGE,
                     "--double: this program computes in float32; run it as "
                     "`cpool lab`, which hands it to cpool64");
#endif
}

/* One option at argv[*i] (and its value, *i advanced past it): 0, or an exit status. */
static int parse_option(LabRun *run, int argc, char **argv, int *i) {
    LabOptions *o = &run->options;
    const char *arg = argv[*i];
    if (strcmp(arg, "--double") == 0) return parse_double(run);
    const struct {
        const char *option;
        const char **path;
    } paths[] = {{"--in", &o->in_path},
                 {"--params", &o->params_path},
                 {"--grad-out", &o->grad_out_path},
                 {"--out", &o->out_dir}};
    const char **path = NULL;
    for (int k = 0; k < 4; k++)
        if (strcmp(arg, paths[k].option) == 0) path = paths[k].path;
    int is_set = strcmp(arg, "--set") == 0, is_seed = strcmp(arg, "--seed") == 0;
    if (!path && !is_set && !is_seed)
        return lab_error(run, EXIT_USAGE, "unknown option '%s' (see --help)", arg);
    const char *value = option_value(run, argc, argv, i);
    if (!value) return EXIT_USAGE;
    if (is_set) return lab_config_set(&o->config, value, run->err, run->err_len) ? EXIT_USAGE : 0;
    if (is_seed) return parse_seed(run, value);
    if (*path) return lab_error(run, EXIT_USAGE, "%s given twice", arg);
    *path = value;
    return 0;
}

static int parse_arguments(LabRun *run, int argc, char **argv) {
    LabOptions *o = &run->options;
    if (argc < 2 || argv[1][0] == '-')
        return lab_error(run, EXIT_USAGE, "which layer? (cpool lab LAYER ...; see --help)");
    if (!(o->layer = lab_layer_find(argv[1]))) {
        char names[256] = "";
        for (int i = 0; i < lab_layer_count; i++)
            strcat(strcat(names, i ? " " : ""), lab_layers[i].name);
        return lab_error(run, EXIT_USAGE, "unknown layer '%s' (layers: %s)", argv[1], names);
    }
    lab_config_init(&o->config, o->layer);
    for (int i = 2; i < argc; i++) {
        int status = parse_option(run, argc, argv, &i);
        if (status) return status;
    }
    if (!o->in_path) return lab_error(run, EXIT_USAGE, "--in x.npy is required");
    if (!o->out_dir) return lab_error(run, EXIT_USAGE, "--out DIR is required");
    if (o->params_path && o->seed_given)
        return lab_error(run, EXIT_USAGE,
                         "--params and --seed exclude each other (the seed only "
                         "initialises parameters)");
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The run                                                                                    */

static int load_input(LabRun *run) {
    const LabLayer *layer = run->options.layer;
    LabInput *in = &run->input;
    int ndim;
    if (layer->integer_input) {
        if (npy_load_ints(run->options.in_path, &in->ids, &in->ids_ndim, in->ids_shape, run->err,
                          run->err_len) != 0)
            return EXIT_DATA;
        ndim = in->ids_ndim;
    } else {
        if (npy_load(run->options.in_path, &in->x, run->err, run->err_len) != 0) return EXIT_DATA;
        /* x gets a gradient buffer: dL/dx is grad_in.npy. */
        in->x->requires_grad = 1;
        in->x->grad = xcalloc((size_t)in->x->size, sizeof(real));
        ndim = in->x->ndim;
    }
    if (ndim < layer->min_ndim || ndim > layer->max_ndim) {
        char shape[64];
        shape_string(ndim, in->x ? in->x->shape : in->ids_shape, shape, sizeof shape);
        return lab_error(run, EXIT_DATA, "%s: %s has shape %s, but %s takes %s",
                         run->options.in_path, layer->integer_input ? "ids" : "x", shape,
                         layer->name, layer->input);
    }
    return 0;
}

/* Token ids must index the table: checked here, so the error names the file (the op's own check
 * would only say which position). */
static int check_ids(LabRun *run) {
    const LabInput *in = &run->input;
    long n = 1, vocab = lab_int(&run->options.config, "vocab");
    for (int d = 0; d < in->ids_ndim; d++) n *= in->ids_shape[d];
    for (long i = 0; i < n; i++)
        if (in->ids[i] < 0 || in->ids[i] >= vocab)
            return lab_error(run, EXIT_DATA, "%s: id %d at flat index %ld is not in [0, vocab=%ld)",
                             run->options.in_path, in->ids[i], i, vocab);
    return 0;
}

/* The layer and its parameters: initialised from the seed, then overwritten by --params. */
static int build_layer(LabRun *run) {
    LabOptions *o = &run->options;
    if (lab_config_resolve(&o->config, &run->input, run->err, run->err_len) != 0) return EXIT_USAGE;
    if (o->layer->integer_input && check_ids(run) != 0) return EXIT_DATA;
    Rng rng;
    rng_seed(&rng, o->seed);
    run->layer = xcalloc(1, o->layer->layer_bytes);
    run->fail_status = EXIT_USAGE; /* the layer refusing its config is a usage error */
    o->layer->init(run->layer, &o->config, &run->params, &rng);
    run->fail_status = EXIT_DATA;
    if (o->params_path &&
        safetensors_load_params(o->params_path, &run->params, 0, run->err, run->err_len) != 0)
        return EXIT_DATA;
    return 0;
}

/* Forward, and backward from dL/dy when --grad-out was given. */
static int run_layer(LabRun *run) {
    const LabOptions *o = &run->options;
    run->tape = tape_create();
    run->y = o->layer->forward(run->tape, run->layer, &run->input, run->aux);
    if (!o->grad_out_path) return 0;
    if (npy_load(o->grad_out_path, &run->grad_out, run->err, run->err_len) != 0) return EXIT_DATA;
    if (!tensor_same_shape(run->grad_out, run->y)) {
        char got[64], want[64];
        return lab_error(run, EXIT_DATA, "%s: dL/dy has shape %s but y is %s", o->grad_out_path,
                         TENSOR_SHAPE_STR(run->grad_out, got), TENSOR_SHAPE_STR(run->y, want));
    }
    tape_backward_from(run->tape, run->y, run->grad_out->data);
    return 0;
}

/* mkdir -p: every missing directory along path. */
static int make_directories(LabRun *run, const char *path) {
    char partial[4096];
    if (strlen(path) >= sizeof partial) return lab_error(run, EXIT_DATA, "%s: path too long", path);
    strcpy(partial, path);
    for (char *p = partial + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(partial, 0777) != 0 && errno != EEXIST)
            return lab_error(run, EXIT_DATA, "%s: cannot create directory: %s", partial,
                             strerror(errno));
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return lab_error(run, EXIT_DATA, "%s: not a directory", path);
    return 0;
}

static int save_tensor(LabRun *run, const char *name, const Tensor *t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", run->options.out_dir, name);
    if (npy_save(path, t, run->err, run->err_len) != 0) return EXIT_DATA;
    char shape[64];
    if (run->report) fprintf(run->report, "  %-24s %s\n", name, TENSOR_SHAPE_STR(t, shape));
    return 0;
}

static int save_params(LabRun *run, const char *name, SafetensorsWhich which) {
    char path[4200], config[1024];
    snprintf(path, sizeof path, "%s/%s", run->options.out_dir, name);
    lab_config_string(&run->options.config, config, sizeof config);
    const char *metadata[] = {"layer", run->options.layer->name, "config", config, NULL};
    if (safetensors_save_params(path, &run->params, which, SAFETENSORS_REAL, metadata, run->err,
                                run->err_len) != 0)
        return EXIT_DATA;
    if (run->report)
        fprintf(run->report, "  %-24s %d tensors, %ld values\n", name, run->params.count,
                params_count_elements(&run->params));
    return 0;
}

/* aux.npy for each auxiliary output: every one in the row's aux, then those of optional_aux the
 * forward produced (run->aux holds them in that order). */
static int write_aux(LabRun *run) {
    const LabLayer *layer = run->options.layer;
    const char *names[2 * LAB_MAX_AUX];
    int n = 0, n_required = 0, status = 0;
    for (int i = 0; i < LAB_MAX_AUX && layer->aux[i]; i++) names[n++] = layer->aux[i];
    n_required = n;
    for (int i = 0; i < LAB_MAX_AUX && layer->optional_aux[i]; i++)
        names[n++] = layer->optional_aux[i];
    for (int i = 0; i < n && i < LAB_MAX_AUX && !status; i++) {
        if (i >= n_required && !run->aux[i]) continue;
        char name[64];
        snprintf(name, sizeof name, "%s.npy", names[i]);
        status = save_tensor(run, name, run->aux[i]);
    }
    return status;
}

static int write_outputs(LabRun *run) {
    int status = save_tensor(run, "y.npy", run->y);
    if (!status) status = write_aux(run);
    if (!status) status = save_params(run, "params.safetensors", SAFETENSORS_DATA);
    if (!run->grad_out || status) return status;
    if (run->input.x) {
        /* grad_in.npy holds x's gradient: a view of x with grad as data. */
        Tensor grad_in = *run->input.x;
        grad_in.data = run->input.x->grad;
        status = save_tensor(run, "grad_in.npy", &grad_in);
    }
    if (!status) status = save_params(run, "grad_params.safetensors", SAFETENSORS_GRAD);
    return status;
}

static void lab_free(LabRun *run) {
    tensor_free(run->input.x);
    free(run->input.ids);
    tensor_free(run->grad_out);
    if (run->tape) tape_free(run->tape);
    params_free(&run->params);
    free(run->layer);
    free(run);
}

/* The steps after parsing, run inside cpool_try; the exit status goes to run->status. */
static void lab_steps(void *arg) {
    LabRun *run = arg;
    int status = load_input(run);
    if (!status) status = build_layer(run);
    if (!status) status = run_layer(run);
    if (!status) status = make_directories(run, run->options.out_dir);
    if (!status && run->report) {
        char x[64], y[64];
        fprintf(run->report, "%s (%s) %s: %s -> y %s; wrote to %s:\n", run->options.layer->name,
                REAL_NAME, run->options.in_path,
                run->input.x ? TENSOR_SHAPE_STR(run->input.x, x)
                             : shape_string(run->input.ids_ndim, run->input.ids_shape, x, sizeof x),
                TENSOR_SHAPE_STR(run->y, y), run->options.out_dir);
    }
    if (!status) status = write_outputs(run);
    run->status = status;
}

int lab_run(int argc, char **argv, FILE *report, char *err, size_t err_len) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(report ? report : stdout, argc > 2 ? lab_layer_find(argv[1]) : NULL);
            return 0;
        }
    LabRun *run = xcalloc(1, sizeof *run);
    run->report = report;
    run->err = err;
    run->err_len = err_len;
    err[0] = '\0';
    int status = parse_arguments(run, argc, argv);
    if (status) {
        lab_free(run);
        return status;
    }
    run->fail_status = EXIT_DATA;
    if (cpool_try(lab_steps, run, err, err_len) == 0)
        status = run->status;
    else
        status = run->fail_status;
    lab_free(run);
    return status;
}

int cmd_lab(int argc, char **argv) {
#ifndef CPOOL_DOUBLE
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--double") == 0) return exec_double_build(argc, argv);
#endif
    char err[1024];
    int status = lab_run(argc, argv, stdout, err, sizeof err);
    if (status) fprintf(stderr, "cpool lab: %s\n", err);
    return status;
}
