/* test_run_config.c - the run configuration: defaults, key=value assignments, config texts, their
 * one-line errors, and format -> parse giving back the same config. */
#include "test_util.h"

#include <stdlib.h>

#include "image_data.h"
#include "run_config.h"

/* Two configs are the same when their formatted texts are (the text holds every key). */
static void assert_same_config(const RunConfig *expected, const RunConfig *got) {
    char *expected_text = run_config_format(expected);
    char *got_text = run_config_format(got);
    assert_string_equal(expected_text, got_text);
    free(expected_text);
    free(got_text);
}

static void set_or_fail(RunConfig *run, const char *assignment) {
    char err[256];
    if (run_config_set(run, assignment, "test", err, sizeof err) != 0)
        fail_msg("'%s' was refused: %s", assignment, err);
}

/* The assignment is refused with exactly this message, and the run is left as it was. */
#define expect_refused(run, assignment, message)                                                   \
    do {                                                                                           \
        RunConfig before_ = *(run);                                                                \
        char err_[512] = "";                                                                       \
        assert_int_equal(run_config_set((run), (assignment), "command line", err_, sizeof err_),   \
                         -1);                                                                      \
        assert_string_equal(err_, (message));                                                      \
        assert_same_config(&before_, (run));                                                       \
    } while (0)

static void test_defaults_for_each_model(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    assert_int_equal(run.model.kind, MODEL_CHARLM);
    assert_int_equal(run.model.dim, 128);
    assert_int_equal(run.model.heads, 4);
    assert_int_equal(run.model.layers, 2);
    assert_int_equal(run.model.seq_len, 256);
    assert_int_equal(run.model.tie, 1);
    assert_int_equal(run.model.pool, MODEL_POOL_CONTEXTPOOL);
    assert_true(run.model.variant.cp.s_min == 0.5 && run.model.variant.cp.s_max == 8);
    assert_string_equal(run.train.data, "data/kjv.txt");
    assert_int_equal(run.train.batch, 16);
    assert_int_equal(run.train.steps, 2000);
    assert_true(run.train.lr == 2e-3 && run.train.min_lr == 2e-4);
    assert_int_equal(run.train.warmup, 100);
    assert_true(run.train.weight_decay == 0.1 && run.train.clip == 1.0);
    assert_int_equal(run.train.eval_every, 250);
    assert_int_equal(run.train.eval_batches, 16);
    assert_int_equal(run.train.checkpoint_every, 500);
    assert_int_equal(run.train.seed, 1);
    assert_int_equal(run.train.n_valid, 5000);

    run_config_defaults(&run, MODEL_VIT);
    assert_int_equal(run.model.kind, MODEL_VIT);
    assert_int_equal(run.model.dim, 64);
    assert_int_equal(run.model.heads, 4);
    assert_int_equal(run.model.layers, 2);
    assert_int_equal(run.model.patch, 4);
    assert_int_equal(run.model.pool, MODEL_POOL_CONTEXTPOOL);
    assert_string_equal(run.train.data, FASHION_MNIST_DIR);
    assert_int_equal(run.train.batch, 64);
    assert_true(run.train.lr == 1e-3 && run.train.min_lr == 1e-4);
    assert_true(run.train.weight_decay == 0.05);
    assert_int_equal(run.train.eval_batches, 20);
    assert_int_equal(run.train.n_valid, 5000);

    run_config_defaults(&run, MODEL_CNN);
    assert_int_equal(run.model.kind, MODEL_CNN);
    assert_int_equal(run.model.channels, 16);
    assert_int_equal(run.model.pool, MODEL_POOL_CONTEXTPOOL);
    assert_string_equal(run.train.data, FASHION_MNIST_DIR);
    assert_int_equal(run.train.batch, 64);
    assert_int_equal(run.train.steps, 2000);
}

static void test_an_unknown_model_kind_fails(void **state) {
    (void)state;
    RunConfig run;
    EXPECT_FAIL(run_config_defaults(&run, (ModelKind)7), "unknown model kind 7");
}

