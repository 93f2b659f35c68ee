/* check_nn.c - gradient checks for the ops in ops_nn.c.
 *
 * Integer arguments (class targets, embedding ids) are not differentiable: they travel to the
 * function under test through the context pointer, and only the real inputs are perturbed. */
#include "gradcheck.h"
#include "ops.h"

/* Finite-difference steps. Smooth ops use h = 1e-5, near the optimal central-difference step
 * cbrt(eps_machine) ~ 6e-6 in double: truncation (h^2 / 6) f''' ~ 2e-11 |f'''| and rounding
 * ~ 1e-16 |L| / h = 1e-11 |L| (L = sum r * f, the projected output). The default h = 1e-6 has ten
 * times the rounding, which shows when a gradient is small next to |L|: a peaked softmax row
 * (p (1 - p) ~ 2e-3) or cross-entropy over N rows (each dL/dx ~ 1/N) then reach ~1e-8.
 * Embedding is linear in its weight: no truncation at all, so a larger step only cuts rounding. */
static const double SMOOTH_STEP = 1e-5, LINEAR_STEP = 1e-3;

/* A random shape of ndim dimensions, each in 1..max_dim; returns ndim. */
static int random_shape(Rng *rng, int ndim, int max_dim, int *shape) {
    for (int d = 0; d < ndim; d++) shape[d] = 1 + rng_int(rng, max_dim);
    return ndim;
}

/* --- softmax, log_softmax: 1- to 4-d inputs, values in [-3, 3) ------------------------------ */
static Tensor *softmax_fn(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    return op_softmax(tape, in[0]);
}

static Tensor *log_softmax_fn(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    return op_log_softmax(tape, in[0]);
}

static void check_rowwise_once(Rng *rng, GradcheckStats *stats, GradcheckFn fn, int ndim,
                               const int *shape) {
    Tensor *x = gradcheck_input(rng, ndim, shape, -3, 3);
    GradcheckOptions options = {.step = SMOOTH_STEP, .seed = rng_u64(rng)};
    gradcheck(fn, NULL, &x, 1, &options, stats, NULL);
    gradcheck_free(&x, 1);
}

/* 1- to 4-d inputs with D = 3..5 and other dimensions 1..4; then D = 2 with 3 to 5 rows, and
 * D = 1 (y = 1, a zero gradient). Why D = 2 is not drawn with a single row: there the whole
 * gradient lies along one direction (softmax: dx = p0 p1 (r0 - r1) (1, -1), r being gradcheck's
 * random projection), so it is small whenever r0 ~ r1, while the finite-difference rounding
 * (~1e-16 |L| / h) is not; the relative error then measures bad luck, not the gradient. */
static void check_rowwise(Rng *rng, GradcheckStats *stats, GradcheckFn fn) {
    for (int trial = 0; trial < 6; trial++) {
        int shape[4], ndim = random_shape(rng, 1 + trial % 4, 4, shape);
        shape[ndim - 1] = 3 + rng_int(rng, 3);
        check_rowwise_once(rng, stats, fn, ndim, shape);
    }
    check_rowwise_once(rng, stats, fn, 2, (int[]){3 + rng_int(rng, 3), 2});
    check_rowwise_once(rng, stats, fn, 2, (int[]){2, 1});
}

static void check_softmax(Rng *rng, GradcheckStats *stats) {
    check_rowwise(rng, stats, softmax_fn);
}

static void check_log_softmax(Rng *rng, GradcheckStats *stats) {
    check_rowwise(rng, stats, log_softmax_fn);
}

/* --- cross_entropy: (rows, C) and (B, T, C) logits, about a quarter of the rows ignored ------ */
typedef struct Targets {
    const int *ids;
    int ignore_index;
} Targets;

static Tensor *cross_entropy_fn(Tape *tape, Tensor *const *in, void *context) {
    const Targets *targets = context;
    return op_cross_entropy(tape, in[0], targets->ids, targets->ignore_index);
}

static void check_cross_entropy(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 6; trial++) {
        int shape[3];
        int ndim = random_shape(rng, 2 + trial % 2, 5, shape);
        Tensor *logits = gradcheck_input(rng, ndim, shape, -3, 3);
        int classes = shape[ndim - 1], rows = (int)(logits->size / classes);
        /* Trial 2 ignores class 0 (padding as a real class id); the others use -100. */
        Targets targets = {.ignore_index = trial == 2 ? 0 : -100};
        int ids[25] = {0}; /* rows <= 5 * 5 */
        for (int r = 0; r < rows; r++)
            ids[r] = r > 0 && rng_int(rng, 4) == 0 ? targets.ignore_index : rng_int(rng, classes);
        if (ids[0] == targets.ignore_index) ids[0] = classes - 1; /* at least one counted row */
        targets.ids = ids;
        GradcheckOptions options = {.step = SMOOTH_STEP, .seed = rng_u64(rng)};
        gradcheck(cross_entropy_fn, &targets, &logits, 1, &options, stats, NULL);
        gradcheck_free(&logits, 1);
    }
}

/* --- layernorm: every combination of weight / bias ------------------------------------------ */
typedef struct LayerNormCall {
    int has_weight, has_bias;
    double eps;
} LayerNormCall;

static Tensor *layernorm_fn(Tape *tape, Tensor *const *in, void *context) {
    const LayerNormCall *call = context;
    Tensor *weight = call->has_weight ? in[1] : NULL;
    Tensor *bias = call->has_bias ? in[1 + call->has_weight] : NULL;
    return op_layernorm(tape, in[0], weight, bias, (real)call->eps);
}

