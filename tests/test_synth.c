/* test_synth.c - the synthetic task with known support sizes (tools/synth.c, tools/cmd_synth.c):
 * the generator and its targets checked by hand and against the layer's own op, the loss and the
 * correlation, a small training run whose learned s must follow the true widths, the figure, and
 * every bad config and command line.
 *
 * The tools are not part of the library, so their sources are compiled into this test. */
#include "test_temp_dir.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/cmd_synth.c"
#include "../tools/gnuplot.c"
#include "../tools/synth.c"

#include "ops.h"

/* The small instance: 3 widths, 4 sequences of 48 tokens per step, dim 8, 100 steps. About 0.05 s
 * natively and 2 s under valgrind. Over seeds 1..40 (float32 and float64 agree to 4 digits) it
 * measured: Pearson r(W, s) from 0.955 to 0.993 (mean 0.987); the mean s of each width within
 * 26% of W; the held-out error at most 0.17 of the best single-s error. The tests below ask for
 * r > 0.9, each mean within 40% of W, the means in the widths' order, and an error below a third
 * of the best single s's. */
static SynthConfig small_config(void) {
    SynthConfig c = synth_default_config();
    c.n_widths = 3;
    c.widths[0] = 1, c.widths[1] = 2, c.widths[2] = 4;
    c.s_max = 6;
    c.len = 48;
    c.segment_min = 8, c.segment_max = 16;
    c.dim = 8;
    c.batch = 4;
    c.steps = 100;
    c.lr = 0.02;
    c.eval_batch = 4;
    c.seed = 1;
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* The generator                                                                              */

static void widths_are_constant_within_segments(void **state) {
    (void)state;
    SynthConfig c = small_config();
    c.segment_min = c.segment_max = 6; /* boundaries at 6, 12, ...: nowhere else may W change */
    SynthBatch batch;
    synth_batch_alloc(&batch, 50, c.len);
    Rng rng;
    rng_seed(&rng, 7);
    synth_generate(&batch, &c, &rng);
    int seen[SYNTH_MAX_WIDTHS] = {0};
    for (int b = 0; b < batch.batch; b++)
        for (int i = 0; i < c.len; i++) {
            long at = (long)b * c.len + i;
            int k = batch.width_class[at];
            assert_in_range(k, 0, c.n_widths - 1);
            assert_true(batch.width[at] == c.widths[k]);
            seen[k] = 1;
            if (i % 6 != 0) assert_int_equal(k, batch.width_class[at - 1]);
        }
    for (int k = 0; k < c.n_widths; k++) assert_true(seen[k]);
    synth_batch_free(&batch);
}

static void segment_lengths_stay_in_their_range(void **state) {
    (void)state;
    SynthConfig c = small_config();
    c.n_widths = SYNTH_MAX_WIDTHS; /* many classes: neighbouring segments rarely share one */
    for (int k = 0; k < c.n_widths; k++) c.widths[k] = 1 + 0.5 * k;
    SynthBatch batch;
    synth_batch_alloc(&batch, 40, c.len);
    Rng rng;
    rng_seed(&rng, 3);
    synth_generate(&batch, &c, &rng);
    /* A run of equal classes is one segment, or several with the same class: its length is at
     * least segment_min, unless it is cut by the sequence's end. */
    for (int b = 0; b < batch.batch; b++) {
        const int *k = batch.width_class + (long)b * c.len;
        for (int start = 0, i = 1; i <= c.len; i++)
            if (i == c.len || k[i] != k[start]) {
                if (i < c.len && i - start < c.segment_min)
                    fail_msg("sequence %d: a run of %d tokens at %d", b, i - start, start);
                start = i;
            }
    }
    synth_batch_free(&batch);
}

static void values_are_standard_normal(void **state) {
    (void)state;
    SynthConfig c = small_config();
    SynthBatch batch;
    synth_batch_alloc(&batch, 200, c.len); /* 9600 values: the mean's std is 0.01 */
    Rng rng;
    rng_seed(&rng, 11);
    synth_generate(&batch, &c, &rng);
    long n = (long)batch.batch * batch.len;
    double mean = 0, square = 0;
    for (long i = 0; i < n; i++) mean += batch.value[i], square += batch.value[i] * batch.value[i];
    mean /= n;
    assert_true(fabs(mean) < 0.05);
    assert_true(fabs(square / n - mean * mean - 1) < 0.06);
    synth_batch_free(&batch);
}

/* values 1, 0, 0, 2; radius 1; W = 1 except token 2 with W = 2. With a = exp(-1/2),
 * b = exp(-1/8) (distance 1 at W = 2):
 *   T_0 = (1 + 0 a) / (1 + a)            1/Var = (1 + a)^2 / (1 + a^2)
 *   T_1 = (a + 0 + 0 a) / (1 + 2a)       1/Var = (1 + 2a)^2 / (1 + 2a^2)
 *   T_2 = (0 b + 0 + 2 b) / (1 + 2b)     1/Var = (1 + 2b)^2 / (1 + 2b^2)
 *   T_3 = (0 a + 2) / (1 + a)            1/Var as T_0 */
static void targets_match_a_hand_calculation(void **state) {
    (void)state;
    double value[4] = {1, 0, 0, 2}, width[4] = {1, 1, 2, 1}, target[4], inverse_variance[4];
    synth_targets(value, width, 4, 1, target, inverse_variance);
    double a = exp(-0.5), b = exp(-0.125);
    double expected[4] = {1 / (1 + a), a / (1 + 2 * a), 2 * b / (1 + 2 * b), 2 / (1 + a)};
    double expected_scale[4] = {
        (1 + a) * (1 + a) / (1 + a * a), (1 + 2 * a) * (1 + 2 * a) / (1 + 2 * a * a),
        (1 + 2 * b) * (1 + 2 * b) / (1 + 2 * b * b), (1 + a) * (1 + a) / (1 + a * a)};
    for (int i = 0; i < 4; i++) {
        assert_true(fabs(target[i] - expected[i]) < 1e-15);
        assert_true(fabs(inverse_variance[i] - expected_scale[i]) < 1e-14);
    }
}

static void targets_in_the_limits_copy_or_average(void **state) {
    (void)state;
    double value[5] = {3, -1, 4, 1, -5}, target[5], inverse_variance[5];
    /* A tiny width keeps each token's own value: one term, variance 1. */
    double narrow[5] = {0.05, 0.05, 0.05, 0.05, 0.05};
    synth_targets(value, narrow, 5, 3, target, inverse_variance);
    for (int i = 0; i < 5; i++) {
        assert_true(fabs(target[i] - value[i]) < 1e-12);
        assert_true(fabs(inverse_variance[i] - 1) < 1e-12);
    }
    /* A huge width with a radius covering the sequence averages it: 2/5, variance 1/5. */
    double wide[5] = {1e6, 1e6, 1e6, 1e6, 1e6};
    synth_targets(value, wide, 5, 4, target, inverse_variance);
    for (int i = 0; i < 5; i++) {
        assert_true(fabs(target[i] - 0.4) < 1e-9);
        assert_true(fabs(inverse_variance[i] - 5) < 1e-9);
    }
}

/* The claim the task rests on: the target is exactly the ContextPool op's output with s = W and
 * w = 1 (eps = 0), so s_i = W_i is the right support size of every token. */
static void targets_are_the_pooling_with_s_equal_to_w(void **state) {
    (void)state;
    SynthConfig c = small_config();
    SynthBatch batch;
    synth_batch_alloc(&batch, 3, c.len);
    Rng rng;
    rng_seed(&rng, 5);
    synth_generate(&batch, &c, &rng);
    int B = batch.batch, N = batch.len;
    Tape *tape = tape_create();
    Tensor *x = tape_tensor(tape, 3, (int[]){B, N, 1});
    Tensor *w = tape_tensor(tape, 2, (int[]){B, N});
    Tensor *s = tape_tensor(tape, 2, (int[]){B, N});
    for (long i = 0; i < w->size; i++)
        x->data[i] = (real)batch.value[i], w->data[i] = 1, s->data[i] = (real)batch.width[i];
    Tensor *y = op_contextpool1d(tape, x, w, s, synth_radius(&c), 0, 0);
    /* float32: the op's inputs and sums are rounded to 24 bits. */
    double tolerance = sizeof(real) == sizeof(double) ? 1e-12 : 1e-5;
    assert_close(batch.target, y->data, y->size, tolerance, "pooling with s = W");
    tape_free(tape);
    synth_batch_free(&batch);
}

/* ------------------------------------------------------------------------------------------ */
/* The model, the loss, the correlation                                                       */

static void model_has_the_documented_parameters_and_shapes(void **state) {
    (void)state;
    SynthConfig c = small_config();
    Rng rng;
    rng_seed(&rng, 1);
    SynthModel model;
    synth_model_init(&model, &c, &rng);
    const struct {
        const char *name;
        int ndim, shape[3];
    } expected[] = {{"width_embed.weight", 2, {3, 8}},    {"value_in.weight", 2, {8, 1}},
                    {"pool.pred.0.weight", 3, {8, 8, 3}}, {"pool.pred.0.bias", 1, {8}},
                    {"pool.pred.2.weight", 3, {2, 8, 1}}, {"pool.pred.2.bias", 1, {2}},
                    {"readout.weight", 2, {1, 8}},        {"readout.bias", 1, {1}}};
    assert_int_equal(model.params.count, 8);
    for (int k = 0; k < 8; k++) {
        assert_string_equal(model.params.items[k].name, expected[k].name);
        const Tensor *t = model.params.items[k].tensor;
        assert_int_equal(t->ndim, expected[k].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], expected[k].shape[d]);
    }
    assert_int_equal(model.pool.config.radius, 18); /* ceil(3 s_max) */

    SynthBatch batch;
    synth_batch_alloc(&batch, 2, c.len);
    synth_generate(&batch, &c, &rng);
    Tape *tape = tape_create();
    ContextPoolAux aux;
    Tensor *p = synth_model_forward(tape, &model, &batch, &aux);
    assert_int_equal(p->ndim, 2);
    assert_int_equal(p->shape[0], 2);
    assert_int_equal(p->shape[1], c.len);
    assert_int_equal(aux.support->size, 2 * c.len);
    for (long i = 0; i < aux.support->size; i++)
        assert_true(aux.support->data[i] > 0.5 && aux.support->data[i] < c.s_max);
    tape_free(tape);
    synth_batch_free(&batch);
    synth_model_free(&model);
}

