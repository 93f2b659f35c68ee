/* check_unary.c - gradient checks for the ops in ops_unary.c. */
#include "gradcheck.h"
#include "ops.h"

static Tensor *exp_fn(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    return op_exp(tape, in[0]);
}

/* Random shapes of 1 to 3 dims, inputs in [-2, 2): exp is smooth everywhere. */
static void check_exp(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < 3; trial++) {
        int shape[3] = {1 + rng_int(rng, 4), 1 + rng_int(rng, 4), 1 + rng_int(rng, 4)};
        Tensor *x = gradcheck_input(rng, 1 + trial, shape, -2, 2);
        gradcheck(exp_fn, NULL, &x, 1, &(GradcheckOptions){.seed = rng_u64(rng)}, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

const OpCheck check_table_unary[] = {
    /* Smooth ops: central differences with h = 1e-6 in double err by ~1e-10 relative
     * (h^2 f''' truncation, 1e-16/h rounding); 1e-8 leaves two orders of margin. */
    {"exp", check_exp, 1e-8},
    {0},
};
