/* run_config.h - everything that defines a training run, as "key = value" text.
 *
 * A run is a model (model.h) and how it is trained. Both are set by keys, given on the command
 * line (`cpool train layers=4 pool=none`), in a config file (one "key = value" per line, '#'
 * starts a comment), or read back from a checkpoint, which stores the whole config as text:
 *
 *     RunConfig run;
 *     run_config_defaults(&run, MODEL_CHARLM);
 *     char err[256];
 *     if (run_config_set(&run, "layers=4", "command line", err, sizeof err) != 0) ...
 *     char *text = run_config_format(&run);     // every key, one per line (free() it)
 *     RunConfig back;
 *     run_config_parse(&back, text, "ckpt.safetensors", err, sizeof err);   // same values
 *
 * `model` must be set first (on the command line, or the file's first key), because it picks
 * the defaults of every other key; run_config_set refuses a model= that comes later.
 *
 * Errors are one line naming where the value came from, the key and what was expected:
 *
 *     command line: layers=0: expected an integer in 1..16
 *     run.cfg:7: unknown key 'lyaers' (`cpool train --help` lists the keys)
 *     run.cfg:3: dim=12x: expected an integer, got '12x'
 *
 * Which keys apply to which model: run_config_keys() (the table --help prints) says it. Keys of
 * another model are accepted and ignored (so one file can hold a sweep's common keys).
 */
#ifndef CPOOL_RUN_CONFIG_H
#define CPOOL_RUN_CONFIG_H

#include <stddef.h>

#include "model.h"

#define RUN_PATH_MAX 1024

/* How a model is trained and evaluated. */
typedef struct TrainConfig {
    char data[RUN_PATH_MAX]; /* charlm: the text file; vit, cnn: the Fashion-MNIST directory */
    int batch;               /* examples per step */
    long steps;              /* optimizer steps in the run */
    double lr, min_lr;       /* peak learning rate and the cosine's floor */
    long warmup;             /* linear warm-up steps */
    double weight_decay;     /* AdamW's decoupled decay (2-d and larger parameters) */
    double clip;             /* gradient-norm clipping; 0: none */
    long eval_every;         /* validation every this many steps (and at the end); 0: end only */
    int eval_batches;        /* batches of the validation split per evaluation; 0: all */
    long checkpoint_every;   /* checkpoint every this many steps (and at the end) */
    unsigned long long seed; /* initialisation and batches */
    int n_valid;             /* vit, cnn: training images held out for validation */
} TrainConfig;

typedef struct RunConfig {
    ModelConfig model;
    TrainConfig train;
} RunConfig;

/* The defaults of every key for a model kind. */
void run_config_defaults(RunConfig *run, ModelKind kind);

/* One "key=value" (spaces around '=' allowed). where names the source for errors ("command
 * line", "run.cfg:7"). 0, or -1 with one line in err and run unchanged. */
int run_config_set(RunConfig *run, const char *assignment, const char *where, char *err,
                   size_t err_len);
/* A whole config text (lines "key = value", '#' comments, blank lines): defaults of its model
 * (or charlm's when no model= line comes first), then every line. source names it in errors. */
int run_config_parse(RunConfig *run, const char *text, const char *source, char *err,
                     size_t err_len);
/* Every key with its value, one "key = value" line each, model first (malloc'd). Parsing the
 * text gives back exactly the same config (each double with the fewest digits, 15 to 17, that
 * read back to the same bits). */
char *run_config_format(const RunConfig *run);

/* The key table, for --help: name, the models it applies to, the default shown, what it does. */
typedef struct RunKeyHelp {
    const char *name;
    const char *models; /* "all", "charlm", "vit cnn", ... */
    const char *help;
} RunKeyHelp;
const RunKeyHelp *run_config_keys(int *count);

#endif
