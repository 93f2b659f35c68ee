/* test_train_optim.c - AdamW against PyTorch, the learning-rate schedule, gradient clipping.
 *
 * tests/reference/optim/make_fixtures.py ran torch.optim.AdamW (torch 1.13) for six updates on
 * three parameters (a weight and an embedding table, decayed; a bias, not) with given gradients
 * and learning rates, in float64 and in float32, and torch.nn.utils.clip_grad_norm_ on three
 * gradients. Every input is a float32 number, so each build starts from the same values as the
 * torch run of its precision. The error measure is assert_close's |got - expected| <=
 * tol * max(1, |expected|):
 *   - float64 build against the float64 run: 1e-14. Both sides do the same double operations in
 *     the same order (sqrt is correctly rounded, pow nearly so): the worst seen is 5.6e-17, one
 *     ulp.
 *   - float32 build against the float32 run: 1e-6. PyTorch's float32 kernels may fuse or
 *     reorder (vectorised multiply-adds); each update may differ by a few float32 ulps (6e-8
 *     each) of values of size ~1, over six updates. The worst seen is 6e-8, one ulp.
 * Clipping is checked in double on both sides (the norm sums in double): 1e-12 on the scaled
 * gradients in float64, 1e-6 in float32 (the gradients are stored in float32 after scaling).
 */
#include "test_util.h"

#include <stdlib.h>

#include "npy.h"
#include "optim.h"
#include "params.h"

#define FIXTURES "tests/reference/optim/"

#ifdef CPOOL_DOUBLE
#define ADAMW_TOLERANCE 1e-14
#define CLIP_TOLERANCE  1e-12
#define RUN             "64"
#else
#define ADAMW_TOLERANCE 1e-6
#define CLIP_TOLERANCE  1e-6
#define RUN             "32"
#endif

static const char *const names[3] = {"w", "b", "emb"};

/* FIXTURES<prefix><name><suffix>.npy as doubles; *n elements. */
static double *load_fixture(const char *prefix, const char *name, const char *suffix, long *n) {
    char path[256], err[256];
    snprintf(path, sizeof path, FIXTURES "%s%s%s.npy", prefix, name, suffix);
    double *values;
    int ndim, shape[TENSOR_MAX_DIMS];
    if (npy_load_doubles(path, &values, &ndim, shape, err, sizeof err) != 0)
        fail_msg("%s (run the tests from the repository root)", err);
    if (n) *n = shape_size(ndim, shape);
    return values;
}

/* The worst |got - expected| / max(1, |expected|) over n values (reported, then asserted). */
static double worst_error(const double *expected, const real *got, long n) {
    double worst = 0;
    for (long k = 0; k < n; k++)
        worst = fmax(worst, fabs((double)got[k] - expected[k]) / fmax(1, fabs(expected[k])));
    return worst;
}

/* The three fixture parameters, with their initial values. */
static void make_params(ParamSet *params, const char *prefix) {
    static const int shapes[3][2] = {{3, 4}, {4, 0}, {5, 2}};
    static const int ndims[3] = {2, 1, 2};
    for (int i = 0; i < 3; i++) {
        Tensor *t = params_new(params, NULL, names[i], ndims[i], shapes[i]);
        long n;
        double *p0 = load_fixture(prefix, names[i], "_p0", &n);
        assert_int_equal(n, t->size);
        for (long k = 0; k < n; k++) t->data[k] = (real)p0[k];
        free(p0);
    }
}

