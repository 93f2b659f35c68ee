/* cmd_train.c - `cpool train`: train a model, with checkpoints, a loss curve and --resume.
 *
 *     cpool train [KEY=VALUE ...] [--config FILE] [--out DIR] [--resume] [--threads T]
 *
 * The run directory DIR (default runs/MODEL) receives
 *     config.txt               the run's config, every key (run_config.h)
 *     checkpoint.safetensors   model, optimizer, step, RNG and config (checkpoint.h)
 *     loss.csv                 the loss curve (progress.h)
 *     result.txt               final numbers: valid and test metric, parameters, FLOPs, time
 *     *.png                    the run's figures (tools/plots.h), unless --no-plots
 * all written atomically. --resume continues the run in DIR from its checkpoint; with the same
 * thread count it computes the same bits as a run never interrupted. Ctrl-C (or SIGTERM) stops
 * after the current step and saves a checkpoint.
 *
 * The loop, per step: a random batch, forward, loss, backward, clip, AdamW at the schedule's
 * rate, the model's constraints (model_after_step), zeroed gradients, a reset tape.
 *
 * Divergence. A step whose loss or gradient norm is not finite (or that fails inside an op) does
 * not update the parameters: the step is run again on the same batch with the tape's anomaly
 * checks on (tape.h), which stop at the first op whose output or gradient holds a NaN or Inf,
 * and the run stops with one line naming that op, its tape position, its shapes and the
 * parameters among its inputs. An update that leaves a parameter non-finite (an overflow from
 * finite gradients) stops the run too, naming the parameter. No checkpoint of a diverged state
 * is written: the last good one stays. --anomaly turns the checks on for every step. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "commands.h"
#include "interrupt.h"
#include "plots.h"
#include "progress.h"
#include "run.h"
#include "util.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

typedef struct TrainOptions {
    RunConfig run;
    char out_dir[RUN_PATH_MAX];
    int resume, force, threads, quiet, no_plots, anomaly;
} TrainOptions;

static void print_help(void) {
    printf("usage: cpool train [KEY=VALUE ...] [--config FILE] [--out DIR] [--resume | --force]\n"
           "                   [--threads T] [--quiet] [--no-plots] [--anomaly]\n\n"
           "Train a model on its data set, evaluating on the validation split as it goes and on\n"
           "the test split at the end. KEY=VALUE pairs (and --config FILE, one per line) set the\n"
           "keys below; model= comes first, as it picks the other defaults.\n\n"
           "  --out DIR      the run directory (default runs/MODEL): config.txt,\n"
           "                 checkpoint.safetensors, loss.csv, result.txt\n"
           "  --resume       continue the run in DIR from its checkpoint (keys come from it)\n"
           "  --force        start afresh even if DIR holds a run (its files are replaced)\n"
           "  --threads T    OpenMP threads (default: every core). The same seed and T give\n"
           "                 the same bits; a resumed run must use the T it started with\n"
           "  --quiet        no progress line (evaluations are still printed)\n"
           "  --no-plots     do not draw the run's figures at the end (gnuplot)\n"
           "  --anomaly      check every op's output and gradient for NaN/Inf on every step\n"
           "                 (about 3%% slower). Without it, a step whose loss or gradient is\n"
           "                 not finite is re-run with the checks to name the first op that\n"
           "                 produced a NaN/Inf; either way the run stops there and keeps its\n"
           "                 last checkpoint\n\n"
           "keys (model: which models read it):\n");
    int count;
    const RunKeyHelp *keys = run_config_keys(&count);
    for (int i = 0; i < count; i++)
        printf("  %-16s %-12s %s\n", keys[i].name, keys[i].models, keys[i].help);
    printf("\nexamples:\n"
           "  cpool train                                   # small ContextPool char-LM on KJV\n"
           "  cpool train layers=4 pool=none --out runs/plain4\n"
           "  cpool train model=cnn pool=avg steps=1000 --out runs/cnn-avg\n"
           "  cpool train --resume --out runs/plain4         # after Ctrl-C\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                   */

