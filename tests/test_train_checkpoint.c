/* test_train_checkpoint.c - checkpoints: an exact round trip of parameters, AdamW state and
 * training state; a run saved at step k, reloaded into a fresh model and continued is bit for
 * bit the run never interrupted; every malformed checkpoint is refused with one line naming the
 * file and the tensor or metadata key, and a refused load changes nothing; a change to any byte
 * of the tensor data is caught by the payload checksum, which every checkpoint must carry. */
#include "test_train_util.h"

#include <ctype.h>

#include "checkpoint.h"
#include "embedding.h"
#include "layernorm.h"
#include "linear.h"
#include "ops.h"
#include "safetensors.h"

/* --- A tiny model: embedding -> dropout -> layernorm -> linear, next-token loss ----------------
 */

#define VOCAB 7
#define DIM   5
#define ROWS  6

typedef struct Tiny {
    ParamSet params;
    Embedding embed; /* "embed.weight" (7, 5): decayed */
    LayerNorm norm;  /* "norm.weight", "norm.bias" (5): not decayed */
    Linear head;     /* "head.weight" (7, 5): decayed; "head.bias" (7): not */
    AdamW opt;
} Tiny;

static void tiny_init(Tiny *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    m->params = (ParamSet){0};
    embedding_init(&m->embed, (EmbeddingConfig){.vocab = VOCAB, .dim = DIM}, &m->params, "embed",
                   &rng);
    layernorm_init(&m->norm, (LayerNormConfig){.dim = DIM}, &m->params, "norm");
    linear_init(&m->head, (LinearConfig){.in = DIM, .out = VOCAB, .bias = 1}, &m->params, "head",
                &rng);
    adamw_init(&m->opt, &m->params,
               (AdamWConfig){.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-7, .weight_decay = 0.05});
}

static void tiny_free(Tiny *m) {
    adamw_free(&m->opt);
    params_free(&m->params);
}

/* Training steps until state->step == until: every random draw (ids, dropout) comes from
 * state->rng, the lr from the schedule at state->step, gradients clipped. */
static void train_until(Tiny *m, TrainState *state, long until) {
    LrSchedule schedule = {.peak_lr = 0.05, .min_lr = 0.005, .warmup_steps = 3, .total_steps = 12};
    Tape *tape = tape_create();
    for (; state->step < until; state->step++) {
        int ids[ROWS + 1];
        for (int i = 0; i <= ROWS; i++) ids[i] = rng_int(&state->rng, VOCAB);
        Tensor *x = embedding_forward(tape, &m->embed, ids, 1, (int[]){ROWS});
        x = op_dropout(tape, x, (real)0.1, &state->rng);
        Tensor *logits = linear_forward(tape, &m->head, layernorm_forward(tape, &m->norm, x));
        tape_backward(tape, op_cross_entropy(tape, logits, ids + 1, -1));
        clip_grad_norm(&m->params, 0.5);
        adamw_step(&m->opt, lr_schedule_at(&schedule, state->step));
        params_zero_grad(&m->params);
        tape_reset(tape);
        state->tokens += ROWS;
        state->elapsed_seconds += 0.125;
    }
    tape_free(tape);
}

static TrainState fresh_state(void) {
    TrainState state = {.config = "{\"model\": \"tiny\", \"note\": \"quote \\\" and\\nnewline\"}"};
    rng_seed(&state.rng, 2024);
    return state;
}

static void assert_same_bits(const Tensor *a, const Tensor *b, const char *what) {
    assert_int_equal(a->size, b->size);
    if (memcmp(a->data, b->data, (size_t)a->size * sizeof(real)) != 0)
        fail_msg("%s: the values differ", what);
}

static void assert_same_model(const Tiny *a, const Tiny *b) {
    for (int i = 0; i < a->params.count; i++) {
        assert_string_equal(a->params.items[i].name, b->params.items[i].name);
        assert_same_bits(a->params.items[i].tensor, b->params.items[i].tensor,
                         a->params.items[i].name);
        assert_same_bits(a->opt.m[i], b->opt.m[i], "optimizer m");
        assert_same_bits(a->opt.v[i], b->opt.v[i], "optimizer v");
        assert_int_equal(a->opt.decay[i], b->opt.decay[i]);
    }
    assert_int_equal(a->opt.step, b->opt.step);
    assert_memory_equal(&a->opt.config, &b->opt.config, sizeof a->opt.config);
}