/* Two tokens: loss = ((p0 - T0)^2 k0 + (p1 - T1)^2 k1) / 2, and its gradient 2 (p - T) k / 2. */
static void loss_is_the_normalised_squared_error(void **state) {
    (void)state;
    SynthBatch batch;
    synth_batch_alloc(&batch, 1, 2);
    batch.target[0] = 0.5, batch.target[1] = -1;
    batch.target_scale[0] = 2, batch.target_scale[1] = 4;
    Tape *tape = tape_create();
    Tensor *p = tensor_create(2, (int[]){1, 2}, 1);
    p->data[0] = 1, p->data[1] = 0;
    Tensor *loss = synth_loss(tape, p, &batch);
    double expected = (0.25 * 2 + 1 * 4) / 2.0;
    assert_close(&expected, loss->data, 1, 1e-6, "loss");
    tape_backward(tape, loss);
    double gradient[2] = {0.5 * 2, 1 * 4};
    assert_close(gradient, p->grad, 2, 1e-6, "d loss / d p");
    tape_free(tape);
    tensor_free(p);
    synth_batch_free(&batch);
}

/* E[T^2 / Var(T)] = 1 over random values: predicting 0 scores about 1, whatever the widths. */
static void predicting_zero_scores_about_one(void **state) {
    (void)state;
    SynthConfig c = small_config();
    SynthBatch batch;
    synth_batch_alloc(&batch, 100, c.len);
    Rng rng;
    rng_seed(&rng, 9);
    synth_generate(&batch, &c, &rng);
    Tape *tape = tape_create();
    Tensor *zero = tape_tensor_zeros(tape, 2, (int[]){batch.batch, batch.len});
    double loss = synth_loss(tape, zero, &batch)->data[0];
    assert_true(fabs(loss - 1) < 0.1);
    tape_free(tape);
    synth_batch_free(&batch);
}