static void test_each_type_of_key_is_set(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    set_or_fail(&run, "layers=4");         /* int */
    set_or_fail(&run, "  dim  =  96  ");   /* spaces around both sides */
    set_or_fail(&run, "steps=1000000000"); /* long, at its maximum */
    set_or_fail(&run, "seed=18446744073709551615");
    set_or_fail(&run, "lr=3e-4"); /* double */
    set_or_fail(&run, "clip=0");  /* >= 0 takes 0 */
    set_or_fail(&run, "pool=none");
    set_or_fail(&run, "pool_feeds=stream");
    set_or_fail(&run, "weights=uniform");
    set_or_fail(&run, "size=fixed");
    set_or_fail(&run, "s_fixed=1.5");
    set_or_fail(&run, "span=1");
    set_or_fail(&run, "data = /tmp/some dir/kjv.txt");
    set_or_fail(&run, "n_valid=59999"); /* a vit/cnn key: accepted by a charlm run */
    assert_int_equal(run.model.layers, 4);
    assert_int_equal(run.model.dim, 96);
    assert_int_equal(run.train.steps, 1000000000L);
    assert_true(run.train.seed == 18446744073709551615ULL);
    assert_true(run.train.lr == 3e-4);
    assert_true(run.train.clip == 0);
    assert_int_equal(run.model.pool, MODEL_POOL_NONE);
    assert_int_equal(run.model.variant.pool_feeds, BLOCK_POOL_FEEDS_STREAM);
    assert_int_equal(run.model.variant.cp.weights_uniform, 1);
    assert_int_equal(run.model.variant.cp.size_fixed, 1);
    assert_true(run.model.variant.cp.s_fixed == 1.5);
    assert_int_equal(run.model.variant.attn.span, 1);
    assert_string_equal(run.train.data, "/tmp/some dir/kjv.txt");
    assert_int_equal(run.train.n_valid, 59999);
    set_or_fail(&run, "weights=learned");
    assert_int_equal(run.model.variant.cp.weights_uniform, 0);
}

static void test_model_first_sets_every_default_of_that_model(void **state) {
    (void)state;
    RunConfig run, vit;
    run_config_defaults(&run, MODEL_CHARLM);
    run_config_defaults(&vit, MODEL_VIT);
    set_or_fail(&run, "model=vit");
    assert_same_config(&vit, &run);
    set_or_fail(&run, "model=cnn"); /* nothing else set yet: still allowed */
    assert_int_equal(run.model.kind, MODEL_CNN);
}

static void test_model_after_another_key_is_refused(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    set_or_fail(&run, "layers=4");
    expect_refused(&run, "model=vit",
                   "command line: model=vit: model must be the first key (it sets the defaults "
                   "of every other key)");
    expect_refused(&run, "model=charlm",
                   "command line: model=charlm: model must be the first key (it sets the defaults "
                   "of every other key)");
}

static void test_unknown_key_and_malformed_assignments(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    expect_refused(&run, "lyaers=4",
                   "command line: unknown key 'lyaers' (`cpool train --help` lists the keys)");
    expect_refused(&run, "lay=4",
                   "command line: unknown key 'lay' (`cpool train --help` lists the keys)");
    expect_refused(&run, "Layers=4",
                   "command line: unknown key 'Layers' (`cpool train --help` lists the keys)");
    expect_refused(&run, "layers 4", "command line: 'layers 4': expected key = value");
    expect_refused(&run, " = 4", "command line: '= 4': expected key = value");
    expect_refused(&run, "", "command line: '': expected key = value");
}

