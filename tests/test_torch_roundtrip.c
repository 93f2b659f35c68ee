/* test_torch_roundtrip.c - our models and the PyTorch modules of tools/torch/contextpool.py are
 * the same function of the same file, in both directions:
 *
 *   C -> torch   model_init from a run config, checkpoint_save (with AdamW moments, as
 *                `cpool train` writes it), model_forward on fixed inputs; the script's `logits`
 *                command loads that checkpoint and computes the logits in float64.
 *   torch -> C   the script's `init` builds each model with torch's own initialisation and saves
 *                it; C reads the config back from the file, builds the model, checkpoint_load
 *                (parameters only) and model_forward; `logits` gives torch's answer.
 *
 * Loading is strict on both sides (checkpoint_load: every parameter present with its shape and
 * no unknown tensor; torch: load_state_dict(strict=True)), so agreeing logits also mean the
 * parameter names and shapes are the same. The cases cover every model, every pool_feeds, both
 * ablations, the local window, the adaptive span and an untied head.
 *
 * Tolerances, relative to max(1, |logit|): float64 1e-12 - both sides compute in double, in a
 * different order (banded sums against a dense matrix product, one matmul against several), so
 * they differ by rounding only: 1.3e-15 at worst, measured. float32 1e-5 - our float32 forward
 * against torch's float64 one on the same float32 parameters and inputs: the float32 rounding
 * of a few layers of sums of up to 784 terms, about 5e-7 at worst, measured. A parameter changed
 * after saving must break the agreement (the comparison can tell).
 *
 * The suite needs Debian's python3 with torch (CPOOL_PYTHON overrides the interpreter). Without
 * torch (CI) every test is skipped with a message. Three Python runs in all: each handles every
 * case, since starting Python and importing torch takes about a second. Run from the repository
 * root (make test does). */
#include <stdlib.h>
#include <sys/wait.h>

#include "test_train_util.h"

#include "checkpoint.h"
#include "image_data.h"
#include "model.h"
#include "npy.h"
#include "run_config.h"

#define SCRIPT     "tools/torch/contextpool.py"
#define CASE_COUNT ((int)(sizeof cases / sizeof cases[0]))
#define BATCH      2

#ifdef CPOOL_DOUBLE
static const double TOLERANCE = 1e-12;
#else
static const double TOLERANCE = 1e-5;
#endif

/* A model to round-trip: its run-config keys (after the model's defaults). */
typedef struct TorchCase {
    const char *name;
    ModelKind kind;
    const char *keys[12];
} TorchCase;

static const TorchCase cases[] = {
    {"charlm_pool_kv", MODEL_CHARLM, {"dim=16", "heads=2", "seq_len=12", "s_max=3", NULL}},
    {"charlm_plain_untied_window",
     MODEL_CHARLM,
     {"dim=12", "heads=3", "seq_len=10", "pool=none", "tie=0", "window=3", NULL}},
    {"charlm_pool_qkv_uniform_span",
     MODEL_CHARLM,
     {"dim=8", "heads=2", "layers=1", "seq_len=9", "pool_feeds=qkv", "weights=uniform", "s_max=2",
      "span=1", "span_max=5", "span_ramp=2", NULL}},
    {"charlm_pool_stream_fixed",
     MODEL_CHARLM,
     {"dim=8", "heads=1", "seq_len=11", "pool_feeds=stream", "size=fixed", "s_fixed=1.5",
      "pred_kernel=2", "pred_hidden=5", "radius=4", NULL}},
    {"vit_pool_kv", MODEL_VIT, {"dim=8", "heads=2", "patch=7", "s_max=1.5", NULL}},
    {"vit_pool_stream",
     MODEL_VIT,
     {"dim=6", "heads=3", "layers=1", "patch=4", "pool_feeds=stream", "s_max=2", NULL}},
    {"cnn_contextpool", MODEL_CNN, {"channels=4", NULL}},
    {"cnn_avg", MODEL_CNN, {"channels=3", "pool=avg", NULL}},
};

static int torch_available;

static const char *python(void) {
    const char *interpreter = getenv("CPOOL_PYTHON");
    return interpreter ? interpreter : "/usr/bin/python3";
}

