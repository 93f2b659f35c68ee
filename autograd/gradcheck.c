/* gradcheck.c - see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { MAX_CHECK_INPUTS = 16 };
static const double DEFAULT_STEP = 1e-6;

/* L = sum(r * f(inputs)) without recording: one forward pass on a scratch tape. */
static double projected_output(GradcheckFn fn, void *context, Tensor *const *inputs, Tape *tape,
                               const double *projection) {
    tape_reset(tape);
    Tensor *y = fn(tape, inputs, context);
    double sum = 0;
    for (long i = 0; i < y->size; i++) sum += projection[i] * (double)y->data[i];
    return sum;
}

/* The projection r (N(0,1), one value per output element), sized by a first forward pass. */
static double *draw_projection(GradcheckFn fn, void *context, Tensor *const *inputs, Tape *tape,
                               Rng *rng, long *size) {
    tape_reset(tape);
    Tensor *y = fn(tape, inputs, context);
    double *projection = xmalloc((size_t)y->size * sizeof(double));
    for (long i = 0; i < y->size; i++) projection[i] = rng_normal(rng);
    *size = y->size;
    return projection;
}

/* Tape gradients of L for every input, copied out as doubles (grads[i] NULL if not needed). */
static void tape_gradients(GradcheckFn fn, void *context, Tensor *const *inputs, int n_inputs,
                           const double *projection, double **grads) {
    Tape *tape = tape_create();
    for (int i = 0; i < n_inputs; i++) tensor_zero_grad(inputs[i]);
    Tensor *y = fn(tape, inputs, context);
    real *seed = xmalloc((size_t)y->size * sizeof(real));
    for (long i = 0; i < y->size; i++) seed[i] = (real)projection[i];
    tape_backward_from(tape, y, seed);
    free(seed);
    for (int i = 0; i < n_inputs; i++) {
        grads[i] = NULL;
        if (!inputs[i]->requires_grad) continue;
        grads[i] = xmalloc((size_t)inputs[i]->size * sizeof(double));
        for (long e = 0; e < inputs[i]->size; e++) grads[i][e] = inputs[i]->grad[e];
    }
    tape_free(tape);
}

void gradcheck_stats_merge(GradcheckStats *into, const GradcheckStats *from) {
    into->checks += from->checks;
    into->elements += from->elements;
    /* A NaN error (a NaN or Inf gradient on either side) must survive every merge, so that it
     * fails the tolerance test instead of being dropped by a plain ">" comparison. */
    if (from->max_abs_err > into->max_abs_err || isnan(from->max_abs_err))
        into->max_abs_err = from->max_abs_err;
    if (from->max_rel_err > into->max_rel_err || isnan(from->max_rel_err))
        into->max_rel_err = from->max_rel_err;
}

static double relative(double abs_err, double scale) {
    if (abs_err == 0) return 0;
    return scale > 0 ? abs_err / scale : INFINITY;
}

double gradcheck(GradcheckFn fn, void *context, Tensor *const *inputs, int n_inputs,
                 const GradcheckOptions *options, GradcheckStats *total,
                 GradcheckStats *per_input) {
    if (n_inputs > MAX_CHECK_INPUTS) cpool_fail("gradcheck: at most %d inputs", MAX_CHECK_INPUTS);
    GradcheckOptions opt = options ? *options : (GradcheckOptions){0};
    double h = opt.step > 0 ? opt.step : DEFAULT_STEP;
    Rng rng;
    rng_seed(&rng, opt.seed);

    Tape *scratch = tape_create();
    scratch->no_grad = 1;
    long out_size;
    double *projection = draw_projection(fn, context, inputs, scratch, &rng, &out_size);
    double *grads[MAX_CHECK_INPUTS];
    tape_gradients(fn, context, inputs, n_inputs, projection, grads);

    GradcheckStats call = {.checks = 1};
    for (int i = 0; i < n_inputs; i++) {
        if (!grads[i]) continue;
        Tensor *x = inputs[i];
        GradcheckStats one = {.checks = 1};
        double scale = 0;
        long n_check =
            opt.max_elements > 0 && opt.max_elements < x->size ? opt.max_elements : x->size;
        for (long k = 0; k < n_check; k++) {
            long e = n_check == x->size ? k : (long)(rng_uniform(&rng) * (double)x->size);
            /* Divide by the step actually taken: x + h rounds to a representable number, and
             * for |x| >> h that rounding is a visible fraction of h. */
            real original = x->data[e], x_plus = (real)(original + h),
                 x_minus = (real)(original - h);
            x->data[e] = x_plus;
            double plus = projected_output(fn, context, inputs, scratch, projection);
            x->data[e] = x_minus;
            double minus = projected_output(fn, context, inputs, scratch, projection);
            x->data[e] = original;
            double numeric = (plus - minus) / ((double)x_plus - (double)x_minus);
            double err = fabs(grads[i][e] - numeric);
            if (err > one.max_abs_err || !isfinite(err))
                one.max_abs_err = isfinite(err) ? err : NAN;
            scale = fmax(scale, fmax(fabs(grads[i][e]), fabs(numeric)));
            one.elements++;
        }
        one.max_rel_err = relative(one.max_abs_err, scale);
        if (per_input) gradcheck_stats_merge(&per_input[i], &one);
        one.checks = 0;
        gradcheck_stats_merge(&call, &one);
        free(grads[i]);
    }
    free(projection);
    tape_free(scratch);
    if (total) gradcheck_stats_merge(total, &call);
    return call.max_rel_err;
}