static void test_integers_are_read_in_full_and_in_range(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    expect_refused(&run, "dim=12x", "command line: dim=12x: expected an integer, got '12x'");
    expect_refused(&run, "dim=12.0", "command line: dim=12.0: expected an integer, got '12.0'");
    expect_refused(&run, "dim=0x10", "command line: dim=0x10: expected an integer, got '0x10'");
    expect_refused(&run, "steps=10 5", "command line: steps=10 5: expected an integer, got '10 5'");
    expect_refused(&run, "dim=abc", "command line: dim=abc: expected an integer, got 'abc'");
    expect_refused(&run, "layers=0", "command line: layers=0: expected an integer in 1..16");
    expect_refused(&run, "layers=17", "command line: layers=17: expected an integer in 1..16");
    expect_refused(&run, "heads=-1", "command line: heads=-1: expected an integer in 1..256");
    expect_refused(&run, "tie=2", "command line: tie=2: expected an integer in 0..1");
    expect_refused(&run, "steps=1000000001",
                   "command line: steps=1000000001: expected an integer in 1..1000000000");
    expect_refused(&run, "warmup=-1", "command line: warmup=-1: expected an integer >= 0");
    expect_refused(&run, "checkpoint_every=0",
                   "command line: checkpoint_every=0: expected an integer >= 1");
    expect_refused(&run, "n_valid=60000",
                   "command line: n_valid=60000: expected an integer in 1..59999");
    /* Beyond int: the range check, not a truncation, refuses it. */
    expect_refused(&run, "eval_batches=2147483648",
                   "command line: eval_batches=2147483648: expected an integer >= 0");
    /* Beyond long long: strtoll's ERANGE. */
    expect_refused(&run, "dim=99999999999999999999",
                   "command line: dim=99999999999999999999: expected an integer in 1..4096");
    /* warmup's range ends at LONG_MAX, where strtoll clamps: only ERANGE tells. */
    expect_refused(&run, "warmup=99999999999999999999",
                   "command line: warmup=99999999999999999999: expected an integer >= 0");
    expect_refused(&run, "warmup=-99999999999999999999",
                   "command line: warmup=-99999999999999999999: expected an integer >= 0");
}

static void test_seeds_are_unsigned_64_bit(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    set_or_fail(&run, "seed=0");
    assert_true(run.train.seed == 0);
    expect_refused(&run, "seed=18446744073709551616",
                   "command line: seed=18446744073709551616: expected an integer in "
                   "0..18446744073709551615");
    expect_refused(&run, "seed=-1", "command line: seed=-1: expected an integer, got '-1'");
    expect_refused(&run, "seed=+1", "command line: seed=+1: expected an integer, got '+1'");
    expect_refused(&run, "seed=7up", "command line: seed=7up: expected an integer, got '7up'");
}

static void test_numbers_are_finite_and_in_range(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    expect_refused(&run, "lr=0", "command line: lr=0: expected a number > 0");
    expect_refused(&run, "s_min=-0.5", "command line: s_min=-0.5: expected a number > 0");
    expect_refused(&run, "clip=-1", "command line: clip=-1: expected a number >= 0");
    expect_refused(&run, "lr=0.1abc", "command line: lr=0.1abc: expected a number, got '0.1abc'");
    expect_refused(&run, "lr=fast", "command line: lr=fast: expected a number, got 'fast'");
    expect_refused(&run, "lr=1e999",
                   "command line: lr=1e999: expected a number > 0, got '1e999' (beyond a "
                   "double's range)");
    /* Underflow is out of range too (strtod would give 0 or a denormal). */
    expect_refused(&run, "min_lr=1e-400",
                   "command line: min_lr=1e-400: expected a number >= 0, got '1e-400' (beyond a "
                   "double's range)");
    expect_refused(&run, "lr=inf",
                   "command line: lr=inf: expected a number > 0, got 'inf' (beyond a double's "
                   "range)");
    expect_refused(&run, "span_coef=nan",
                   "command line: span_coef=nan: expected a number >= 0, got 'nan' (not a "
                   "number)");
}

static void test_choices_are_exact_names(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    expect_refused(&run, "pool=max",
                   "command line: pool=max: expected one of none|avg|contextpool, got 'max'");
    expect_refused(&run, "pool=None",
                   "command line: pool=None: expected one of none|avg|contextpool, got 'None'");
    expect_refused(&run, "pool=context",
                   "command line: pool=context: expected one of none|avg|contextpool, got "
                   "'context'");
    expect_refused(&run, "model=gpt",
                   "command line: model=gpt: expected one of charlm|vit|cnn, got 'gpt'");
    expect_refused(&run, "weights=1",
                   "command line: weights=1: expected one of learned|uniform, got '1'");
}