static void pearson_matches_hand_values(void **state) {
    (void)state;
    double x[3] = {1, 2, 3}, up[3] = {2, 4, 6}, down[3] = {5, 3, 1}, mixed[3] = {1, 3, 2};
    double flat[3] = {7, 7, 7};
    assert_true(fabs(synth_pearson(x, up, 3) - 1) < 1e-15);
    assert_true(fabs(synth_pearson(x, down, 3) + 1) < 1e-15);
    /* deviations (-1, 0, 1) and (-1, 1, 0): 1 / sqrt(2 * 2) */
    assert_true(fabs(synth_pearson(x, mixed, 3) - 0.5) < 1e-15);
    assert_true(isnan(synth_pearson(x, flat, 3)));
    assert_true(isnan(synth_pearson(x, up, 1)));
}

/* ------------------------------------------------------------------------------------------ */
/* Training                                                                                   */

static SynthResult trained; /* the small instance, trained once by the group setup */

static int train_small_instance(void **state) {
    (void)state;
    SynthConfig c = small_config();
    synth_train(&c, NULL, &trained);
    return 0;
}

static int free_small_instance(void **state) {
    (void)state;
    synth_result_free(&trained);
    return 0;
}

static void learned_support_follows_the_true_width(void **state) {
    (void)state;
    SynthConfig c = small_config();
    if (!(trained.correlation > 0.9))
        fail_msg("Pearson r(W, s) = %.4f after %ld steps, expected > 0.9 (before: %.4f)",
                 trained.correlation, c.steps, trained.initial_correlation);
    for (int k = 0; k < c.n_widths; k++) {
        assert_true(trained.count[k] > 0);
        double error = fabs(trained.mean_support[k] - c.widths[k]) / c.widths[k];
        if (!(error < 0.4))
            fail_msg("width %g: mean learned s %.3f", c.widths[k], trained.mean_support[k]);
        if (k > 0) assert_true(trained.mean_support[k] > trained.mean_support[k - 1]);
    }
}

