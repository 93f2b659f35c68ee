/* optim.c - see optim.h. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* --- AdamW ----------------------------------------------------------------------------------- */

static void check_config(AdamWConfig c) {
    if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1))
        cpool_fail("adamw: betas must lie in [0, 1), got beta1 %g and beta2 %g", c.beta1, c.beta2);
    if (!(c.eps >= 0)) cpool_fail("adamw: eps must be >= 0, got %g", c.eps);
    if (!(c.weight_decay >= 0))
        cpool_fail("adamw: weight_decay must be >= 0, got %g", c.weight_decay);
}

int adamw_default_decay(const Tensor *t) {
    return t->ndim >= 2;
}

/* A zeroed tensor of t's shape, in the optimizer's arena. */
static Tensor *state_like(Arena *arena, const Tensor *t) {
    Tensor *s = arena_calloc(arena, sizeof *s);
    s->ndim = t->ndim;
    memcpy(s->shape, t->shape, sizeof s->shape);
    s->size = t->size;
    s->data = arena_calloc(arena, (size_t)t->size * sizeof(real));
    return s;
}

void adamw_init(AdamW *opt, ParamSet *params, AdamWConfig config) {
    check_config(config);
    *opt = (AdamW){.config = config, .params = params, .count = params->count};
    size_t n = (size_t)params->count;
    opt->m = arena_calloc(&opt->arena, n * sizeof(Tensor *) + 1);
    opt->v = arena_calloc(&opt->arena, n * sizeof(Tensor *) + 1);
    opt->decay = arena_calloc(&opt->arena, n + 1);
    for (int i = 0; i < params->count; i++) {
        const Tensor *p = params->items[i].tensor;
        opt->m[i] = state_like(&opt->arena, p);
        opt->v[i] = state_like(&opt->arena, p);
        opt->decay[i] = (unsigned char)adamw_default_decay(p);
    }
}

void adamw_free(AdamW *opt) {
    arena_free(&opt->arena);
    *opt = (AdamW){0};
}

/* The per-step constants, in `real` as PyTorch uses them on a tensor of that type. */
typedef struct AdamWScalars {
    real decay_factor; /* 1 - lr * wd */
    real beta1, one_minus_beta1;
    real beta2, one_minus_beta2;
    real bias_correction2_sqrt; /* sqrt(1 - beta2^t) */
    real eps;
    real neg_step_size; /* -lr / (1 - beta1^t) */
} AdamWScalars;

/* sqrt in `real`: sqrtf in the float32 build (one correctly rounded instruction, vectorised:
 * the Makefile's -fno-math-errno lets the compiler drop the branch to libm that would set errno
 * for a negative argument; without it, GCC 12 and Clang 14 left this loop scalar, 3.7 ns a
 * parameter, a quarter of it the scalar sqrt and divisions). */
#ifdef CPOOL_DOUBLE
#define real_sqrt sqrt
#else
#define real_sqrt sqrtf
#endif

/* One parameter, n elements: the formulas of optim.h in PyTorch's operation order (mul_ for the
 * decay, mul_ then add_ for m, addcmul_ for v, addcdiv_ for p). Elementwise, so any split among
 * threads gives the same bits. The constants are copied into locals and the arrays marked
 * restrict so the loop can vectorise. */
static void adamw_update(real *restrict p, const real *restrict g, real *restrict m,
                         real *restrict v, long n, int decay, const AdamWScalars *s) {
    const real decay_factor = decay ? s->decay_factor : 1;
    const real beta1 = s->beta1, one_minus_beta1 = s->one_minus_beta1;
    const real beta2 = s->beta2, one_minus_beta2 = s->one_minus_beta2;
    const real bias_correction2_sqrt = s->bias_correction2_sqrt, eps = s->eps;
    const real neg_step_size = s->neg_step_size;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) {
        real decayed = p[i] * decay_factor;
        m[i] = m[i] * beta1 + one_minus_beta1 * g[i];
        v[i] = v[i] * beta2 + one_minus_beta2 * g[i] * g[i];
        real denom = real_sqrt(v[i]) / bias_correction2_sqrt + eps;
        p[i] = decayed + neg_step_size * m[i] / denom;
    }
}

