/* gradcheck.h - compare tape gradients with central finite differences.
 *
 * A function under test maps input tensors to one output tensor. The checker draws a fixed
 * random projection r (same shape as the output, N(0,1) entries) and differentiates the scalar
 * L = sum(r * f(inputs)) two ways:
 *   - the tape: one forward pass recorded, tape_backward_from(output, r);
 *   - central differences: dL/dx_e ~ (L(x + h e) - L(x - h e)) / 2h for each element e,
 *     with error O(h^2) from truncation and O(eps_machine / h) from rounding.
 * Build in double (-DCPOOL_DOUBLE): with h = 1e-6 truncation is ~1e-13 and rounding ~1e-10
 * (relative) for smooth ops of moderate curvature.
 * A NaN or Inf gradient on either side makes the errors NaN, which fails every tolerance.
 *
 * Errors are reported per input as max_abs_err = max_e |tape_e - numeric_e| and
 * max_rel_err = max_abs_err / max(max_e |tape_e|, max_e |numeric_e|): the error relative to the
 * scale of that input's gradient, so tiny components do not inflate it and zero gradients
 * (both sides exactly 0) give 0.
 *
 * gradcheck_direction() is the cheap whole-model check: one random direction v over all inputs,
 * comparing sum_e grad_e v_e with (L(x + h v) - L(x - h v)) / 2h.
 *
 *     static Tensor *f(Tape *tape, Tensor *const *in, void *context) {
 *         return op_mul(tape, in[0], op_exp(tape, in[1]));
 *     }
 *     Tensor *in[2] = {gradcheck_input(&rng, 2, (int[]){3, 4}, -1, 1), ...};
 *     GradcheckStats stats = {0};
 *     gradcheck(f, NULL, in, 2, NULL, &stats, NULL);
 *     printf("%g\n", stats.max_rel_err);
 */
#ifndef CPOOL_GRADCHECK_H
#define CPOOL_GRADCHECK_H

#include <stdint.h>

#include "rng.h"
#include "tape.h"

typedef Tensor *(*GradcheckFn)(Tape *tape, Tensor *const *inputs, void *context);

typedef struct GradcheckOptions {
    double step;       /* h; 0 means the default 1e-6 */
    long max_elements; /* per input; larger inputs are checked on a random subset. 0: all */
    uint64_t seed;     /* for the projection r and the subset */
} GradcheckOptions;

typedef struct GradcheckStats {
    int checks;    /* calls folded into these numbers */
    long elements; /* elements (or directions) compared */
    double max_abs_err;
    double max_rel_err;
} GradcheckStats;

/* Element-by-element check of every input that requires grad. Inputs must be owned tensors
 * (tensor_create with requires_grad = 1 for those to check). Folds the result into *total and,
 * if per_input is not NULL, into per_input[i] for each input. Returns this call's max_rel_err. */
double gradcheck(GradcheckFn fn, void *context, Tensor *const *inputs, int n_inputs,
                 const GradcheckOptions *options, GradcheckStats *total, GradcheckStats *per_input);

/* Whole-model check along one random direction over all inputs that require grad. */
double gradcheck_direction(GradcheckFn fn, void *context, Tensor *const *inputs, int n_inputs,
                           const GradcheckOptions *options, GradcheckStats *total);

/* Fold one result into an aggregate (max of errors, sum of counts). */
void gradcheck_stats_merge(GradcheckStats *into, const GradcheckStats *from);

/* An owned input with requires_grad = 1, uniform in [lo, hi). */
Tensor *gradcheck_input(Rng *rng, int ndim, const int *shape, double lo, double hi);
/* Like gradcheck_input, but every value is at least `margin` away from each of the n_kinks
 * points in kinks (e.g. relu at 0): finite differences across a kink are meaningless, so kinks
 * are avoided by construction. Requires margin > the step h. */
Tensor *gradcheck_input_away(Rng *rng, int ndim, const int *shape, double lo, double hi,
                             const double *kinks, int n_kinks, double margin);
void gradcheck_free(Tensor *const *inputs, int n_inputs);

/* --- The registry behind `cpool gradcheck` (layers/check_registry.c: it sees ops and layers) ---
 * One OpCheck per op or layer name. run() draws a few random shapes from rng, calls gradcheck
 * on each and folds everything into stats. tolerance bounds stats.max_rel_err for a PASS; each
 * table entry justifies its tolerance in a comment. */
typedef struct OpCheck {
    const char *name;
    void (*run)(Rng *rng, GradcheckStats *stats);
    double tolerance;
} OpCheck;

int opcheck_count(void);
const OpCheck *opcheck_at(int index);
const OpCheck *opcheck_find(const char *name); /* NULL if unknown */

#endif
