/* check_binary.c - gradient checks for the ops in ops_binary.c.
 *
 * Each op is checked on a list of broadcasting patterns, with the gradient of both inputs. A
 * pattern spells each input's shape with one character per dimension: a letter is a size drawn
 * at random (2 to 4; the same letter is the same size in both), '1' is a dimension of size 1, and
 * "" is a 0-d tensor. So {"abc", "c"} is x (B, N, D) with a bias (D). */
#include <string.h>

#include "gradcheck.h"
#include "ops.h"

typedef Tensor *(*BinaryFn)(Tape *tape, Tensor *a, Tensor *b);

static const char *const PATTERNS[][2] = {
    {"ab", "ab"},         /* same shape */
    {"abc", "c"},         /* bias along leading dimensions */
    {"c", "abc"},         /* the same, a broadcast */
    {"a1", "1b"},         /* (3, 1) with (1, 4): both broadcast */
    {"", "ab"},           /* 0-d with 2-d */
    {"ab", ""},           /* and the other way */
    {"ab1", "b"},         /* (B, N, 1) with (N): a trailing size-1 dimension */
    {"a1c", "ab1"},       /* size-1 dims in the middle and at the end */
    {"a", "a"},           /* 1-d */
    {"a1c1e", "1b1d1"},   /* 5-d, alternating */
    {"1b1d1f", "a1c1e1"}, /* 6-d */
};
enum { N_PATTERNS = sizeof PATTERNS / sizeof PATTERNS[0] };

static Tensor *binary_fn(Tape *tape, Tensor *const *in, void *context) {
    BinaryFn op = *(BinaryFn *)context;
    return op(tape, in[0], in[1]);
}

/* The shape a pattern spells, with the sizes drawn for the letters a..z. */
static int pattern_shape(const char *pattern, const int *letter_size, int *shape) {
    int ndim = (int)strlen(pattern);
    for (int d = 0; d < ndim; d++) shape[d] = pattern[d] == '1' ? 1 : letter_size[pattern[d] - 'a'];
    return ndim;
}

/* Every pattern once with step h. a in [-2, 2); b likewise, but with |b| >= b_margin (for div,
 * whose gradients grow like 1 / b^2). Both inputs are checked. */
static void check_patterns(Rng *rng, GradcheckStats *stats, BinaryFn op, double b_margin,
                           double step) {
    const double zero[1] = {0};
    for (int p = 0; p < N_PATTERNS; p++) {
        int letter_size[26], shape_a[TENSOR_MAX_DIMS], shape_b[TENSOR_MAX_DIMS];
        for (int k = 0; k < 26; k++) letter_size[k] = 2 + rng_int(rng, 3);
        int ndim_a = pattern_shape(PATTERNS[p][0], letter_size, shape_a);
        int ndim_b = pattern_shape(PATTERNS[p][1], letter_size, shape_b);
        Tensor *in[2] = {gradcheck_input(rng, ndim_a, shape_a, -2, 2),
                         b_margin > 0
                             ? gradcheck_input_away(rng, ndim_b, shape_b, -2, 2, zero, 1, b_margin)
                             : gradcheck_input(rng, ndim_b, shape_b, -2, 2)};
        GradcheckOptions options = {.step = step, .seed = rng_u64(rng)};
        gradcheck(binary_fn, &op, in, 2, &options, stats, NULL);
        gradcheck_free(in, 2);
    }
}

/* Steps. add, sub and mul are linear in each input element, so a central difference is exact
 * for any h and only its rounding error, about eps |L| / h, remains: h = 1e-3 makes it a
 * thousand times smaller than the default 1e-6 (which, for a 0-d input whose gradient sum(r)
 * happens to cancel, leaves only a factor 2 below 1e-8). div is linear in a; in b the central
 * difference of c / b is exactly c / (b^2 - h^2), a relative error h^2 / b^2 <= 4e-10 for
 * h = 1e-5 and |b| >= 0.5, with a rounding error ten times smaller than at 1e-6. */
static const double LINEAR_STEP = 1e-3, DIV_STEP = 1e-5;

static void check_add(Rng *rng, GradcheckStats *s) {
    check_patterns(rng, s, op_add, 0, LINEAR_STEP);
}
static void check_sub(Rng *rng, GradcheckStats *s) {
    check_patterns(rng, s, op_sub, 0, LINEAR_STEP);
}
static void check_mul(Rng *rng, GradcheckStats *s) {
    check_patterns(rng, s, op_mul, 0, LINEAR_STEP);
}
static void check_div(Rng *rng, GradcheckStats *s) {
    check_patterns(rng, s, op_div, 0.5, DIV_STEP);
}

const OpCheck check_table_binary[] = {
    /* add, sub, mul: rounding only, ~1e-12 at LINEAR_STEP; the 0-d patterns can reach 3e-10
     * when the gradient sum(r) itself nearly cancels. div: truncation <= 4e-10 plus rounding,
     * at worst 1e-9 over 200 seeds. 1e-8 for all four. */
    {"add", check_add, 1e-8},
    {"sub", check_sub, 1e-8},
    {"mul", check_mul, 1e-8},
    {"div", check_div, 1e-8},
    {0},
};