static char *read_text_file(const char *path, char *err, size_t err_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t size = 0, used = 0;
    for (;;) {
        if (used + 4096 + 1 > size) text = xrealloc(text, size = 2 * size + 4096 + 1);
        size_t n = fread(text + used, 1, size - used - 1, fp);
        used += n;
        if (n == 0) break;
    }
    int failed = ferror(fp);
    fclose(fp);
    text[used] = '\0';
    if (failed || strlen(text) != used) {
        snprintf(err, err_len, "%s: %s", path,
                 failed ? "read error" : "contains a NUL byte: not a config text file");
        free(text);
        return NULL;
    }
    return text;
}

static int parse_threads(const char *value, int *threads) {
    char *end;
    errno = 0;
    long t = strtol(value, &end, 10);
    if (errno || end == value || *end || t < 1 || t > 1024) return -1;
    *threads = (int)t;
    return 0;
}

/* argv -> options. Returns -1 (usage error, message printed), 0, or 1 (--help shown). */
/* The learning-rate schedule of a run. A warm-up longer than the run (a quick test with few
 * steps) is cut to the run. */
static LrSchedule train_schedule(const TrainConfig *c) {
    return (LrSchedule){c->lr, c->min_lr, c->warmup < c->steps ? c->warmup : c->steps, c->steps};
}

static int parse_args(int argc, char **argv, TrainOptions *o) {
    char err[512];
    const char *config_path = NULL;
    int n_keys = 0, model_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return print_help(), 1;
        if (!strcmp(a, "--resume"))
            o->resume = 1;
        else if (!strcmp(a, "--force"))
            o->force = 1;
        else if (!strcmp(a, "--no-plots"))
            o->no_plots = 1;
        else if (!strcmp(a, "--quiet"))
            o->quiet = 1;
        else if (!strcmp(a, "--anomaly"))
            o->anomaly = 1;
        else if ((!strcmp(a, "--out") || !strcmp(a, "--config") || !strcmp(a, "--threads")) &&
                 !next) {
            fprintf(stderr, "cpool train: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--out")) {
            if (strlen(next) >= sizeof o->out_dir - 32) {
                fprintf(stderr, "cpool train: --out: path too long\n");
                return -1;
            }
            snprintf(o->out_dir, sizeof o->out_dir, "%s", argv[++i]);
        } else if (!strcmp(a, "--config"))
            config_path = argv[++i];
        else if (!strcmp(a, "--threads")) {
            if (parse_threads(argv[++i], &o->threads) != 0) {
                fprintf(stderr, "cpool train: --threads %s: expected an integer in 1..1024\n",
                        argv[i]);
                return -1;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "cpool train: unknown option '%s' (try --help)\n", a);
            return -1;
        } else if (!strchr(a, '=')) {
            fprintf(stderr, "cpool train: '%s': expected KEY=VALUE or an option (try --help)\n", a);
            return -1;
        } else {
            n_keys++;
            model_given |= !strncmp(a, "model", 5) && strchr(" =", a[5]);
        }
    }
    if (o->resume && (n_keys || config_path)) {
        fprintf(stderr, "cpool train: --resume takes every key from the checkpoint; give no "
                        "KEY=VALUE or --config\n");
        return -1;
    }
    if (o->resume && o->force) {
        fprintf(stderr,
                "cpool train: --resume continues a run and --force replaces it: give one\n");
        return -1;
    }
    if (o->resume && !o->out_dir[0]) {
        fprintf(stderr, "cpool train: --resume needs --out DIR, the run to continue\n");
        return -1;
    }
    if (o->resume) return 0;
    /* Defaults: the config file's (it may start with model=), or charlm's; then the command
     * line's model= first, then the other keys in order. */
    run_config_defaults(&o->run, MODEL_CHARLM);
    if (config_path) {
        char *text = read_text_file(config_path, err, sizeof err);
        int status = text ? run_config_parse(&o->run, text, config_path, err, sizeof err) : -1;
        free(text);
        if (status != 0) return fprintf(stderr, "cpool train: %s\n", err), -1;
    }
    for (int pass = model_given ? 0 : 1; pass < 2; pass++)
        for (int i = 1; i < argc; i++) {
            if (argv[i][0] == '-') {
                i += !strcmp(argv[i], "--out") || !strcmp(argv[i], "--config") ||
                     !strcmp(argv[i], "--threads");
                continue;
            }
            int is_model = !strncmp(argv[i], "model", 5) && strchr(" =", argv[i][5]);
            if (is_model != (pass == 0)) continue;
            if (is_model && !config_path) {
                RunConfig fresh;
                run_config_defaults(&fresh, MODEL_CHARLM);
                o->run = fresh;
            }
            if (run_config_set(&o->run, argv[i], "command line", err, sizeof err) != 0)
                return fprintf(stderr, "cpool train: %s\n", err), -1;
        }
    if (model_check_config(&o->run.model, err, sizeof err) != 0)
        return fprintf(stderr, "cpool train: %s\n", err), -1;
    LrSchedule schedule = train_schedule(&o->run.train);
    if (lr_schedule_check(&schedule, err, sizeof err) != 0)
        return fprintf(stderr, "cpool train: %s\n", err), -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The run                                                                                     */