static void test_empty_values_are_refused(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    expect_refused(&run, "dim=", "command line: dim=: expected an integer in 1..4096, got nothing");
    expect_refused(&run, "lr =  ", "command line: lr=: expected a number > 0, got nothing");
    expect_refused(
        &run, "pool=", "command line: pool=: expected one of none|avg|contextpool, got nothing");
    expect_refused(
        &run, "data=", "command line: data=: expected a path of at most 1023 bytes, got nothing");
}

static void test_paths_fit_and_survive_a_config_file(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_CHARLM);
    char assignment[RUN_PATH_MAX + 64], expected[512];
    /* The longest path that fits: RUN_PATH_MAX - 1 bytes. */
    strcpy(assignment, "data=");
    memset(assignment + 5, 'a', RUN_PATH_MAX - 1);
    assignment[5 + RUN_PATH_MAX - 1] = '\0';
    set_or_fail(&run, assignment);
    assert_int_equal(strlen(run.train.data), RUN_PATH_MAX - 1);
    /* One more byte does not; the message shows the value's start only. */
    run_config_defaults(&run, MODEL_CHARLM);
    strcat(assignment, "a");
    snprintf(expected, sizeof expected,
             "command line: data=%.60s...: expected a path of at most 1023 bytes, got 1024 bytes",
             assignment + 5);
    expect_refused(&run, assignment, expected);
    expect_refused(&run, "data=runs/#1/kjv.txt",
                   "command line: data=runs/#1/kjv.txt: a path cannot hold '#' or control "
                   "characters");
    expect_refused(&run, "data=a\tb",
                   "command line: data=a\tb: a path cannot hold '#' or control characters");
}

static void test_a_config_text_with_comments_and_blank_lines(void **state) {
    (void)state;
    const char *text = "# a ViT for the sweep\n"
                       "model = vit   # first\n"
                       "\n"
                       "   \n"
                       "layers = 4\r\n"
                       "  lr=5e-4\n"
                       "pool = none # baseline";
    RunConfig run, expected;
    char err[256] = "";
    if (run_config_parse(&run, text, "run.cfg", err, sizeof err) != 0) fail_msg("%s", err);
    run_config_defaults(&expected, MODEL_VIT);
    expected.model.layers = 4;
    expected.train.lr = 5e-4;
    expected.model.pool = MODEL_POOL_NONE;
    assert_same_config(&expected, &run);

    /* Without a model= line: charlm's defaults. An empty text is all defaults. */
    assert_int_equal(run_config_parse(&run, "dim = 64\n", "run.cfg", err, sizeof err), 0);
    run_config_defaults(&expected, MODEL_CHARLM);
    expected.model.dim = 64;
    assert_same_config(&expected, &run);
    assert_int_equal(run_config_parse(&run, "", "run.cfg", err, sizeof err), 0);
    run_config_defaults(&expected, MODEL_CHARLM);
    assert_same_config(&expected, &run);
}

/* The text is refused with exactly this message, and the run is left as it was. */
static void expect_parse_refused(const char *text, const char *message) {
    RunConfig run, before;
    run_config_defaults(&run, MODEL_CNN);
    run.model.channels = 7;
    before = run;
    char err[512] = "";
    assert_int_equal(run_config_parse(&run, text, "run.cfg", err, sizeof err), -1);
    assert_string_equal(err, message);
    assert_same_config(&before, &run);
}

static void test_config_text_errors_name_the_line(void **state) {
    (void)state;
    expect_parse_refused("model = vit\n# comment\n\nlyaers = 4\n",
                         "run.cfg:4: unknown key 'lyaers' (`cpool train --help` lists the keys)");
    expect_parse_refused("dim = 64\n\ndim = 12x   # typo\n",
                         "run.cfg:3: dim=12x: expected an integer, got '12x'");
    expect_parse_refused("layers = 2\nlayers 4\n", "run.cfg:2: 'layers 4': expected key = value");
    expect_parse_refused("# header\nlayers = 2\nmodel = vit\n",
                         "run.cfg:3: model=vit: model must be the first key (it sets the "
                         "defaults of every other key)");
    /* Even when the key before it left the default unchanged. */
    expect_parse_refused("layers = 2\nmodel = charlm\n",
                         "run.cfg:2: model=charlm: model must be the first key (it sets the "
                         "defaults of every other key)");
    expect_parse_refused("model = vit\nmodel = vit\n",
                         "run.cfg:2: model=vit: model must be the first key (it sets the "
                         "defaults of every other key)");
    expect_parse_refused("layers = 0 # none\n",
                         "run.cfg:1: layers=0: expected an integer in 1..16");
}