void adamw_step(AdamW *opt, double lr) {
    if (opt->params->count != opt->count)
        cpool_fail("adamw_step: the parameter set has %d parameters but had %d at adamw_init",
                   opt->params->count, opt->count);
    if (!(lr >= 0)) cpool_fail("adamw_step: lr must be >= 0, got %g", lr);
    check_config(opt->config);
    opt->step++;
    const AdamWConfig *c = &opt->config;
    double t = (double)opt->step;
    AdamWScalars s = {
        .decay_factor = (real)(1 - lr * c->weight_decay),
        .beta1 = (real)c->beta1,
        .one_minus_beta1 = (real)(1 - c->beta1),
        .beta2 = (real)c->beta2,
        .one_minus_beta2 = (real)(1 - c->beta2),
        .bias_correction2_sqrt = (real)sqrt(1 - pow(c->beta2, t)),
        .eps = (real)c->eps,
        .neg_step_size = (real)(-(lr / (1 - pow(c->beta1, t)))),
    };
    for (int i = 0; i < opt->count; i++) {
        Tensor *p = opt->params->items[i].tensor;
        if (!p->grad)
            cpool_fail("adamw_step: parameter '%s' has no gradient buffer",
                       opt->params->items[i].name);
        adamw_update(p->data, p->grad, opt->m[i]->data, opt->v[i]->data, p->size, opt->decay[i],
                     &s);
    }
}

/* --- Learning-rate schedule ------------------------------------------------------------------ */

double lr_schedule_at(const LrSchedule *schedule, long step) {
    double peak = schedule->peak_lr, low = schedule->min_lr;
    long warmup = schedule->warmup_steps, total = schedule->total_steps;
    if (!(low >= 0 && low <= peak))
        cpool_fail("lr_schedule_at: need 0 <= min_lr <= peak_lr, got min_lr %g and peak_lr %g", low,
                   peak);
    if (warmup < 0 || total < warmup)
        cpool_fail("lr_schedule_at: need 0 <= warmup_steps <= total_steps, got %ld and %ld", warmup,
                   total);
    if (step < 0) cpool_fail("lr_schedule_at: step %ld is negative", step);
    if (step < warmup) return peak * (double)(step + 1) / (double)warmup;
    if (step >= total) return low;
    double progress = (double)(step - warmup) / (double)(total - warmup); /* [0, 1) */
    return low + (peak - low) * 0.5 * (1 + cos(M_PI * progress));
}

int lr_schedule_check(const LrSchedule *schedule, char *err, size_t err_len) {
    double peak = schedule->peak_lr, low = schedule->min_lr;
    if (!(peak > 0 && isfinite(peak)))
        return snprintf(err, err_len, "lr=%g must be a positive finite number", peak), -1;
    if (!(low >= 0 && low <= peak))
        return snprintf(err, err_len, "min_lr=%g must be in [0, lr=%g]", low, peak), -1;
    if (schedule->warmup_steps < 0 || schedule->total_steps < schedule->warmup_steps)
        return snprintf(err, err_len, "warmup=%ld must be in [0, steps=%ld]",
                        schedule->warmup_steps, schedule->total_steps),
               -1;
    return 0;
}

/* --- Gradient clipping ----------------------------------------------------------------------- */

double clip_grad_norm(ParamSet *params, double max_norm) {
    double sum_squares = 0;
    for (int i = 0; i < params->count; i++) {
        const Tensor *p = params->items[i].tensor;
        if (!p->grad) continue;
        double tensor_sum = 0; /* vectorised: a fixed order for a given build, run after run */
#pragma omp simd reduction(+ : tensor_sum)
        for (long k = 0; k < p->size; k++) tensor_sum += (double)p->grad[k] * p->grad[k];
        sum_squares += tensor_sum;
    }
    double norm = sqrt(sum_squares);
    double coefficient = max_norm / (norm + 1e-6); /* PyTorch's clip_coef; scale only if < 1 */
    if (max_norm <= 0 || !isfinite(norm) || !(coefficient < 1)) return norm;
    real scale = (real)coefficient;
    for (int i = 0; i < params->count; i++) {
        Tensor *p = params->items[i].tensor;
        if (!p->grad) continue;
        for (long k = 0; k < p->size; k++) p->grad[k] *= scale;
    }
    return norm;
}