static void adaptive_support_beats_any_single_support(void **state) {
    (void)state;
    SynthConfig c = small_config();
    assert_true(trained.fixed_support >= 0.5 && trained.fixed_support <= c.s_max);
    if (!(trained.eval_loss < trained.fixed_loss / 3))
        fail_msg("held-out error %.4f, best single s (%.1f) %.4f", trained.eval_loss,
                 trained.fixed_support, trained.fixed_loss);
    assert_true(trained.eval_loss < trained.initial_loss);
    assert_true(trained.train_loss < 0.1);
}

static void the_same_seed_gives_the_same_run(void **state) {
    (void)state;
    SynthConfig c = small_config();
    c.steps = 3;
    SynthResult first, second;
    synth_train(&c, NULL, &first);
    synth_train(&c, NULL, &second);
    long n = (long)c.eval_batch * c.len;
    for (long i = 0; i < n; i++) {
        assert_true(first.support[i] == second.support[i]);
        assert_true(first.eval.value[i] == second.eval.value[i]);
    }
    assert_true(first.eval_loss == second.eval_loss);
    /* The held-out set does not depend on the steps or the batch. */
    c.steps = 1, c.batch = 2;
    SynthResult third;
    synth_train(&c, NULL, &third);
    for (long i = 0; i < n; i++) assert_true(first.eval.value[i] == third.eval.value[i]);
    synth_result_free(&first);
    synth_result_free(&second);
    synth_result_free(&third);
}

/* ------------------------------------------------------------------------------------------ */
/* The figure                                                                                 */

static void read_text(const char *path, char *text, size_t text_len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s: cannot read", path);
    size_t n = fread(text, 1, text_len - 1, f);
    text[n] = '\0';
    fclose(f);
}

