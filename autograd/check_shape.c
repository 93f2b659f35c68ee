/* check_shape.c - gradient checks for the ops in ops_shape.c.
 *
 * Step and tolerance. Every shape op is linear (it only moves elements), so L = sum(r * f(x)) is
 * linear in each element and central differences have no truncation error at any step h: only
 * rounding, ~ eps_machine |L| / h. With the default h = 1e-6 that is ~1e-9 absolute, too close to
 * 1e-8 relative when an input's largest gradient entry (one r value) happens to be small (seen:
 * 3e-7 on a one-element piece). So these checks use h = 1e-3: rounding ~1e-12 absolute, and
 * 1e-8 relative holds with two orders of margin even for gradients of size 0.01. A wrong
 * backward is off by O(1) relative, whatever h. */
#include "gradcheck.h"
#include "ops.h"

/* Random shape of ndim dims, each 1..max_dim (size-1 dims included). */
static void random_shape(Rng *rng, int ndim, int max_dim, int *shape) {
    for (int d = 0; d < ndim; d++) shape[d] = 1 + rng_int(rng, max_dim);
}

/* h = 1e-3: exact for linear maps (see the top of the file). */
static GradcheckOptions options(Rng *rng) {
    return (GradcheckOptions){.step = 1e-3, .seed = rng_u64(rng)};
}

/* ---- reshape ---- */
typedef struct ReshapeCase {
    int ndim, shape[TENSOR_MAX_DIMS];
} ReshapeCase;

static Tensor *reshape_fn(Tape *tape, Tensor *const *in, void *context) {
    const ReshapeCase *c = context;
    return op_reshape(tape, in[0], c->ndim, c->shape);
}

/* x of 1..3 dims reshaped to (-1, last) , (size), and (last, 1, -1). */
static void check_reshape(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 3; trial++) {
        int shape[3];
        random_shape(rng, 3, 4, shape);
        Tensor *x = gradcheck_input(rng, 1 + trial, shape, -2, 2);
        int last = x->shape[x->ndim - 1];
        ReshapeCase cases[3] = {{2, {-1, last}}, {1, {(int)x->size}}, {3, {last, 1, -1}}};
        for (int k = 0; k < 3; k++) {
            GradcheckOptions opt = options(rng);
            gradcheck(reshape_fn, &cases[k], &x, 1, &opt, stats, NULL);
        }
        gradcheck_free(&x, 1);
    }
}

/* ---- transpose ---- */
static Tensor *transpose_fn(Tape *tape, Tensor *const *in, void *context) {
    const int *dims = context;
    return op_transpose(tape, in[0], dims[0], dims[1]);
}

/* 1..4 dims, a random pair of axes (given negative half the time; equal axes allowed). */
static void check_transpose(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 4; trial++) {
        int ndim = 1 + trial, shape[4];
        random_shape(rng, ndim, 4, shape);
        Tensor *x = gradcheck_input(rng, ndim, shape, -2, 2);
        int dims[2] = {rng_int(rng, ndim), rng_int(rng, ndim) - (trial % 2 ? ndim : 0)};
        GradcheckOptions opt = options(rng);
        gradcheck(transpose_fn, dims, &x, 1, &opt, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

/* ---- permute ---- */
static Tensor *permute_fn(Tape *tape, Tensor *const *in, void *context) {
    return op_permute(tape, in[0], context);
}

/* 0..5 dims (a scalar included), a random permutation (Fisher-Yates). */
static void check_permute(Rng *rng, GradcheckStats *stats) {
    for (int ndim = 0; ndim <= 5; ndim++) {
        int shape[5], perm[5];
        random_shape(rng, ndim, 3, shape);
        for (int d = 0; d < ndim; d++) perm[d] = d;
        for (int d = ndim - 1; d > 0; d--) {
            int other = rng_int(rng, d + 1), keep = perm[d];
            perm[d] = perm[other];
            perm[other] = keep;
        }
        Tensor *x = gradcheck_input(rng, ndim, shape, -2, 2);
        GradcheckOptions opt = options(rng);
        gradcheck(permute_fn, perm, &x, 1, &opt, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

/* ---- slice ---- */
static Tensor *slice_fn(Tape *tape, Tensor *const *in, void *context) {
    const int *args = context; /* axis, start, end */
    return op_slice(tape, in[0], args[0], args[1], args[2]);
}

/* 1..3 dims, a random axis and a random non-empty range [start, end). */
static void check_slice(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 6; trial++) {
        int ndim = 1 + trial % 3, shape[3];
        random_shape(rng, ndim, 5, shape);
        int axis = rng_int(rng, ndim), size = shape[axis];
        int start = rng_int(rng, size), end = start + 1 + rng_int(rng, size - start);
        int args[3] = {trial < 3 ? axis : axis - ndim, start, end};
        Tensor *x = gradcheck_input(rng, ndim, shape, -2, 2);
        GradcheckOptions opt = options(rng);
        gradcheck(slice_fn, args, &x, 1, &opt, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

/* ---- concat ---- */
static Tensor *concat_fn(Tape *tape, Tensor *const *in, void *context) {
    const int *args = context; /* n, axis */
    return op_concat(tape, in, args[0], args[1]);
}

/* 1..3 pieces of 1..3 dims that differ only along the random axis. */
static void check_concat(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 6; trial++) {
        int ndim = 1 + trial % 3, n = 1 + rng_int(rng, 3), shape[3];
        random_shape(rng, ndim, 4, shape);
        int axis = rng_int(rng, ndim);
        Tensor *pieces[3];
        for (int k = 0; k < n; k++) {
            shape[axis] = 1 + rng_int(rng, 4);
            pieces[k] = gradcheck_input(rng, ndim, shape, -2, 2);
        }
        int args[2] = {n, trial % 2 ? axis - ndim : axis};
        GradcheckOptions opt = options(rng);
        gradcheck(concat_fn, args, pieces, n, &opt, stats, NULL);
        gradcheck_free(pieces, n);
    }
}

const OpCheck check_table_shape[] = {
    /* Linear ops checked with h = 1e-3: rounding only (see the top of the file), 1e-8. */
    {"reshape", check_reshape, 1e-8}, {"transpose", check_transpose, 1e-8},
    {"permute", check_permute, 1e-8}, {"slice", check_slice, 1e-8},
    {"concat", check_concat, 1e-8},   {0},
};