/* The exit status of a shell command (-1 if it did not exit normally). */
static int run(const char *command) {
    int status = system(command);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int setup(void **state) {
    if (train_temp_dir_create(state) != 0) return -1;
    char command[512];
    snprintf(command, sizeof command, "%s -c 'import torch' >/dev/null 2>&1", python());
    torch_available = run(command) == 0;
    if (!torch_available)
        print_message("skipping: %s cannot import torch (install python3-torch to run the "
                      "PyTorch round trip)\n",
                      python());
    return 0;
}

#define SKIP_WITHOUT_TORCH()                                                                       \
    do {                                                                                           \
        if (!torch_available) skip();                                                              \
    } while (0)

/* A command line for the script, built a word at a time. */
typedef struct Args {
    char text[CASE_COUNT * 3 * 256 + 64];
} Args;

static void args_add(Args *args, const char *word) {
    size_t used = strlen(args->text);
    if (used + strlen(word) + 2 > sizeof args->text) fail_msg("command line too long");
    snprintf(args->text + used, sizeof args->text - used, "%s%s", used ? " " : "", word);
}

/* The script with these arguments; fails the test unless it exits with 0. */
static void run_script(const Args *args) {
    if (access(SCRIPT, R_OK) != 0)
        fail_msg("%s not found: run the tests from the repository root", SCRIPT);
    static char command[sizeof args->text + 512];
    snprintf(command, sizeof command, "%s %s %s", python(), SCRIPT, args->text);
    int status = run(command);
    if (status != 0) fail_msg("`%s` exited with %d", command, status);
}

/* TEMP/<case>.<suffix> in buf. */
static const char *case_path(char *buf, size_t len, const TorchCase *c, const char *suffix) {
    snprintf(buf, len, "%s/%s.%s", train_temp_dir, c->name, suffix);
    return buf;
}

/* "logits" and the triples CKPT INPUT OUT of every case. */
static void logits_args(Args *args, const char *checkpoint_suffix) {
    char path[256];
    *args = (Args){{0}};
    args_add(args, "logits");
    for (int k = 0; k < CASE_COUNT; k++) {
        args_add(args, case_path(path, sizeof path, &cases[k], checkpoint_suffix));
        args_add(args, case_path(path, sizeof path, &cases[k], "input.npy"));
        args_add(args, case_path(path, sizeof path, &cases[k], "torch.npy"));
    }
}

/* --- The C side -------------------------------------------------------------------------------
 */

static void case_config(const TorchCase *c, RunConfig *run_config) {
    char err[256];
    run_config_defaults(run_config, c->kind);
    for (int i = 0; c->keys[i]; i++)
        if (run_config_set(run_config, c->keys[i], c->name, err, sizeof err) != 0)
            fail_msg("%s", err);
}

/* The case's fixed input (drawn from a seed of its own), written to TEMP/<case>.input.npy:
 * tokens (BATCH, seq_len - 1) as numbers, or images (BATCH, 1, 28, 28) in [0, 1). */
typedef struct CaseInput {
    ModelInput in;
    Tensor *values; /* what the .npy file holds; the images themselves for vit and cnn */
    int *tokens;
} CaseInput;

static void case_input(const TorchCase *c, const ModelConfig *config, int index, CaseInput *out) {
    Rng rng;
    rng_seed(&rng, 1000 + (uint64_t)index);
    *out = (CaseInput){.in = {.batch = BATCH}};
    if (c->kind == MODEL_CHARLM) {
        int N = config->seq_len - 1; /* fewer than seq_len: pos is cut to N rows */
        out->values = tensor_create(2, (int[]){BATCH, N}, 0);
        out->tokens = malloc(sizeof(int) * BATCH * N);
        for (int i = 0; i < BATCH * N; i++) {
            out->tokens[i] = rng_int(&rng, 256);
            out->values->data[i] = (real)out->tokens[i];
        }
        out->in.tokens = out->tokens;
        out->in.len = N;
    } else {
        out->values = tensor_create(4, (int[]){BATCH, 1, IMAGE_SIZE, IMAGE_SIZE}, 0);
        for (long i = 0; i < out->values->size; i++) out->values->data[i] = (real)rng_uniform(&rng);
        out->in.images = out->values;
    }
    char path[256], err[256];
    if (npy_save(case_path(path, sizeof path, c, "input.npy"), out->values, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void case_input_free(CaseInput *input) {
    tensor_free(input->values);
    free(input->tokens);
}

/* The model's logits, as doubles (malloc'd), with their count in *n. */
static double *forward(const Model *model, const ModelInput *in, long *n) {
    Tape *tape = tape_create();
    Tensor *logits = model_forward(tape, model, in, NULL);
    *n = logits->size;
    double *values = malloc(sizeof(double) * (size_t)*n);
    for (long i = 0; i < *n; i++) values[i] = (double)logits->data[i];
    tape_free(tape);
    return values;
}

/* The largest |a - b| / max(1, |b|). */
static double worst_error(const double *a, const double *b, long n) {
    double worst = 0;
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / fmax(1, fabs(b[i])));
    return worst;
}

/* torch's logits for the case (TEMP/<case>.torch.npy) against ours, which must have its shape.
 * perturbed (or NULL): our logits after a change to one parameter, which must NOT agree (so the
 * comparison can tell). */
static void compare(const TorchCase *c, const double *ours, const double *perturbed, long n,
                    const char *direction) {
    char path[256], err[256], what[128];
    double *theirs;
    int ndim, shape[TENSOR_MAX_DIMS];
    if (npy_load_doubles(case_path(path, sizeof path, c, "torch.npy"), &theirs, &ndim, shape, err,
                         sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(shape_size(ndim, shape), n);
    assert_int_equal(ndim, c->kind == MODEL_CHARLM ? 3 : 2);
    double worst = worst_error(ours, theirs, n);
    print_message("%-32s %s: worst relative error %.2g\n", c->name, direction, worst);
    real *got = malloc(sizeof(real) * (size_t)n);
    for (long i = 0; i < n; i++) got[i] = (real)ours[i];
    snprintf(what, sizeof what, "%s, %s: logits", c->name, direction);
    /* In float32, `got` rounds our float32 logits once more: they were float32 already. */
    assert_close(theirs, got, n, TOLERANCE, what);
    if (perturbed && !(worst_error(perturbed, theirs, n) > 100 * TOLERANCE))
        fail_msg("%s: a perturbed parameter still gives torch's logits", c->name);
    free(got);
    free(theirs);
}

/* --- C -> torch -------------------------------------------------------------------------------
 */

/* Every case: build, save a training checkpoint, keep the logits. */
static void c_models_agree_with_torch(void **state) {
    (void)state;
    SKIP_WITHOUT_TORCH();
    double *logits[CASE_COUNT], *perturbed[CASE_COUNT];
    long counts[CASE_COUNT];
    for (int k = 0; k < CASE_COUNT; k++) {
        RunConfig run_config;
        case_config(&cases[k], &run_config);
        Rng rng;
        rng_seed(&rng, 7 + (uint64_t)k);
        Model model;
        model_init(&model, &run_config.model, &rng);
        AdamW opt;
        adamw_init(&opt, &model.params, ADAMW_DEFAULTS);
        char *config_text = run_config_format(&run_config);
        TrainState train_state = {.step = 3, .tokens = 96, .rng = rng, .config = config_text};
        char path[256], err[256];
        if (checkpoint_save(case_path(path, sizeof path, &cases[k], "c.safetensors"), &model.params,
                            &opt, &train_state, err, sizeof err) != 0)
            fail_msg("%s", err);
        CaseInput input;
        case_input(&cases[k], &run_config.model, k, &input);
        logits[k] = forward(&model, &input.in, &counts[k]);
        /* After saving: a bias of 1 on every class, or the final layernorm's gain doubled. */
        Tensor *changed = params_find(&model.params, "head.bias");
        if (!changed) changed = params_find(&model.params, "ln_f.weight");
        for (long i = 0; i < changed->size; i++) changed->data[i] += 1;
        perturbed[k] = forward(&model, &input.in, &counts[k]);
        case_input_free(&input);
        free(config_text);
        adamw_free(&opt);
        model_free(&model);
    }
    static Args args;
    logits_args(&args, "c.safetensors");
    run_script(&args);
    for (int k = 0; k < CASE_COUNT; k++) {
        compare(&cases[k], logits[k], perturbed[k], counts[k], "C checkpoint in torch");
        free(logits[k]);
        free(perturbed[k]);
    }
}

/* --- torch -> C -------------------------------------------------------------------------------
 */

/* The model a checkpoint's config describes, with the checkpoint's parameters. */
static void load_model(const char *path, Model *model) {
    char err[256], *config_text;
    if (checkpoint_read_config(path, &config_text, err, sizeof err) != 0) fail_msg("%s", err);
    RunConfig run_config;
    if (run_config_parse(&run_config, config_text, path, err, sizeof err) != 0) fail_msg("%s", err);
    free(config_text);
    Rng rng;
    rng_seed(&rng, 99);
    model_init(model, &run_config.model, &rng);
    if (checkpoint_load(path, &model->params, NULL, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void torch_models_agree_with_c(void **state) {
    (void)state;
    SKIP_WITHOUT_TORCH();
    for (int k = 0; k < CASE_COUNT; k++) {
        RunConfig run_config;
        case_config(&cases[k], &run_config);
        char *config_text = run_config_format(&run_config), path[256];
        train_write_file(case_path(path, sizeof path, &cases[k], "config.txt"), config_text,
                         strlen(config_text));
        free(config_text);
    }
    static Args args;
    args = (Args){{0}};
    args_add(&args, "init");
    for (int k = 0; k < CASE_COUNT; k++) {
        char path[256], seed[16];
        snprintf(seed, sizeof seed, "%d", 20 + k);
        args_add(&args, case_path(path, sizeof path, &cases[k], "config.txt"));
        args_add(&args, seed);
        args_add(&args, case_path(path, sizeof path, &cases[k], "torch.safetensors"));
    }
    run_script(&args);
    double *logits[CASE_COUNT];
    long counts[CASE_COUNT];
    for (int k = 0; k < CASE_COUNT; k++) {
        char path[256];
        Model model;
        load_model(case_path(path, sizeof path, &cases[k], "torch.safetensors"), &model);
        CaseInput input;
        case_input(&cases[k], &model.config, k, &input);
        logits[k] = forward(&model, &input.in, &counts[k]);
        case_input_free(&input);
        model_free(&model);
    }
    logits_args(&args, "torch.safetensors");
    run_script(&args);
    for (int k = 0; k < CASE_COUNT; k++) {
        compare(&cases[k], logits[k], NULL, counts[k], "torch model in C");
        free(logits[k]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(c_models_agree_with_torch),
        cmocka_unit_test(torch_models_agree_with_c),
    };
    return cmocka_run_group_tests_name("torch round trip", tests, setup, train_temp_dir_remove);
}
