/* cmd_eval.c - `cpool eval`: a checkpoint's bits per character or accuracy on a data split.
 *
 *     cpool eval --ckpt FILE [--split valid|test|train] [--data PATH] [--batches N]
 *                [--batch B] [--threads T]
 *
 * The model and its data set come from the checkpoint's config (its `data` key, unless --data
 * gives another file or directory). The whole split is evaluated unless --batches limits it. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "run.h"
#include "util.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };
/* Bounds on the numbers a user may give: a batch's buffers are batch x seq_len ints and its
 * activations a few times batch x seq_len x dim reals, so 4096 keeps even a wide model's batch
 * within a few GB; more threads than this is a typo. */
enum { EVAL_MAX_BATCH = 4096, EVAL_MAX_THREADS = 1024 };

static void print_help(void) {
    printf("usage: cpool eval --ckpt FILE [--split valid|test|train] [--data PATH]\n"
           "                  [--batches N] [--batch B] [--threads T]\n\n"
           "Evaluate a checkpoint (from cpool train) on a split of its data set: bits per\n"
           "character for a charlm, accuracy for vit and cnn, and the mean cross-entropy.\n\n"
           "  --ckpt FILE    the checkpoint (required)\n"
           "  --split S      valid (default), test or train\n"
           "  --data PATH    another text file (charlm) or Fashion-MNIST directory\n"
           "  --batches N    stop after N batches (default: the whole split)\n"
           "  --batch B      examples per batch (default: the run's batch key)\n"
           "  --threads T    OpenMP threads (default: every core)\n");
}

/* An integer option in [1, max], or -1. */
static long positive(const char *option, const char *value, long max) {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end || n < 1 || n > max) {
        fprintf(stderr, "cpool eval: %s %s: expected an integer in 1..%ld\n", option, value, max);
        return -1;
    }
    return n;
}

typedef struct EvalOptions {
    const char *ckpt, *data;
    DataSplit split;
    long batches, batch, threads;
} EvalOptions;

static int parse_args(int argc, char **argv, EvalOptions *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return print_help(), 1;
        if (strncmp(a, "--", 2) || !strcmp(a, "--")) {
            fprintf(stderr, "cpool eval: unexpected argument '%s' (try --help)\n", a);
            return -1;
        }
        if (!value) {
            fprintf(stderr, "cpool eval: %s needs a value (try --help)\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--ckpt"))
            o->ckpt = value;
        else if (!strcmp(a, "--data"))
            o->data = value;
        else if (!strcmp(a, "--split")) {
            if (!strcmp(value, "valid"))
                o->split = SPLIT_VALID;
            else if (!strcmp(value, "test"))
                o->split = SPLIT_TEST;
            else if (!strcmp(value, "train"))
                o->split = SPLIT_TRAIN;
            else {
                fprintf(stderr, "cpool eval: --split %s: expected valid, test or train\n", value);
                return -1;
            }
        } else if (!strcmp(a, "--batches")) {
            if ((o->batches = positive(a, value, 1000000000L)) < 0) return -1;
        } else if (!strcmp(a, "--batch")) {
            if ((o->batch = positive(a, value, EVAL_MAX_BATCH)) < 0) return -1;
        } else if (!strcmp(a, "--threads")) {
            if ((o->threads = positive(a, value, EVAL_MAX_THREADS)) < 0) return -1;
        } else {
            fprintf(stderr, "cpool eval: unknown option '%s' (try --help)\n", a);
            return -1;
        }
    }
    if (!o->ckpt) {
        fprintf(stderr, "cpool eval: --ckpt FILE is required (try --help)\n");
        return -1;
    }
    return 0;
}

/* What the evaluation owns, reachable after a cpool_fail() inside it (cpool_try). */
typedef struct EvalJob {
    const EvalOptions *options;
    RunConfig run;
    Model model;
    RunData data;
    Tape *tape;
    int model_loaded, data_loaded;
    EvalResult result;
    int status; /* eval_steps' */
    char err[4096];
} EvalJob;

/* 0, or EXIT_DATA with job->err set. */
static int eval_steps(EvalJob *job) {
    const EvalOptions *o = job->options;
    if (run_load_checkpoint(o->ckpt, &job->run, &job->model, job->err, sizeof job->err) != 0)
        return EXIT_DATA;
    job->model_loaded = 1;
    if (run_data_load(&job->data, &job->run, o->data, job->err, sizeof job->err) != 0)
        return EXIT_DATA;
    job->data_loaded = 1;
    job->tape = tape_create();
    int batch = o->batch > 0 ? (int)o->batch : job->run.train.batch;
    job->result =
        run_evaluate(&job->model, &job->data, o->split, batch, (int)o->batches, job->tape);
    return 0;
}

static void eval_body(void *arg) {
    EvalJob *job = arg;
    job->status = eval_steps(job);
}

int cmd_eval(int argc, char **argv) {
    EvalOptions o = {.split = SPLIT_VALID};
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0) return parsed > 0 ? 0 : EXIT_USAGE;
    if (o.threads > 0) omp_set_num_threads((int)o.threads);
    EvalJob *job = xcalloc(1, sizeof *job);
    job->options = &o;
    char failure[1024];
    int status = EXIT_DATA;
    if (cpool_try(eval_body, job, failure, sizeof failure) != 0)
        fprintf(stderr, "cpool eval: %s: %s\n", o.ckpt, failure);
    else if ((status = job->status) != 0)
        fprintf(stderr, "cpool eval: %s\n", job->err);
    else
        printf("%s %s: %s %.4f  loss %.4f nats  (%ld %s)\n", o.ckpt, split_name(o.split),
               run_metric_name(job->run.model.kind), job->result.metric, job->result.loss,
               job->result.count, job->run.model.kind == MODEL_CHARLM ? "bytes" : "images");
    if (job->tape) tape_free(job->tape);
    if (job->data_loaded) run_data_free(&job->data);
    if (job->model_loaded) model_free(&job->model);
    free(job);
    return status;
}