/* assignments: space-separated key=value words, together setting every key (but model) away from
 * its default, so that a key lost between format and parse would show. Two doubles are then set
 * to values that need all 17 digits. */
static void round_trip(ModelKind kind, const char *assignments) {
    RunConfig run, back, defaults;
    run_config_defaults(&run, kind);
    run_config_defaults(&defaults, kind);
    char word[64];
    for (const char *p = assignments; *p; p += strspn(p, " ")) {
        size_t len = strcspn(p, " ");
        snprintf(word, sizeof word, "%.*s", (int)len, p);
        set_or_fail(&run, word);
        p += len;
    }
    run.model.variant.cp.s_max = 1.0 / 3.0; /* 0.33333333333333331 */
    run.train.weight_decay = 0.1 + 0.2;     /* 0.30000000000000004 */
    char *text = run_config_format(&run);
    char err[256] = "";
    if (run_config_parse(&back, text, "formatted", err, sizeof err) != 0) fail_msg("%s", err);
    assert_same_config(&run, &back);
    assert_int_equal(back.model.kind, kind);
    assert_true(back.model.variant.cp.s_max == 1.0 / 3.0);
    assert_true(back.train.weight_decay == 0.1 + 0.2);
    assert_true(back.train.seed == run.train.seed);
    assert_string_equal(back.train.data, run.train.data);
    /* Line by line against the defaults' text: every line but model's differs. */
    char *default_text = run_config_format(&defaults);
    int changed = 0, lines = 0;
    for (const char *a = text, *b = default_text; *a; lines++) {
        size_t a_len = strcspn(a, "\n") + 1, b_len = strcspn(b, "\n") + 1;
        changed += a_len != b_len || strncmp(a, b, a_len) != 0;
        a += a_len;
        b += b_len;
    }
    int key_count;
    run_config_keys(&key_count);
    assert_int_equal(lines, key_count);
    assert_int_equal(changed, key_count - 1);
    free(default_text);
    free(text);
}

static void test_format_then_parse_gives_back_the_same_config(void **state) {
    (void)state;
    round_trip(MODEL_CHARLM,
               "dim=96 heads=3 layers=5 ffn_hidden=200 seq_len=512 tie=0 patch=7 channels=8 "
               "pool=none pool_feeds=qkv weights=uniform size=fixed s_fixed=2.5 s_min=0.25 "
               "radius=9 pred_hidden=12 pred_kernel=5 window=32 span=1 span_max=128 "
               "span_ramp=16 span_coef=1e-5 data=other.txt batch=8 steps=300 lr=0.1 min_lr=0 "
               "warmup=0 clip=0.5 eval_every=0 eval_batches=0 checkpoint_every=7 "
               "seed=12345678901234567890 n_valid=100");
    round_trip(MODEL_VIT,
               "model=vit dim=48 heads=6 layers=3 ffn_hidden=100 seq_len=100 tie=0 patch=7 "
               "channels=8 pool=none pool_feeds=stream weights=uniform size=fixed s_fixed=3 "
               "s_min=1 radius=4 pred_hidden=9 pred_kernel=1 window=5 span=1 span_max=49 "
               "span_ramp=4 span_coef=0.5 data=/data/fm batch=32 steps=99 lr=3e-4 min_lr=1e-6 "
               "warmup=10 clip=2 eval_every=10 eval_batches=3 checkpoint_every=33 seed=0 "
               "n_valid=1000");
    round_trip(MODEL_CNN,
               "model=cnn dim=32 heads=2 layers=1 ffn_hidden=64 seq_len=64 tie=0 patch=2 "
               "channels=4 pool=avg pool_feeds=qkv weights=uniform size=fixed s_fixed=0.75 "
               "s_min=0.125 radius=2 pred_hidden=4 pred_kernel=7 window=3 span=1 span_max=9 "
               "span_ramp=1 span_coef=3 data=fm-dir batch=128 steps=5000 lr=2e-2 min_lr=5e-5 "
               "warmup=50 clip=10 eval_every=500 eval_batches=50 checkpoint_every=1000 "
               "seed=42 n_valid=10000");
}