static void test_adamw_matches_pytorch_step_by_step(void **state) {
    (void)state;
    long steps;
    double *lrs = load_fixture("adamw_", "lr", "", &steps);
    double *hyper = load_fixture("adamw_", "hyper", "", NULL);
    ParamSet params = {0};
    make_params(&params, "adamw_");
    AdamW opt;
    adamw_init(
        &opt, &params,
        (AdamWConfig){
            .beta1 = hyper[0], .beta2 = hyper[1], .eps = hyper[2], .weight_decay = hyper[3]});
    assert_int_equal(opt.decay[0], 1); /* w (3, 4): decayed */
    assert_int_equal(opt.decay[1], 0); /* b (4): not */
    assert_int_equal(opt.decay[2], 1); /* emb (5, 2): decayed */

    double *grads[3], *expected[3];
    for (int i = 0; i < 3; i++) {
        grads[i] = load_fixture("adamw_", names[i], "_grads", NULL);
        expected[i] = load_fixture("adamw_", names[i], "_p" RUN, NULL);
    }
    double worst = 0;
    for (long s = 0; s < steps; s++) {
        for (int i = 0; i < 3; i++) {
            Tensor *p = params.items[i].tensor;
            for (long k = 0; k < p->size; k++) p->grad[k] = (real)grads[i][s * p->size + k];
        }
        adamw_step(&opt, lrs[s]);
        assert_int_equal(opt.step, s + 1);
        for (int i = 0; i < 3; i++) {
            char what[64];
            snprintf(what, sizeof what, "AdamW %s after update %ld", names[i], s + 1);
            Tensor *p = params.items[i].tensor;
            worst = fmax(worst, worst_error(expected[i] + s * p->size, p->data, p->size));
            assert_close(expected[i] + s * p->size, p->data, p->size, ADAMW_TOLERANCE, what);
        }
    }
    for (int i = 0; i < 3; i++) {
        double *m = load_fixture("adamw_", names[i], "_m" RUN, NULL);
        double *v = load_fixture("adamw_", names[i], "_v" RUN, NULL);
        long n = params.items[i].tensor->size;
        worst =
            fmax(worst, fmax(worst_error(m, opt.m[i]->data, n), worst_error(v, opt.v[i]->data, n)));
        assert_close(m, opt.m[i]->data, n, ADAMW_TOLERANCE, "AdamW exp_avg");
        assert_close(v, opt.v[i]->data, n, ADAMW_TOLERANCE, "AdamW exp_avg_sq");
        free(m), free(v), free(grads[i]), free(expected[i]);
    }
    print_message("AdamW against torch (" REAL_NAME
                  "), %ld updates: worst error %.2g (tolerance %g)\n",
                  steps, worst, ADAMW_TOLERANCE);
    free(lrs), free(hyper);
    adamw_free(&opt);
    params_free(&params);
}

/* One scalar, g = 2, lr = 0.1, defaults, no decay: m = 0.2, v = 0.004, m^ = 2, v^ = 4,
 * p = 1 - 0.1 * 2 / (2 + 1e-8). With decay 0.01 first: p = 1 * (1 - 0.1 * 0.01) - the same. */
static void test_first_update_by_hand(void **state) {
    (void)state;
    for (int decay = 0; decay <= 1; decay++) {
        ParamSet params = {0};
        Tensor *p = params_new(&params, NULL, "p", 0, NULL);
        p->data[0] = 1;
        p->grad[0] = 2;
        AdamW opt;
        adamw_init(&opt, &params, ADAMW_DEFAULTS);
        assert_int_equal(opt.decay[0], 0); /* a scalar is not decayed by default */
        opt.decay[0] = (unsigned char)decay;
        adamw_step(&opt, 0.1);
        double expected[1] = {(decay ? 1 - 0.1 * 0.01 : 1.0) - 0.1 * 2 / (2 + 1e-8)};
        assert_close(expected, p->data, 1, 1e-7, "first AdamW update");
        double m[1] = {0.2}, v[1] = {0.004};
        assert_close(m, opt.m[0]->data, 1, 1e-7, "m after one update");
        assert_close(v, opt.v[0]->data, 1, 1e-7, "v after one update");
        adamw_free(&opt);
        params_free(&params);
    }
}