double gradcheck_direction(GradcheckFn fn, void *context, Tensor *const *inputs, int n_inputs,
                           const GradcheckOptions *options, GradcheckStats *total) {
    if (n_inputs > MAX_CHECK_INPUTS) cpool_fail("gradcheck: at most %d inputs", MAX_CHECK_INPUTS);
    GradcheckOptions opt = options ? *options : (GradcheckOptions){0};
    double h = opt.step > 0 ? opt.step : DEFAULT_STEP;
    Rng rng;
    rng_seed(&rng, opt.seed);

    Tape *scratch = tape_create();
    scratch->no_grad = 1;
    long out_size;
    double *projection = draw_projection(fn, context, inputs, scratch, &rng, &out_size);
    double *grads[MAX_CHECK_INPUTS];
    tape_gradients(fn, context, inputs, n_inputs, projection, grads);

    /* v: a random direction; save the inputs, analytic = grad . v. */
    double analytic = 0;
    double *direction[MAX_CHECK_INPUTS] = {0};
    real *saved[MAX_CHECK_INPUTS] = {0};
    for (int i = 0; i < n_inputs; i++) {
        if (!grads[i]) continue;
        long n = inputs[i]->size;
        direction[i] = xmalloc((size_t)n * sizeof(double));
        saved[i] = xmalloc((size_t)n * sizeof(real));
        memcpy(saved[i], inputs[i]->data, (size_t)n * sizeof(real));
        for (long e = 0; e < n; e++) {
            direction[i][e] = rng_normal(&rng);
            analytic += grads[i][e] * direction[i][e];
        }
    }
    double sides[2];
    for (int side = 0; side < 2; side++) {
        double sign = side == 0 ? 1 : -1;
        for (int i = 0; i < n_inputs; i++)
            for (long e = 0; direction[i] && e < inputs[i]->size; e++)
                inputs[i]->data[e] = (real)(saved[i][e] + sign * h * direction[i][e]);
        sides[side] = projected_output(fn, context, inputs, scratch, projection);
    }
    double numeric = (sides[0] - sides[1]) / (2 * h);
    for (int i = 0; i < n_inputs; i++) {
        if (saved[i]) memcpy(inputs[i]->data, saved[i], (size_t)inputs[i]->size * sizeof(real));
        free(saved[i]);
        free(direction[i]);
        free(grads[i]);
    }
    free(projection);
    tape_free(scratch);

    GradcheckStats call = {.checks = 1, .elements = 1};
    call.max_abs_err = fabs(analytic - numeric);
    if (!isfinite(call.max_abs_err)) call.max_abs_err = NAN;
    call.max_rel_err = relative(call.max_abs_err, fmax(fabs(analytic), fabs(numeric)));
    if (total) gradcheck_stats_merge(total, &call);
    return call.max_rel_err;
}

Tensor *gradcheck_input(Rng *rng, int ndim, const int *shape, double lo, double hi) {
    Tensor *t = tensor_create(ndim, shape, 1);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, lo, hi);
    return t;
}

Tensor *gradcheck_input_away(Rng *rng, int ndim, const int *shape, double lo, double hi,
                             const double *kinks, int n_kinks, double margin) {
    Tensor *t = tensor_create(ndim, shape, 1);
    for (long i = 0; i < t->size; i++) {
        for (int tries = 0;; tries++) {
            if (tries == 10000) {
                tensor_free(t); /* the failure may be caught (tests); leave nothing behind */
                cpool_fail("gradcheck_input_away: no value in [%g, %g) is %g away from the kinks",
                           lo, hi, margin);
            }
            double value = rng_range(rng, lo, hi);
            int near = 0;
            for (int k = 0; k < n_kinks; k++) near |= fabs(value - kinks[k]) < margin;
            if (!near) {
                t->data[i] = (real)value;
                break;
            }
        }
    }
    return t;
}

void gradcheck_free(Tensor *const *inputs, int n_inputs) {
    for (int i = 0; i < n_inputs; i++) tensor_free(inputs[i]);
}