static void figure_is_a_png_titled_with_the_correlation(void **state) {
    (void)state;
    assert_int_equal(temp_dir_create("synth"), 0);
    char png[128], script[128], err[512];
    snprintf(png, sizeof png, "%s/synthetic.png", temp_dir);
    snprintf(script, sizeof script, "%s/synthetic.gp", temp_dir);
    SynthConfig c = small_config();
    if (synth_write_figure(png, FIGURE_PNG, &c, &trained, err, sizeof err) != 0)
        fail_msg("%s", err);
    char text[16384];
    read_text(png, text, 9);
    assert_memory_equal(text, "\x89PNG\r\n\x1a\n", 8);
    read_text(script, text, sizeof text);
    char title[128];
    snprintf(title, sizeof title, "Pearson r(true width, learned s) = %.5f", trained.correlation);
    assert_non_null(strstr(text, title));
    assert_non_null(strstr(text, "true window width W (tokens)"));
    assert_non_null(strstr(text, "learned support size s (tokens)"));
    temp_dir_remove();
}

/* ------------------------------------------------------------------------------------------ */
/* Bad input                                                                                  */

static void every_bad_config_fails_naming_its_key(void **state) {
    (void)state;
    SynthConfig c;
#define BAD(assignment, text)                                                                      \
    do {                                                                                           \
        c = small_config();                                                                        \
        assignment;                                                                                \
        EXPECT_FAIL(synth_config_check(&c), text);                                                 \
    } while (0)
    BAD(c.steps = 0, "steps=0 must be >= 1");
    BAD(c.steps = -3, "steps=-3");
    BAD(c.batch = 0, "batch=0");
    BAD(c.eval_batch = 0, "eval_batch=0");
    BAD(c.len = 0, "len=0");
    BAD(c.dim = 0, "dim=0");
    BAD(c.n_widths = 0, "n_widths=0");
    BAD(c.n_widths = SYNTH_MAX_WIDTHS + 1, "n_widths=9");
    BAD(c.widths[1] = 0, "widths[1]=0");
    BAD(c.widths[2] = 7, "widths[2]=7 must be in (0, s_max=6]");
    BAD(c.s_max = 0.5, "s_max=0.5");
    BAD(c.segment_min = 0, "segment lengths [0, 16]");
    BAD(c.segment_max = 7, "segment lengths [8, 7]");
    BAD(c.lr = 0, "lr=0");
    BAD(c.lr = NAN, "lr=nan");
#undef BAD
    c = small_config();
    c.steps = 0;
    SynthResult result;
    EXPECT_FAIL(synth_train(&c, NULL, &result), "steps=0");
    SynthModel model;
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(synth_model_init(&model, &c, &rng), "steps=0");
}

static void batch_and_prediction_shapes_are_checked(void **state) {
    (void)state;
    SynthBatch batch;
    EXPECT_FAIL(synth_batch_alloc(&batch, 0, 5), "0 sequences of 5 tokens");
    SynthConfig c = small_config();
    synth_batch_alloc(&batch, 2, c.len + 1);
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(synth_generate(&batch, &c, &rng), "sequences of 49 tokens, the config says len=48");
    Tape *tape = tape_create();
    Tensor *p = tape_tensor_zeros(tape, 2, (int[]){2, c.len});
    EXPECT_FAIL(synth_loss(tape, p, &batch), "synth_loss: prediction (2, 48), expected (2, 49)");
    tape_free(tape);
    synth_batch_free(&batch);
}

/* synth_parse_arguments on a command line ("synth" first), NULL-terminated. */
static int parse(SynthOptions *o, char *err, size_t err_len, ...) {
    char *argv[16] = {"synth"};
    int argc = 1;
    va_list args;
    va_start(args, err_len);
    for (const char *a; (a = va_arg(args, const char *));) argv[argc++] = (char *)a;
    va_end(args);
    err[0] = '\0';
    return synth_parse_arguments(argc, argv, o, err, err_len);
}

