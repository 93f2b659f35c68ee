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

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };

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

/* A positive integer option, or -1. */
static long positive(const char *option, const char *value) {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end || n < 1 || n > 1000000000L) {
        fprintf(stderr, "cpool eval: %s %s: expected a positive integer\n", option, value);
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
            if ((o->batches = positive(a, value)) < 0) return -1;
        } else if (!strcmp(a, "--batch")) {
            if ((o->batch = positive(a, value)) < 0) return -1;
        } else if (!strcmp(a, "--threads")) {
            if ((o->threads = positive(a, value)) < 0) return -1;
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

int cmd_eval(int argc, char **argv) {
    EvalOptions o = {.split = SPLIT_VALID};
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0) return parsed > 0 ? 0 : EXIT_USAGE;
    if (o.threads > 0) omp_set_num_threads((int)o.threads);
    static RunConfig run;
    static Model model;
    RunData data;
    char err[4096];
    if (run_load_checkpoint(o.ckpt, &run, &model, err, sizeof err) != 0) {
        fprintf(stderr, "cpool eval: %s\n", err);
        return EXIT_DATA;
    }
    if (run_data_load(&data, &run, o.data, err, sizeof err) != 0) {
        fprintf(stderr, "cpool eval: %s\n", err);
        model_free(&model);
        return EXIT_DATA;
    }
    Tape *tape = tape_create();
    int batch = o.batch > 0 ? (int)o.batch : run.train.batch;
    EvalResult r = run_evaluate(&model, &data, o.split, batch, (int)o.batches, tape);
    const char *metric = run_metric_name(run.model.kind);
    printf("%s %s: %s %.4f  loss %.4f nats  (%ld %s)\n", o.ckpt, split_name(o.split), metric,
           r.metric, r.loss, r.count, run.model.kind == MODEL_CHARLM ? "bytes" : "images");
    tape_free(tape);
    run_data_free(&data);
    model_free(&model);
    return 0;
}