/* Redraw any row whose biased variance is below 0.1: near-constant rows make 1 / sigma (up to
 * 1 / sqrt(eps) = 316) and the curvature huge, which is a property of layernorm, not of our
 * gradient, and would only measure finite-difference truncation. */
static void spread_rows(Rng *rng, Tensor *x) {
    long D = x->shape[x->ndim - 1];
    for (long r = 0; D > 1 && r < x->size / D; r++) {
        real *row = x->data + r * D;
        for (;;) {
            double mean = 0, var = 0;
            for (long j = 0; j < D; j++) mean += row[j] / (double)D;
            for (long j = 0; j < D; j++) var += (row[j] - mean) * (row[j] - mean) / (double)D;
            if (var >= 0.1) break;
            for (long j = 0; j < D; j++) row[j] = (real)rng_range(rng, -2, 2);
        }
    }
}

/* x of the given shape (last dimension D); weight in [-1.5, 1.5), bias in [-1, 1). */
static void check_layernorm_once(Rng *rng, GradcheckStats *stats, LayerNormCall call, int ndim,
                                 const int *shape) {
    int D = shape[ndim - 1];
    Tensor *in[3] = {gradcheck_input(rng, ndim, shape, -2, 2)};
    spread_rows(rng, in[0]);
    int n_inputs = 1;
    if (call.has_weight) in[n_inputs++] = gradcheck_input(rng, 1, &D, -1.5, 1.5);
    if (call.has_bias) in[n_inputs++] = gradcheck_input(rng, 1, &D, -1, 1);
    GradcheckOptions options = {.step = SMOOTH_STEP, .seed = rng_u64(rng)};
    gradcheck(layernorm_fn, &call, in, n_inputs, &options, stats, NULL);
    gradcheck_free(in, n_inputs);
}

/* 1- to 3-d x with D = 4..7, other dimensions 1..4, eps = 1e-5, every weight / bias combination
 * twice. Narrow rows get their own trials, each with 3 to 5 rows:
 *   D = 3: dx is r projected off (1, xhat), one direction per row; a single row would make it
 *          small by chance (the softmax D = 2 story above), several rows do not;
 *   D = 2: xhat = +-sqrt(var / (var + eps)) barely depends on x (dx ~ eps / var): with
 *          eps = 1e-5 that gradient drowns in finite-difference rounding, so eps = 1 here;
 *   D = 1: xhat = 0, y = bias whatever x is: dx = dweight = 0. */
static void check_layernorm(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 8; trial++) {
        LayerNormCall call = {.has_weight = trial % 2, .has_bias = trial / 2 % 2, .eps = 1e-5};
        int shape[3], ndim = random_shape(rng, 1 + trial % 3, 4, shape);
        shape[ndim - 1] = 4 + rng_int(rng, 4);
        check_layernorm_once(rng, stats, call, ndim, shape);
    }
    check_layernorm_once(rng, stats, (LayerNormCall){1, 1, 1e-5}, 2,
                         (int[]){3 + rng_int(rng, 3), 3});
    check_layernorm_once(rng, stats, (LayerNormCall){1, 1, 1.0}, 2,
                         (int[]){3 + rng_int(rng, 3), 2});
    check_layernorm_once(rng, stats, (LayerNormCall){1, 1, 1e-5}, 2,
                         (int[]){3 + rng_int(rng, 3), 1});
}

/* --- embedding: the gradient input is the weight; ids repeat ------------------------------- */
typedef struct Ids {
    const int *values;
    int ndim;
    const int *shape;
} Ids;

static Tensor *embedding_fn(Tape *tape, Tensor *const *in, void *context) {
    const Ids *ids = context;
    return op_embedding(tape, in[0], ids->values, ids->ndim, ids->shape);
}

static void check_embedding(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 5; trial++) {
        int vocabulary = 1 + rng_int(rng, 5), width = 1 + rng_int(rng, 4);
        int id_shape[3], values[64];                          /* positions <= 4^3 */
        int ndim = random_shape(rng, trial % 4, 4, id_shape); /* 0-d ids once */
        long positions = 1;
        for (int d = 0; d < ndim; d++) positions *= id_shape[d];
        for (long p = 0; p < positions; p++) values[p] = rng_int(rng, vocabulary);
        if (positions > 2) values[positions - 1] = values[0]; /* a repeated id for certain */
        Ids ids = {values, ndim, id_shape};
        Tensor *weight = gradcheck_input(rng, 2, (int[]){vocabulary, width}, -1, 1);
        GradcheckOptions options = {.step = LINEAR_STEP, .seed = rng_u64(rng)};
        gradcheck(embedding_fn, &ids, &weight, 1, &options, stats, NULL);
        gradcheck_free(&weight, 1);
    }
}

const OpCheck check_table_nn[] = {
    /* Smooth ops on moderate values (|x| < 3, layernorm rows with variance >= 0.1), h = 1e-5
     * (SMOOTH_STEP above): truncation plus rounding give ~1e-10 relative (seed 1: <= 7e-10);
     * the worst over seeds 1..500 is 3.7e-9 (softmax), still under the 1e-8 bar. */
    {"softmax", check_softmax, 1e-8},
    {"log_softmax", check_log_softmax, 1e-8},
    {"cross_entropy", check_cross_entropy, 1e-8},
    {"layernorm", check_layernorm, 1e-8},
    /* Embedding is linear in the weight: only rounding error, ~1e-16 |L| / h, far below 1e-8. */
    {"embedding", check_embedding, 1e-8},
    {0},
};