/* With lr 0 nothing moves (no decay either: it is lr * wd), but the moments still update. */
static void test_zero_lr_changes_only_the_moments(void **state) {
    (void)state;
    ParamSet params = {0};
    Tensor *w = params_new(&params, NULL, "w", 2, (int[]){2, 2});
    for (int k = 0; k < 4; k++) w->data[k] = (real)(k + 1), w->grad[k] = 1;
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    adamw_step(&opt, 0);
    for (int k = 0; k < 4; k++) {
        assert_true(w->data[k] == (real)(k + 1));
        assert_true(opt.m[0]->data[k] > 0);
    }
    adamw_free(&opt);
    params_free(&params);
}

/* adamw_step's loop is vectorised (optim.c). The result must be the same bits as the formulas of
 * optim.h written as one scalar loop in `real` (IEEE sqrt and division are correctly rounded,
 * so any vector width gives the same), on sizes that leave partial vectors (1, 17, 1000) and one
 * large enough to be split among threads (70001), decayed or not, over three updates. */
static void test_adamw_matches_the_scalar_formulas_bit_for_bit(void **state) {
    (void)state;
    enum { STEPS = 3 };
    const long sizes[4] = {1, 17, 1000, 70001};
    ParamSet params = {0};
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        Tensor *t = params_new(&params, NULL, name, 1, (int[]){(int)sizes[i]});
        for (long k = 0; k < t->size; k++) t->data[k] = (real)sin(0.3 * (double)k + i);
    }
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    opt.decay[1] = opt.decay[3] = 1;
    real *expected_p[4], *expected_m[4], *expected_v[4];
    for (int i = 0; i < 4; i++) {
        size_t bytes = (size_t)sizes[i] * sizeof(real);
        expected_p[i] = malloc(bytes), expected_m[i] = calloc(1, bytes);
        expected_v[i] = calloc(1, bytes);
        memcpy(expected_p[i], params.items[i].tensor->data, bytes);
    }
    const AdamWConfig c = ADAMW_DEFAULTS;
    for (int step = 1; step <= STEPS; step++) {
        double lr = 1e-2 * step;
        real decay_factor = (real)(1 - lr * c.weight_decay), beta1 = (real)c.beta1,
             beta2 = (real)c.beta2, one_minus_beta1 = (real)(1 - c.beta1),
             one_minus_beta2 = (real)(1 - c.beta2), eps = (real)c.eps,
             bias_correction2_sqrt = (real)sqrt(1 - pow(c.beta2, step)),
             neg_step_size = (real)(-(lr / (1 - pow(c.beta1, step))));
        for (int i = 0; i < 4; i++) {
            Tensor *t = params.items[i].tensor;
            real *p = expected_p[i], *m = expected_m[i], *v = expected_v[i];
            for (long k = 0; k < t->size; k++) {
                real g = t->grad[k] = (real)cos(0.7 * (double)k + step + i);
                real decayed = p[k] * (opt.decay[i] ? decay_factor : 1);
                m[k] = m[k] * beta1 + one_minus_beta1 * g;
                v[k] = v[k] * beta2 + one_minus_beta2 * g * g;
                real denom = (real)sqrt((double)v[k]) / bias_correction2_sqrt + eps;
                p[k] = decayed + neg_step_size * m[k] / denom;
            }
        }
        adamw_step(&opt, lr);
    }
    for (int i = 0; i < 4; i++) {
        size_t bytes = (size_t)sizes[i] * sizeof(real);
        if (memcmp(expected_p[i], params.items[i].tensor->data, bytes) != 0 ||
            memcmp(expected_m[i], opt.m[i]->data, bytes) != 0 ||
            memcmp(expected_v[i], opt.v[i]->data, bytes) != 0)
            fail_msg("adamw: parameter of %ld elements differs from the scalar formulas", sizes[i]);
        free(expected_p[i]), free(expected_m[i]), free(expected_v[i]);
    }
    adamw_free(&opt);
    params_free(&params);
}

static void test_decay_rule_is_by_number_of_dimensions(void **state) {
    (void)state;
    ParamSet params = {0};
    params_new(&params, "fc", "weight", 2, (int[]){3, 2});
    params_new(&params, "fc", "bias", 1, (int[]){3});
    params_new(&params, "ln", "weight", 1, (int[]){2});
    params_new(&params, "conv", "weight", 4, (int[]){2, 1, 3, 3});
    params_new(&params, "tok", "weight", 2, (int[]){256, 2});
    AdamW opt;
    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    const unsigned char expected[5] = {1, 0, 0, 1, 1};
    assert_memory_equal(opt.decay, expected, 5);
    adamw_free(&opt);
    params_free(&params);
}