static void command_line_is_parsed(void **state) {
    (void)state;
    SynthOptions o;
    char err[256];
    assert_int_equal(parse(&o, err, sizeof err, NULL), 0);
    assert_int_equal(o.steps, 0);
    assert_false(o.seed_given);
    assert_string_equal(o.out, "synthetic.png");
    assert_int_equal(o.term, FIGURE_PNG);
    assert_int_equal(parse(&o, err, sizeof err, "--steps", "50", "--seed", "7", "--out", "a/b.png",
                           "--term", "dumb", NULL),
                     0);
    assert_int_equal(o.steps, 50);
    assert_true(o.seed_given && o.seed == 7);
    assert_string_equal(o.out, "a/b.png");
    assert_int_equal(o.term, FIGURE_DUMB);
    assert_int_equal(parse(&o, err, sizeof err, "--help", NULL), 0);
    assert_true(o.help);
}

static void every_bad_command_line_is_a_usage_error(void **state) {
    (void)state;
    const struct {
        const char *args[4];
        const char *message;
    } cases[] = {
        {{"--steps", "0"}, "--steps '0' must be an integer in [1, 1e8]"},
        {{"--steps", "-5"}, "--steps '-5'"},
        {{"--steps", "ten"}, "--steps 'ten'"},
        {{"--steps", "100000001"}, "--steps '100000001'"},
        {{"--steps", "5", "--steps", "6"}, "--steps given twice"},
        {{"--seed", "-1"}, "--seed '-1' must be a non-negative integer"},
        {{"--seed", "1", "--seed", "2"}, "--seed given twice"},
        {{"--out", "figure.jpg"}, "--out 'figure.jpg' must name a .png file"},
        {{"--term", "svg"}, "--term 'svg': png or dumb"},
        {{"--steps"}, "--steps needs a value"},
        {{"--bogus", "1"}, "unknown option '--bogus'"},
        {{"extra"}, "unexpected argument 'extra'"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *argv[6] = {"synth"};
        int argc = 1;
        for (int a = 0; a < 4 && cases[k].args[a]; a++) argv[argc++] = (char *)cases[k].args[a];
        SynthOptions o;
        char err[256] = "";
        int status = synth_parse_arguments(argc, argv, &o, err, sizeof err);
        if (status != SYNTH_EXIT_USAGE || !strstr(err, cases[k].message))
            fail_msg("case %zu: status %d, error \"%s\", expected 2 and \"%s\"", k, status, err,
                     cases[k].message);
    }
    /* The command returns 2 for them, and 1 (before training) for a directory it cannot use. */
    assert_int_equal(cmd_synth(3, (char *[]){"synth", "--steps", "0", NULL}), SYNTH_EXIT_USAGE);
    assert_int_equal(cmd_synth(3, (char *[]){"synth", "--out", "/nonexistent/dir/f.png", NULL}),
                     SYNTH_EXIT_FIGURE);
}

int main(void) {
    const struct CMUnitTest generator[] = {
        cmocka_unit_test(widths_are_constant_within_segments),
        cmocka_unit_test(segment_lengths_stay_in_their_range),
        cmocka_unit_test(values_are_standard_normal),
        cmocka_unit_test(targets_match_a_hand_calculation),
        cmocka_unit_test(targets_in_the_limits_copy_or_average),
        cmocka_unit_test(targets_are_the_pooling_with_s_equal_to_w),
        cmocka_unit_test(model_has_the_documented_parameters_and_shapes),
        cmocka_unit_test(loss_is_the_normalised_squared_error),
        cmocka_unit_test(predicting_zero_scores_about_one),
        cmocka_unit_test(pearson_matches_hand_values),
        cmocka_unit_test(the_same_seed_gives_the_same_run),
        cmocka_unit_test(every_bad_config_fails_naming_its_key),
        cmocka_unit_test(batch_and_prediction_shapes_are_checked),
        cmocka_unit_test(command_line_is_parsed),
        cmocka_unit_test(every_bad_command_line_is_a_usage_error),
    };
    const struct CMUnitTest training[] = {
        cmocka_unit_test(learned_support_follows_the_true_width),
        cmocka_unit_test(adaptive_support_beats_any_single_support),
        cmocka_unit_test(figure_is_a_png_titled_with_the_correlation),
    };
    int failed = cmocka_run_group_tests_name("synthetic task", generator, NULL, NULL);
    failed += cmocka_run_group_tests_name("synthetic task: training the small instance", training,
                                          train_small_instance, free_small_instance);
    return failed;
}