typedef struct Trainer {
    TrainOptions *options;
    RunConfig run;
    RunData data;
    Model model;
    AdamW opt;
    Tape *tape;
    TrainState state;
    CsvLog log;
    Progress progress;
    char ckpt_path[RUN_PATH_MAX + 32];
    long saved_step; /* the step of the checkpoint on disk, -1 if none */
    char err[4096];
} Trainer;

static int make_dir(const char *dir, char *err, size_t err_len) {
    char path[RUN_PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) { /* mkdir -p */
        char c = *p;
        if (c != '/' && c != '\0') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            snprintf(err, err_len, "%s: cannot create directory: %s", path, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0') return 0;
    }
}

static int write_text(const char *dir, const char *name, const char *text, char *err,
                      size_t err_len) {
    char path[RUN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    AtomicFile af;
    if (atomic_open(&af, path, err, err_len) != 0) return -1;
    fputs(text, af.fp);
    return atomic_close(&af, err, err_len);
}

static int save_checkpoint(Trainer *t, double session_start) {
    TrainState state = t->state;
    state.elapsed_seconds += wall_seconds() - session_start;
    if (checkpoint_save(t->ckpt_path, &t->model.params, &t->opt, &state, t->err, sizeof t->err) !=
        0)
        return -1;
    t->saved_step = state.step;
    return 0;
}

/* How a failed run ends its message: which checkpoint a --resume would start from. */
static const char *stop_note(const Trainer *t, char *out, size_t out_len) {
    if (t->saved_step < 0)
        snprintf(out, out_len, "stopped (no checkpoint was written yet)");
    else
        snprintf(out, out_len, "stopped (the checkpoint of step %ld is kept)", t->saved_step);
    return out;
}

/* Anomaly messages name the model's parameters among an op's inputs (tape->tensor_name). */
static const char *parameter_name(const Tensor *t, void *user) {
    const ParamSet *params = user;
    for (int p = 0; p < params->count; p++)
        if (params->items[p].tensor == t) return params->items[p].name;
    return NULL;
}

/* The model, optimizer and state: fresh from the seed, or from DIR's checkpoint. */
static int setup(Trainer *t) {
    TrainOptions *o = t->options;
    snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/checkpoint.safetensors", o->out_dir);
    if (o->resume) {
        char *text = NULL;
        if (checkpoint_read_config(t->ckpt_path, &text, t->err, sizeof t->err) != 0) return -1;
        int status = run_config_parse(&t->run, text, t->ckpt_path, t->err, sizeof t->err);
        free(text);
        if (status != 0) return -1;
    } else {
        t->run = o->run;
    }
    if (run_data_load(&t->data, &t->run, NULL, t->err, sizeof t->err) != 0) return -1;
    /* Only now, with the data read, does a fresh run create its directory: a bad --data leaves
     * nothing behind. */
    if (!o->resume && make_dir(o->out_dir, t->err, sizeof t->err) != 0) return -1;
    rng_seed(&t->state.rng, t->run.train.seed);
    model_init(&t->model, &t->run.model, &t->state.rng);
    AdamWConfig adamw = ADAMW_DEFAULTS;
    adamw.weight_decay = t->run.train.weight_decay;
    adamw_init(&t->opt, &t->model.params, adamw);
    if (o->resume && checkpoint_load(t->ckpt_path, &t->model.params, &t->opt, &t->state, t->err,
                                     sizeof t->err) != 0)
        return -1;
    t->saved_step = o->resume ? t->state.step : -1;
    if (!o->resume) t->state.config = run_config_format(&t->run);
    char csv[RUN_PATH_MAX + 32];
    snprintf(csv, sizeof csv, "%s/loss.csv", o->out_dir);
    const char *metric = t->run.model.kind == MODEL_CHARLM ? "bpc" : "accuracy";
    if (csv_log_open(&t->log, csv, metric, o->resume ? t->state.step : -1, t->err, sizeof t->err) !=
        0)
        return -1;
    if (!o->resume &&
        write_text(o->out_dir, "config.txt", t->state.config, t->err, sizeof t->err) != 0)
        return -1;
    t->tape = tape_create();
    t->tape->release_grads = 1; /* only the parameters' gradients are read after backward */
    t->tape->tensor_name = parameter_name;
    t->tape->tensor_name_user = &t->model.params;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* One step, and what stops the run                                                           */

/* A step's inputs and what it computed, for cpool_try: a failed body leaves its results here. */
typedef struct StepJob {
    Trainer *trainer;
    RunBatch *batch;
    double lr;
    double loss;      /* NaN until the forward pass gets there */
    double grad_norm; /* before clipping; NaN until backward is done */
    int updated;      /* 1 once adamw_step began: the parameters are no longer the step's */
} StepJob;

static StepJob step_job(Trainer *t, RunBatch *batch, double lr) {
    return (StepJob){.trainer = t, .batch = batch, .lr = lr, .loss = NAN, .grad_norm = NAN};
}

/* Forward and backward on the batch last sampled: job->loss, and the gradient norm that
 * clip_grad_norm measures (and clips to, when finite). Backward is skipped when the loss is not
 * finite. The parameters are not changed, only their gradients. */
static void forward_backward(void *arg) {
    StepJob *job = arg;
    Trainer *t = job->trainer;
    ModelInput in = run_batch_input(job->batch, &t->data);
    Tensor *logits = model_forward(t->tape, &t->model, &in, NULL);
    Tensor *loss = model_loss(t->tape, &t->model, logits, run_batch_targets(job->batch, &t->data));
    job->loss = loss->data[0];
    if (!isfinite(job->loss)) return;
    tape_backward(t->tape, loss);
    job->grad_norm = clip_grad_norm(&t->model.params, t->run.train.clip);
}

/* A training step: a random batch, forward, backward and, only when the loss and the gradient
 * norm are both finite (a NaN gradient must never reach the parameters), the update. */
static void step_body(void *arg) {
    StepJob *job = arg;
    Trainer *t = job->trainer;
    run_batch_sample(job->batch, &t->data, SPLIT_TRAIN, &t->state.rng);
    forward_backward(job);
    if (!isfinite(job->loss) || !isfinite(job->grad_norm)) return;
    job->updated = 1;
    adamw_step(&t->opt, job->lr);
    model_after_step(&t->model);
}

/* After every step, done or failed: no gradient, no record, and the tape unchecked again (the
 * evaluations are not watched). */
static void end_step(Trainer *t) {
    params_zero_grad(&t->model.params);
    tape_reset(t->tape);
    t->tape->anomaly = 0;
}

/* An anomaly's line (tape.h) without its "anomaly: ": the run's own message says what it is. */
static const char *without_anomaly_prefix(const char *line) {
    const char *prefix = "anomaly: ";
    return strncmp(line, prefix, strlen(prefix)) == 0 ? line + strlen(prefix) : line;
}

/* Runs the step's forward and backward again, on the same batch and the same parameters, with
 * the tape's anomaly checks on; what it computed goes to *rerun. 1 and the first NaN/Inf's one
 * line (tape.h, without its "anomaly: ") in `found`, or 0 when the checks found none. */
static int find_first_non_finite(Trainer *t, RunBatch *batch, StepJob *rerun, char *found,
                                 size_t found_len) {
    *rerun = step_job(t, batch, 0);
    char failure[1024] = "";
    t->tape->anomaly = 1;
    int anomaly =
        cpool_try(forward_backward, rerun, failure, sizeof failure) != 0 && t->tape->anomaly_found;
    end_step(t);
    if (anomaly) snprintf(found, found_len, "%s", without_anomaly_prefix(failure));
    return anomaly;
}

/* "NaN", "Inf" or "-Inf", as the tape's anomaly messages name them (printf's "%g" would say
 * "nan" or "-nan" depending on a sign bit nobody asked about). */
static const char *non_finite_name(double value) {
    return isnan(value) ? "NaN" : value > 0 ? "Inf" : "-Inf";
}

/* What went wrong with a step that stopped before its update: "the loss is NaN", "the gradient
 * norm is Inf (loss 2.1234)", or the failure's own line. */
static void describe_symptom(const StepJob *job, const char *failure, char *out, size_t out_len) {
    if (failure[0])
        snprintf(out, out_len, "%s", failure);
    else if (!isfinite(job->loss))
        snprintf(out, out_len, "the loss is %s", non_finite_name(job->loss));
    else
        snprintf(out, out_len, "the gradient norm is %s (loss %.4f)",
                 non_finite_name(job->grad_norm), job->loss);
}

/* An update that left a parameter non-finite (from finite gradients: an overflow) stops the run
 * before the next forward would meet it. 0, or -1 with err naming the parameter. */
static int check_parameters(Trainer *t) {
    const ParamSet *params = &t->model.params;
    char note[96];
    for (int p = 0; p < params->count; p++) {
        const Tensor *w = params->items[p].tensor;
        for (long i = 0; i < w->size; i++)
            if (!isfinite(w->data[i])) {
                snprintf(t->err, sizeof t->err,
                         "training diverged at step %ld: parameter '%s' is %s at element %ld "
                         "after the update (lr too large?); %s",
                         t->state.step + 1, params->items[p].name,
                         non_finite_name((double)w->data[i]), i, stop_note(t, note, sizeof note));
                return -1;
            }
    }
    return 0;
}

/* One training step with every failure caught. 0 and *loss, or -1 with err set: the step
 * diverged, the run stops, and (unless an update overflowed) the parameters are still those
 * before the step. A step that stopped before its update is re-run with anomaly checks (unless
 * they were on) to name the first op that produced a NaN or Inf. */
static int guarded_step(Trainer *t, RunBatch *batch, double lr, double *loss) {
    StepJob job = step_job(t, batch, lr);
    char failure[1024] = "", note[96], symptom[1100], found[1024];
    t->tape->anomaly = t->options->anomaly;
    int failed = cpool_try(step_body, &job, failure, sizeof failure) != 0;
    int anomaly = failed && t->tape->anomaly_found;
    end_step(t);
    long step = t->state.step + 1;
    stop_note(t, note, sizeof note);
    if (!failed && job.updated) {
        *loss = job.loss;
        return check_parameters(t);
    }
    if (anomaly) { /* --anomaly: the step itself found it */
        snprintf(t->err, sizeof t->err,
                 "training diverged at step %ld: the first non-finite value of the step: %s; %s",
                 step, without_anomaly_prefix(failure), note);
        return -1;
    }
    describe_symptom(&job, failure, symptom, sizeof symptom);
    StepJob rerun = job; /* with --anomaly, the step was its own checked run */
    if (!job.updated && !t->options->anomaly &&
        find_first_non_finite(t, batch, &rerun, found, sizeof found))
        snprintf(t->err, sizeof t->err,
                 "training diverged at step %ld: %s; the first non-finite value of the step: %s; "
                 "%s",
                 step, symptom, found, note);
    else if (failed) /* not a NaN an op produced: the failure is the news */
        snprintf(t->err, sizeof t->err, "training diverged at step %ld: %s; %s", step, symptom,
                 note);
    else /* every op's output and gradient finite, and yet */
        snprintf(t->err, sizeof t->err,
                 "training diverged at step %ld: %s, but anomaly checks found no NaN or Inf in "
                 "any op's output or gradient (%s); %s",
                 step, symptom,
                 isfinite(rerun.loss) && isfinite(rerun.grad_norm)
                     ? "the step's re-run computed a finite loss and gradient norm: the step is "
                       "not reproducible"
                     : "the gradients are finite but the sum of their squares overflowed",
                 note);
    return -1;
}

static void evaluate_valid(Trainer *t, long step, double lr, double session_start) {
    const TrainConfig *c = &t->run.train;
    EvalResult r =
        run_evaluate(&t->model, &t->data, SPLIT_VALID, c->batch, c->eval_batches, t->tape);
    const char *metric = run_metric_name(t->run.model.kind);
    progress_print(&t->progress, "step %ld: valid loss %.4f, %s %.4f", step, r.loss, metric,
                   r.metric);
    CsvRow row = {.step = step,
                  .tokens = t->state.tokens,
                  .lr = lr,
                  .train_loss = NAN,
                  .valid_loss = r.loss,
                  .valid_metric = r.metric,
                  .elapsed_seconds = t->state.elapsed_seconds + wall_seconds() - session_start};
    if (csv_log_write(&t->log, &row, t->err, sizeof t->err) != 0)
        progress_print(&t->progress, "warning: %s", t->err);
}

/* The steps from the state's step to the end, or to an interrupt. 0 done, 1 interrupted, -1
 * failed (err set). */
static int train_loop(Trainer *t, double session_start) {
    const TrainConfig *c = &t->run.train;
    LrSchedule schedule = train_schedule(c);
    RunBatch batch;
    run_batch_init(&batch, &t->data, c->batch, t->run.model.seq_len);
    long log_every = c->steps >= 200 ? c->steps / 200 : 1;
    double loss_sum = 0;
    int loss_n = 0, status = 0;
    const char *unit = t->run.model.kind == MODEL_CHARLM ? "tok" : "img";
    progress_init(&t->progress, stderr, unit, t->state.step, c->steps,
                  (int)(c->steps >= 20 ? c->steps / 20 : 1));
    while (t->state.step < c->steps) {
        double lr = lr_schedule_at(&schedule, t->state.step);
        double loss;
        if (guarded_step(t, &batch, lr, &loss) != 0) {
            status = -1;
            break;
        }
        long step = ++t->state.step;
        t->state.tokens += run_batch_units(&batch, &t->data);
        loss_sum += loss;
        loss_n++;
        if (!t->options->quiet)
            progress_update(&t->progress, step, run_batch_units(&batch, &t->data), loss, NULL, 0);
        if (step % log_every == 0 || step == c->steps) {
            CsvRow row = {.step = step,
                          .tokens = t->state.tokens,
                          .lr = lr,
                          .train_loss = loss_sum / loss_n,
                          .valid_loss = NAN,
                          .valid_metric = NAN,
                          .elapsed_seconds =
                              t->state.elapsed_seconds + wall_seconds() - session_start};
            loss_sum = 0, loss_n = 0;
            if (csv_log_write(&t->log, &row, t->err, sizeof t->err) != 0) {
                status = -1;
                break;
            }
        }
        if ((c->eval_every > 0 && step % c->eval_every == 0) || step == c->steps)
            evaluate_valid(t, step, lr, session_start);
        int interrupted = interrupt_requested() != 0;
        if (step % c->checkpoint_every == 0 || step == c->steps || interrupted) {
            if (save_checkpoint(t, session_start) != 0) {
                status = -1;
                break;
            }
        }
        if (interrupted) {
            status = 1;
            break;
        }
    }
    progress_finish(&t->progress);
    run_batch_free(&batch);
    return status;
}

/* result.txt: the final numbers, "key = value", for docs/results.md to collect. */
static int write_result(Trainer *t, EvalResult valid, EvalResult test, double seconds) {
    const char *metric = run_metric_name(t->run.model.kind);
    double flops = model_forward_flops(&t->run.model);
    char text[1024];
    snprintf(text, sizeof text,
             "valid_loss = %.6f\nvalid_%s = %.6f\ntest_loss = %.6f\ntest_%s = %.6f\n"
             "parameters = %ld\nforward_flops_per_example = %.6g\n"
             "train_flops_per_example = %.6g\nsteps = %ld\nexamples = %ld\ntrain_seconds = %.1f\n"
             "threads = %d\n",
             valid.loss, metric, valid.metric, test.loss, metric, test.metric,
             params_count_elements(&t->model.params), flops, 3 * flops, t->state.step,
             t->state.tokens, seconds, omp_get_max_threads());
    return write_text(t->options->out_dir, "result.txt", text, t->err, sizeof t->err);
}

static int finish(Trainer *t, double session_start) {
    const TrainConfig *c = &t->run.train;
    double seconds = t->state.elapsed_seconds + wall_seconds() - session_start;
    fprintf(stderr, "evaluating on the full validation and test splits...\n");
    EvalResult valid = run_evaluate(&t->model, &t->data, SPLIT_VALID, c->batch, 0, t->tape);
    EvalResult test = run_evaluate(&t->model, &t->data, SPLIT_TEST, c->batch, 0, t->tape);
    const char *metric = run_metric_name(t->run.model.kind);
    printf("valid %s %.4f  test %s %.4f  (loss %.4f / %.4f nats; %ld parameters; %s)\n", metric,
           valid.metric, metric, test.metric, valid.loss, test.loss,
           params_count_elements(&t->model.params), t->options->out_dir);
    if (write_result(t, valid, test, seconds) != 0) return -1;
    /* The run's figures are a convenience: a missing gnuplot is a warning, not a failed run. */
    char why[1024];
    if (!t->options->no_plots &&
        plot_run_figures(t->options->out_dir, t->ckpt_path, why, sizeof why) != 0)
        fprintf(stderr, "cpool train: warning: figures not drawn: %s\n", why);
    return 0;
}

static void trainer_free(Trainer *t) {
    if (t->log.fp) csv_log_close(&t->log, t->err, sizeof t->err);
    if (t->tape) tape_free(t->tape);
    if (t->opt.m) adamw_free(&t->opt);
    if (t->model.params.items) model_free(&t->model);
    run_data_free(&t->data);
    free(t->state.config);
}

/* Whether dir has a checkpoint: a fresh run there would replace it. */
static int holds_run(const char *dir) {
    char path[RUN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    struct stat info;
    return stat(path, &info) == 0;
}

int cmd_train(int argc, char **argv) {
    static TrainOptions options; /* large: RunConfig holds paths */
    memset(&options, 0, sizeof options);
    int parsed = parse_args(argc, argv, &options);
    if (parsed != 0) return parsed > 0 ? 0 : EXIT_USAGE;
    if (options.threads > 0) omp_set_num_threads(options.threads);
    if (!options.out_dir[0])
        snprintf(options.out_dir, sizeof options.out_dir, "runs/%s",
                 model_kind_name(options.run.model.kind));
    if (!options.resume && !options.force && holds_run(options.out_dir)) {
        fprintf(stderr,
                "cpool train: %s already holds a run (checkpoint.safetensors); continue it with "
                "--resume, replace it with --force, or choose another --out\n",
                options.out_dir);
        return EXIT_USAGE;
    }
    static Trainer t;
    memset(&t, 0, sizeof t);
    t.options = &options;
    int status = 0;
    if (setup(&t) != 0) status = -1;
    double session_start = wall_seconds();
    if (status == 0) {
        fprintf(stderr, "%s %s: %ld parameters, %s, step %ld of %ld, %d threads -> %s\n",
                options.resume ? "resuming" : "training", model_kind_name(t.run.model.kind),
                params_count_elements(&t.model.params), model_pool_name(t.run.model.pool),
                t.state.step, t.run.train.steps, omp_get_max_threads(), options.out_dir);
        interrupt_install();
        status = train_loop(&t, session_start);
        interrupt_restore();
    }
    if (status == 1)
        fprintf(stderr,
                "stopped at step %ld; checkpoint saved. Continue with: cpool train "
                "--resume --out %s\n",
                t.state.step, options.out_dir);
    if (status == 0 && finish(&t, session_start) != 0) status = -1;
    if (status < 0) fprintf(stderr, "cpool train: %s\n", t.err);
    trainer_free(&t);
    return status < 0 ? EXIT_DATA : status == 1 ? EXIT_INTERRUPTED : 0;
}