static void test_format_writes_every_key_once_model_first(void **state) {
    (void)state;
    RunConfig run;
    run_config_defaults(&run, MODEL_VIT);
    char *text = run_config_format(&run);
    int count;
    const RunKeyHelp *keys = run_config_keys(&count);
    assert_true(strncmp(text, "model = vit\n", 12) == 0);
    assert_non_null(strstr(text, "\npool = contextpool\n"));
    assert_non_null(strstr(text, "\nlr = 0.001\n")); /* the shortest exact digits */
    assert_non_null(strstr(text, "\nweight_decay = 0.05\n"));
    const char *line = text;
    for (int k = 0; k < count; k++) {
        size_t name_len = strlen(keys[k].name);
        if (strncmp(line, keys[k].name, name_len) != 0 || strncmp(line + name_len, " = ", 3) != 0)
            fail_msg("line %d should set '%s': %.40s", k + 1, keys[k].name, line);
        line += strcspn(line, "\n") + 1;
    }
    assert_string_equal(line, "");
    free(text);
}

static void test_the_help_table_describes_every_key(void **state) {
    (void)state;
    int count = 0;
    const RunKeyHelp *keys = run_config_keys(&count);
    assert_int_equal(count, 37);
    assert_string_equal(keys[0].name, "model");
    const char *models[] = {"all", "charlm", "vit", "cnn", "charlm vit", "vit cnn"};
    for (int k = 0; k < count; k++) {
        assert_true(strlen(keys[k].name) > 0);
        /* --help prints "  %-16s %-12s %s": 68 columns are left in 100. */
        if (strlen(keys[k].help) == 0 || strlen(keys[k].help) > 68)
            fail_msg("key %s: help of %zu bytes", keys[k].name, strlen(keys[k].help));
        assert_null(strchr(keys[k].help, '\n'));
        int known = 0;
        for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
            known |= strcmp(keys[k].models, models[m]) == 0;
        if (!known) fail_msg("key %s: models '%s'", keys[k].name, keys[k].models);
        for (int j = 0; j < k; j++)
            if (strcmp(keys[j].name, keys[k].name) == 0) fail_msg("%s twice", keys[k].name);
    }
    assert_non_null(run_config_keys(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_for_each_model),
        cmocka_unit_test(test_an_unknown_model_kind_fails),
        cmocka_unit_test(test_each_type_of_key_is_set),
        cmocka_unit_test(test_model_first_sets_every_default_of_that_model),
        cmocka_unit_test(test_model_after_another_key_is_refused),
        cmocka_unit_test(test_unknown_key_and_malformed_assignments),
        cmocka_unit_test(test_integers_are_read_in_full_and_in_range),
        cmocka_unit_test(test_seeds_are_unsigned_64_bit),
        cmocka_unit_test(test_numbers_are_finite_and_in_range),
        cmocka_unit_test(test_choices_are_exact_names),
        cmocka_unit_test(test_empty_values_are_refused),
        cmocka_unit_test(test_paths_fit_and_survive_a_config_file),
        cmocka_unit_test(test_a_config_text_with_comments_and_blank_lines),
        cmocka_unit_test(test_config_text_errors_name_the_line),
        cmocka_unit_test(test_format_then_parse_gives_back_the_same_config),
        cmocka_unit_test(test_format_writes_every_key_once_model_first),
        cmocka_unit_test(test_the_help_table_describes_every_key),
    };
    return cmocka_run_group_tests_name("train: run config (" REAL_NAME ")", tests, NULL, NULL);
}