static void test_adamw_refuses_bad_settings(void **state) {
    (void)state;
    ParamSet params = {0};
    params_new(&params, NULL, "w", 1, (int[]){2});
    AdamW opt;
    AdamWConfig c = ADAMW_DEFAULTS;
    c.beta1 = 1;
    EXPECT_FAIL(adamw_init(&opt, &params, c), "betas must lie in [0, 1), got beta1 1");
    c = ADAMW_DEFAULTS, c.beta2 = -0.1;
    EXPECT_FAIL(adamw_init(&opt, &params, c), "beta2 -0.1");
    c = ADAMW_DEFAULTS, c.eps = -1;
    EXPECT_FAIL(adamw_init(&opt, &params, c), "eps must be >= 0");
    c = ADAMW_DEFAULTS, c.weight_decay = NAN;
    EXPECT_FAIL(adamw_init(&opt, &params, c), "weight_decay must be >= 0, got nan");

    adamw_init(&opt, &params, ADAMW_DEFAULTS);
    EXPECT_FAIL(adamw_step(&opt, -1e-3), "adamw_step: lr must be >= 0, got -0.001");
    EXPECT_FAIL(adamw_step(&opt, NAN), "lr must be >= 0");
    params_new(&params, NULL, "late", 1, (int[]){2});
    EXPECT_FAIL(adamw_step(&opt, 1e-3), "the parameter set has 2 parameters but had 1");
    adamw_free(&opt);
    params_free(&params);
}

/* --- Schedule ----------------------------------------------------------------------------------
 */

static void test_schedule_warms_up_linearly_then_follows_a_half_cosine(void **state) {
    (void)state;
    LrSchedule s = {.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .total_steps = 110};
    struct {
        long step;
        double lr;
    } cases[] = {
        {0, 1e-4},                                 /* peak * 1 / 10 */
        {4, 5e-4},                                 /* peak * 5 / 10 */
        {9, 1e-3},                                 /* the end of warm-up reaches the peak */
        {10, 1e-3},                                /* the cosine starts at the peak */
        {60, 5.5e-4},                              /* half way: (peak + min) / 2 */
        {35, 1e-4 + 9e-4 * 0.5 * (1 + M_SQRT1_2)}, /* a quarter: cos(pi / 4) */
        {85, 1e-4 + 9e-4 * 0.5 * (1 - M_SQRT1_2)}, /* three quarters */
        {110, 1e-4},                               /* total_steps: the floor */
        {1000000, 1e-4},                           /* and after */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double got = lr_schedule_at(&s, cases[k].step);
        if (fabs(got - cases[k].lr) > 1e-15)
            fail_msg("lr at step %ld: expected %.17g, got %.17g", cases[k].step, cases[k].lr, got);
    }
    for (long step = 10; step < 110; step++) /* monotone decreasing after warm-up */
        assert_true(lr_schedule_at(&s, step + 1) <= lr_schedule_at(&s, step));

    LrSchedule none = {.peak_lr = 2e-3, .min_lr = 0, .warmup_steps = 0, .total_steps = 4};
    assert_true(lr_schedule_at(&none, 0) == 2e-3); /* no warm-up: the peak at once */
    assert_true(fabs(lr_schedule_at(&none, 2) - 1e-3) < 1e-18);
    assert_true(lr_schedule_at(&none, 4) == 0);
}