static void save_ok(const char *path, const Tiny *m, const TrainState *state) {
    char err[512];
    if (checkpoint_save(path, &m->params, &m->opt, state, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void load_ok(const char *path, Tiny *m, TrainState *state) {
    char err[512];
    if (checkpoint_load(path, &m->params, &m->opt, state, err, sizeof err) != 0)
        fail_msg("%s", err);
}

/* --- Round trip and resume ---------------------------------------------------------------------
 */

static void test_round_trip_restores_every_bit(void **state_) {
    (void)state_;
    Tiny a, b;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    train_until(&a, &state, 3);
    a.opt.decay[0] = 0; /* an override must survive too */
    a.opt.config.weight_decay = 0.0625;
    const char *path = train_temp_path("round.safetensors");
    save_ok(path, &a, &state);

    tiny_init(&b, 99); /* other values, default decay flags and hyperparameters */
    TrainState loaded;
    load_ok(path, &b, &loaded);
    assert_same_model(&a, &b);
    assert_int_equal(loaded.step, 3);
    assert_int_equal(loaded.tokens, 3 * ROWS);
    assert_true(loaded.elapsed_seconds == 0.375);
    assert_memory_equal(loaded.rng.state, state.rng.state, sizeof state.rng.state);
    assert_string_equal(loaded.config, state.config);
    free(loaded.config);

    char *config, err[256];
    assert_int_equal(checkpoint_read_config(path, &config, err, sizeof err), 0);
    assert_string_equal(config, state.config);
    free(config);
    tiny_free(&a);
    tiny_free(&b);
}

static void test_resumed_run_is_bit_identical_to_an_uninterrupted_one(void **state_) {
    (void)state_;
    Tiny straight, first, resumed;
    tiny_init(&straight, 1);
    TrainState s = fresh_state();
    train_until(&straight, &s, 12);

    tiny_init(&first, 1);
    TrainState t = fresh_state();
    train_until(&first, &t, 5);
    const char *path = train_temp_path("resume.safetensors");
    save_ok(path, &first, &t);
    tiny_free(&first); /* the interrupted process is gone */

    tiny_init(&resumed, 77);
    TrainState u;
    load_ok(path, &resumed, &u);
    assert_int_equal(u.step, 5);
    train_until(&resumed, &u, 12);

    assert_same_model(&straight, &resumed);
    assert_memory_equal(s.rng.state, u.rng.state, sizeof s.rng.state);
    assert_int_equal(s.tokens, u.tokens);
    assert_true(s.elapsed_seconds == u.elapsed_seconds);
    free(u.config);
    tiny_free(&straight);
    tiny_free(&resumed);
}

static void test_parameters_alone_load_into_a_model_for_evaluation(void **state_) {
    (void)state_;
    Tiny a, b;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    train_until(&a, &state, 2);
    const char *path = train_temp_path("eval.safetensors");
    save_ok(path, &a, &state);
    tiny_init(&b, 5);
    char err[256];
    assert_int_equal(checkpoint_load(path, &b.params, NULL, NULL, err, sizeof err), 0);
    for (int i = 0; i < a.params.count; i++)
        assert_same_bits(a.params.items[i].tensor, b.params.items[i].tensor, "parameter");
    assert_int_equal(b.opt.step, 0); /* the optimizer was not asked for */

    /* and a checkpoint saved without optimizer or state holds the parameters only */
    const char *bare = train_temp_path("bare.safetensors");
    assert_int_equal(checkpoint_save(bare, &a.params, NULL, NULL, err, sizeof err), 0);
    assert_int_equal(checkpoint_load(bare, &b.params, NULL, NULL, err, sizeof err), 0);
    TrainState unused;
    assert_int_equal(checkpoint_load(bare, &b.params, &b.opt, &unused, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing metadata 'optim'"));
    tiny_free(&a);
    tiny_free(&b);
}

/* --- Malformed checkpoints -------------------------------------------------------------------- */

/* Rewrite the checkpoint at `from` into TEMP/to_name with metadata key set to value (NULL:
 * removed, a new key: added; key NULL: metadata unchanged) and, if drop is not NULL, without the
 * tensor called drop. The payload checksum is recomputed for what is written (the writer refuses
 * a wrong one), unless key is the checksum's own. */
static const char *rewrite(const char *from, const char *to_name, const char *key,
                           const char *value, const char *drop) {
    SafetensorsFile file;
    char err[512];
    if (safetensors_read(from, &file, err, sizeof err) != 0) fail_msg("%s", err);
    ParamSet view = {0};
    view.items = calloc((size_t)file.count + 1, sizeof(Param));
    for (int i = 0; i < file.count; i++) {
        if (drop && strcmp(file.names[i], drop) == 0) continue;
        strcpy(view.items[view.count].name, file.names[i]);
        view.items[view.count++].tensor = file.tensors[i];
    }
    const char *list[64];
    int n = 0, replaced = 0;
    char checksum[16];
    snprintf(checksum, sizeof checksum, "0x%08lx",
             safetensors_payload_crc32(&view, SAFETENSORS_DATA, SAFETENSORS_REAL));
    for (int k = 0; k < file.n_metadata; k++) {
        int is_key = key && strcmp(file.metadata_keys[k], key) == 0;
        int is_checksum = strcmp(file.metadata_keys[k], SAFETENSORS_CHECKSUM_KEY) == 0;
        replaced |= is_key;
        if (is_key && !value) continue;
        list[n++] = file.metadata_keys[k];
        list[n++] = is_key ? value : is_checksum ? checksum : file.metadata_values[k];
    }
    if (key && !replaced && value) list[n++] = key, list[n++] = value;
    list[n] = NULL;
    static char path[1024];
    snprintf(path, sizeof path, "%s", train_temp_path(to_name));
    if (safetensors_save_params(path, &view, SAFETENSORS_DATA, SAFETENSORS_REAL, list, err,
                                sizeof err) != 0)
        fail_msg("%s", err);
    free(view.items);
    safetensors_file_free(&file);
    return path;
}

/* Loading `path` into a fresh Tiny must fail with one line starting with the path and saying
 * `expected`, and leave the model, optimizer and state untouched. */
static void expect_refused(const char *path, const char *expected) {
    Tiny m;
    tiny_init(&m, 3);
    Tiny untouched;
    tiny_init(&untouched, 3);
    TrainState state = {.step = -7};
    char err[512];
    if (checkpoint_load(path, &m.params, &m.opt, &state, err, sizeof err) == 0)
        fail_msg("%s loaded but should fail with \"%s\"", path, expected);
    if (strncmp(err, path, strlen(path)) != 0) fail_msg("error \"%s\" does not name the file", err);
    if (!strstr(err, expected)) fail_msg("error \"%s\" does not say \"%s\"", err, expected);
    if (strchr(err, '\n')) fail_msg("error \"%s\" is more than one line", err);
    assert_same_model(&m, &untouched);
    assert_int_equal(state.step, -7);
    tiny_free(&m);
    tiny_free(&untouched);
}

static void test_every_bad_metadata_value_is_named(void **state_) {
    (void)state_;
    Tiny a;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    train_until(&a, &state, 2);
    char good[1024];
    snprintf(good, sizeof good, "%s", train_temp_path("good.safetensors"));
    save_ok(good, &a, &state);
    tiny_free(&a);

    struct {
        const char *key, *value, *expected;
    } cases[] = {
        {"format", "something else", "metadata 'format': expected 'contextpool-c checkpoint 1'"},
        {"format", NULL, "missing metadata 'format'"},
        {"step", "-5", "metadata 'step': expected an unsigned 64-bit decimal integer, got '-5'"},
        {"step", "12x", "metadata 'step': expected an unsigned 64-bit decimal integer"},
        {"step", "1\n2", "metadata 'step': expected an unsigned 64-bit decimal integer, got '1?2'"},
        {"step", "", "metadata 'step': expected an unsigned 64-bit decimal integer, got ''"},
        {"step", "18446744073709551615", "metadata 'step': expected a count that fits a long"},
        {"tokens", NULL, "missing metadata 'tokens'"},
        {"elapsed_seconds", "nan", "metadata 'elapsed_seconds': expected a number in [0, inf]"},
        {"rng.2", "18446744073709551616", "metadata 'rng.2': expected an unsigned 64-bit"},
        {"rng.0", " 12", "metadata 'rng.0': expected an unsigned 64-bit decimal integer"},
        {"rng.3", NULL, "missing metadata 'rng.3'"},
        {"config", NULL, "missing metadata 'config'"},
        {"optim", "sgd", "metadata 'optim': expected 'adamw', got 'sgd'"},
        {"optim.step", "1.5", "metadata 'optim.step': expected an unsigned 64-bit"},
        {"optim.beta1", "1", "metadata 'optim.beta1': expected a number in [0, 1), got '1'"},
        {"optim.beta2", "0.9x", "metadata 'optim.beta2': expected a number in [0, 1)"},
        {"optim.eps", "-1e-8", "metadata 'optim.eps': expected a number in [0, inf]"},
        {"optim.weight_decay", NULL, "missing metadata 'optim.weight_decay'"},
        {"optim.decay", "1010",
         "metadata 'optim.decay': expected 5 characters '0' or '1' (one "
         "per parameter), got '1010'"},
        {"optim.decay", "10201", "metadata 'optim.decay': expected 5 characters"},
        {"real", REAL_NAME "x", "metadata 'real': expected '" REAL_NAME "' (resume with the build"},
        {SAFETENSORS_CHECKSUM_KEY, NULL,
         "missing metadata 'checksum.crc32' (every checkpoint carries the CRC-32 of its tensor "
         "data)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        expect_refused(rewrite(good, "bad.safetensors", cases[k].key, cases[k].value, NULL),
                       cases[k].expected);
}

static void test_missing_extra_and_misshapen_tensors_are_named(void **state_) {
    (void)state_;
    Tiny a;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    char good[1024];
    snprintf(good, sizeof good, "%s", train_temp_path("tensors.safetensors"));
    save_ok(good, &a, &state);
    expect_refused(rewrite(good, "t1.safetensors", NULL, NULL, "norm.bias"),
                   "missing tensor 'norm.bias' (the model expects shape (5))");
    expect_refused(rewrite(good, "t2.safetensors", NULL, NULL, "optim.v.head.weight"),
                   "missing tensor 'optim.v.head.weight' (the model expects shape (7, 5))");
    tiny_free(&a);

    /* a model with one more parameter, and one with a different shape */
    ParamSet bigger = {0};
    Tiny source;
    tiny_init(&source, 1);
    for (int i = 0; i < source.params.count; i++) {
        const Tensor *t = source.params.items[i].tensor;
        params_new(&bigger, NULL, source.params.items[i].name, t->ndim, t->shape);
    }
    tiny_free(&source);
    params_new(&bigger, "extra", "scale", 1, (int[]){1});
    char err[512];
    snprintf(good, sizeof good, "%s", train_temp_path("bigger.safetensors"));
    assert_int_equal(checkpoint_save(good, &bigger, NULL, &state, err, sizeof err), 0);
    expect_refused(good, "unexpected tensor 'extra.scale' (the model has no parameter");
    params_free(&bigger);

    ParamSet other = {0};
    params_new(&other, "embed", "weight", 2, (int[]){VOCAB, DIM + 1});
    snprintf(good, sizeof good, "%s", train_temp_path("shape.safetensors"));
    assert_int_equal(checkpoint_save(good, &other, NULL, NULL, err, sizeof err), 0);
    expect_refused(good, "tensor 'embed.weight' has shape (7, 6) but the model expects (7, 5)");
    params_free(&other);

    expect_refused(train_temp_path("absent.safetensors"), "cannot open");
    /* a plain parameter file is not a checkpoint */
    Tiny plain;
    tiny_init(&plain, 1);
    snprintf(good, sizeof good, "%s", train_temp_path("plain.safetensors"));
    assert_int_equal(safetensors_save_params(good, &plain.params, SAFETENSORS_DATA,
                                             SAFETENSORS_REAL, NULL, err, sizeof err),
                     0);
    expect_refused(good, "missing metadata 'format'");
    tiny_free(&plain);
}

/* --- The payload checksum --------------------------------------------------------------------
 */

/* Where the data part of the safetensors file bytes[0..n) starts: after the 8-byte length and
 * the header. */
static size_t data_start(const char *bytes, size_t n) {
    assert_true(n >= 8);
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--) header = header << 8 | (unsigned char)bytes[i];
    assert_true(header <= n - 8);
    return 8 + (size_t)header;
}

/* The offset of the checksum's 8 hex digits in the header of bytes (a good checkpoint). */
static size_t checksum_digits(const char *bytes) {
    const char *key = strstr(bytes + 8, "\"" SAFETENSORS_CHECKSUM_KEY "\":\"0x");
    assert_non_null(key);
    return (size_t)(key - bytes) + strlen("\"" SAFETENSORS_CHECKSUM_KEY "\":\"0x");
}

/* Both readers refuse `path` with one line that starts with the path and says `expected`. */
static void expect_both_refuse(const char *path, const char *expected) {
    expect_refused(path, expected);
    char *config = NULL, err[512];
    assert_int_equal(checkpoint_read_config(path, &config, err, sizeof err), -1);
    assert_null(config);
    if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, expected) || strchr(err, '\n'))
        fail_msg("checkpoint_read_config: error \"%s\" is not one line naming %s and saying "
                 "\"%s\"",
                 err, path, expected);
}

static void test_every_damaged_data_byte_is_caught(void **state_) {
    (void)state_;
    Tiny a;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    train_until(&a, &state, 2);
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s", train_temp_path("sum.safetensors"));
    snprintf(bad, sizeof bad, "%s", train_temp_path("sum_bad.safetensors"));
    save_ok(good, &a, &state);
    tiny_free(&a);
    size_t n;
    char *bytes = train_read_file(good, &n);
    size_t start = data_start(bytes, n);
    assert_true(start < n);
    /* A CRC-32 detects every burst of errors 32 bits long or shorter, so every single byte
     * changed anywhere in the data part is caught: each one is tried (the data part is a few KB).
     * The new value is the old one with all bits flipped, the largest change within a byte. */
    char message[1200];
    for (size_t at = start; at < n; at++) {
        bytes[at] = (char)~bytes[at];
        train_write_file(bad, bytes, n);
        bytes[at] = (char)~bytes[at];
        SafetensorsFile file;
        char err[512];
        if (safetensors_read(bad, &file, err, sizeof err) == 0)
            fail_msg("byte %zu of %zu changed, and the file still reads", at, n);
        snprintf(message, sizeof message, "%s: payload checksum mismatch (stored 0x", bad);
        if (strncmp(err, message, strlen(message)) != 0 ||
            !strstr(err, "): the file is damaged or was edited") || strchr(err, '\n'))
            fail_msg("byte %zu changed: error \"%s\"", at, err);
    }
    /* one of them through both checkpoint readers, which change nothing */
    bytes[n - 1] ^= 0x01;
    train_write_file(bad, bytes, n);
    expect_both_refuse(bad, "payload checksum mismatch (stored 0x");
    free(bytes);
}

static void test_stored_checksum_is_checked_and_named(void **state_) {
    (void)state_;
    Tiny a;
    tiny_init(&a, 1);
    TrainState state = fresh_state();
    char good[1024], bad[1024];
    snprintf(good, sizeof good, "%s", train_temp_path("stored.safetensors"));
    snprintf(bad, sizeof bad, "%s", train_temp_path("stored_bad.safetensors"));
    save_ok(good, &a, &state);
    size_t n;
    char *bytes = train_read_file(good, &n);
    size_t digits = checksum_digits(bytes);
    char saved[9];
    memcpy(saved, bytes + digits, 8);
    saved[8] = '\0';

    /* a different, well-formed value: the message shows both, stored first */
    const char *other = strcmp(saved, "0badf00d") == 0 ? "0badf00e" : "0badf00d";
    memcpy(bytes + digits, other, 8);
    train_write_file(bad, bytes, n);
    char expected[256];
    snprintf(expected, sizeof expected,
             "payload checksum mismatch (stored 0x%s, computed 0x%s): the file is damaged or was "
             "edited",
             other, saved);
    expect_both_refuse(bad, expected);

    /* values that are not 0x and 8 hex digits (the same length, so the header stays valid) */
    const char *malformed[] = {"0badf0g0", "-1234567", " 1234567", "1234567 "};
    for (size_t k = 0; k < sizeof malformed / sizeof malformed[0]; k++) {
        memcpy(bytes + digits, malformed[k], 8);
        train_write_file(bad, bytes, n);
        expect_both_refuse(bad, "metadata 'checksum.crc32': expected 0x and 8 hex digits (the "
                                "CRC-32 of the data part), got '0x");
    }
    memcpy(bytes + digits - 1, "X", 1); /* "0X...": the prefix is "0x" exactly */
    memcpy(bytes + digits, saved, 8);
    train_write_file(bad, bytes, n);
    expect_both_refuse(bad, "metadata 'checksum.crc32': expected 0x and 8 hex digits");
    free(bytes);

    /* upper-case digits are the same number */
    bytes = train_read_file(good, &n);
    for (int i = 0; i < 8; i++) bytes[digits + i] = (char)toupper((unsigned char)bytes[digits + i]);
    train_write_file(bad, bytes, n);
    Tiny b;
    tiny_init(&b, 4);
    TrainState loaded;
    load_ok(bad, &b, &loaded);
    assert_same_model(&a, &b);
    free(loaded.config);
    tiny_free(&b);
    free(bytes);

    /* the writer will not put a wrong checksum into a file */
    char err[512];
    const char *wrong[] = {"format", CHECKPOINT_FORMAT, SAFETENSORS_CHECKSUM_KEY, "0x00000000",
                           NULL};
    const char *never = train_temp_path("never_written.safetensors");
    assert_int_equal(safetensors_save_params(never, &a.params, SAFETENSORS_DATA, SAFETENSORS_REAL,
                                             wrong, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "metadata 'checksum.crc32' is '0x00000000' but the data written "
                                "has CRC-32 0x"));
    assert_int_equal(access(never, F_OK), -1);
    tiny_free(&a);
}

static void test_programming_errors_fail_loudly(void **state_) {
    (void)state_;
    Tiny a, b;
    tiny_init(&a, 1);
    tiny_init(&b, 1);
    char err[256];
    const char *path = train_temp_path("never.safetensors");
    EXPECT_FAIL(checkpoint_save(path, &a.params, &b.opt, NULL, err, sizeof err),
                "checkpoint_save: the optimizer was made for another parameter set");
    EXPECT_FAIL(checkpoint_load(path, &a.params, &b.opt, NULL, err, sizeof err),
                "checkpoint_load: the optimizer was made for another parameter set");
    assert_int_equal(access(path, F_OK), -1);
    tiny_free(&a);
    tiny_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_restores_every_bit),
        cmocka_unit_test(test_resumed_run_is_bit_identical_to_an_uninterrupted_one),
        cmocka_unit_test(test_parameters_alone_load_into_a_model_for_evaluation),
        cmocka_unit_test(test_every_bad_metadata_value_is_named),
        cmocka_unit_test(test_missing_extra_and_misshapen_tensors_are_named),
        cmocka_unit_test(test_every_damaged_data_byte_is_caught),
        cmocka_unit_test(test_stored_checksum_is_checked_and_named),
        cmocka_unit_test(test_programming_errors_fail_loudly),
    };
    return cmocka_run_group_tests_name("train: checkpoint (" REAL_NAME ")", tests,
                                       train_temp_dir_create, train_temp_dir_remove);
}