static void test_schedule_refuses_bad_settings(void **state) {
    (void)state;
    LrSchedule s = {.peak_lr = 1e-3, .min_lr = 2e-3, .warmup_steps = 0, .total_steps = 10};
    EXPECT_FAIL(lr_schedule_at(&s, 0), "need 0 <= min_lr <= peak_lr, got min_lr 0.002");
    s = (LrSchedule){.peak_lr = 1e-3, .min_lr = 0, .warmup_steps = 20, .total_steps = 10};
    EXPECT_FAIL(lr_schedule_at(&s, 0), "need 0 <= warmup_steps <= total_steps, got 20 and 10");
    s.total_steps = 30;
    EXPECT_FAIL(lr_schedule_at(&s, -1), "step -1 is negative");
}

/* --- Clipping ----------------------------------------------------------------------------------
 */

static void test_clip_matches_pytorch(void **state) {
    (void)state;
    double *max_norms = load_fixture("clip_", "max", "", NULL);
    double *norm = load_fixture("clip_", "norm", "", NULL);
    for (int clipping = 1; clipping >= 0; clipping--) {
        ParamSet params = {0};
        make_params(&params, "adamw_"); /* the shapes; values are not used */
        double *grads[3];
        for (int i = 0; i < 3; i++) {
            Tensor *p = params.items[i].tensor;
            grads[i] = load_fixture("clip_", names[i], "_grad", NULL);
            for (long k = 0; k < p->size; k++) p->grad[k] = (real)grads[i][k];
        }
        double got = clip_grad_norm(&params, max_norms[clipping ? 0 : 1]);
        if (fabs(got - norm[0]) > 1e-12 * norm[0])
            fail_msg("clip_grad_norm returned %.17g, torch %.17g", got, norm[0]);
        for (int i = 0; i < 3; i++) {
            Tensor *p = params.items[i].tensor;
            double *expected =
                clipping ? load_fixture("clip_", names[i], "_clipped", NULL) : grads[i];
            assert_close(expected, p->grad, p->size, clipping ? CLIP_TOLERANCE : 0,
                         clipping ? "clipped gradient" : "gradient under max_norm (untouched)");
            if (clipping) free(expected);
            free(grads[i]);
        }
        params_free(&params);
    }
    free(max_norms), free(norm);
}

/* Gradients (3, 4) -> norm 5; max_norm 1 scales by 1 / (5 + 1e-6); max_norm 0 only measures. */
static void test_clip_by_hand_and_measure_only(void **state) {
    (void)state;
    ParamSet params = {0};
    Tensor *a = params_new(&params, NULL, "a", 1, (int[]){1});
    Tensor *b = params_new(&params, NULL, "b", 1, (int[]){1});
    a->grad[0] = 3, b->grad[0] = 4;
    assert_true(clip_grad_norm(&params, 0) == 5);
    assert_true(a->grad[0] == 3 && b->grad[0] == 4);
    assert_true(clip_grad_norm(&params, 1) == 5);
    double expected[2] = {3 / (5 + 1e-6), 4 / (5 + 1e-6)};
    assert_close(expected, a->grad, 1, 1e-7, "a clipped");
    assert_close(expected + 1, b->grad, 1, 1e-7, "b clipped");

    a->grad[0] = NAN;
    b->grad[0] = 4;
    assert_true(isnan(clip_grad_norm(&params, 1)));
    assert_true(b->grad[0] == 4); /* a NaN norm leaves the gradients alone */
    params_free(&params);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_pytorch_step_by_step),
        cmocka_unit_test(test_first_update_by_hand),
        cmocka_unit_test(test_zero_lr_changes_only_the_moments),
        cmocka_unit_test(test_decay_rule_is_by_number_of_dimensions),
        cmocka_unit_test(test_adamw_refuses_bad_settings),
        cmocka_unit_test(test_adamw_matches_the_scalar_formulas_bit_for_bit),
        cmocka_unit_test(test_schedule_warms_up_linearly_then_follows_a_half_cosine),
        cmocka_unit_test(test_schedule_refuses_bad_settings),
        cmocka_unit_test(test_clip_matches_pytorch),
        cmocka_unit_test(test_clip_by_hand_and_measure_only),
    };
    return cmocka_run_group_tests_name("train: optim (" REAL_NAME ")", tests, NULL, NULL);
}
