/* optim.h - AdamW, the learning-rate schedule and gradient-norm clipping.
 *
 * One training step, after tape_backward has filled every parameter's grad:
 *
 *     AdamW opt;
 *     adamw_init(&opt, &params, ADAMW_DEFAULTS);      // m and v allocated once, zeroed
 *     LrSchedule schedule = {.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 200,
 *                            .total_steps = 10000};
 *     for (long step = 0; step < schedule.total_steps; step++) {
 *         ... forward, tape_backward(tape, loss) ...
 *         double norm = clip_grad_norm(&params, 1.0);  // pre-clip norm, for the log
 *         adamw_step(&opt, lr_schedule_at(&schedule, step));
 *         params_zero_grad(&params);
 *         tape_reset(tape);
 *     }
 *     adamw_free(&opt);
 *
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), exactly as PyTorch's
 * torch.optim.AdamW (1.13, amsgrad=False, maximize=False) computes it. For each parameter p with
 * gradient g, at update t = 1, 2, ... (opt.step after the increment), with learning rate lr:
 *
 *     p   = p * (1 - lr * wd)                     decoupled weight decay (only if decay[i])
 *     m   = beta1 * m + (1 - beta1) * g           first moment
 *     v   = beta2 * v + (1 - beta2) * g * g       second moment
 *     m^  = m / (1 - beta1^t)                     bias corrections
 *     v^  = v / (1 - beta2^t)
 *     p   = p - lr * m^ / (sqrt(v^) + eps)        eps added after the square root
 *
 * computed in PyTorch's order: step_size = lr / (1 - beta1^t) and
 * denom = sqrt(v) / sqrt(1 - beta2^t) + eps, then p -= step_size * m / denom; the scalars in
 * double, the element arithmetic in `real`. Every parameter of the set is updated at every step
 * (a parameter that got no gradient has a zero one: its moments decay and it is still decayed,
 * as PyTorch does for a parameter whose grad is zeros).
 *
 * Which parameters are decayed: the rule is by shape. A parameter with 2 or more dimensions
 * (linear weights, convolution kernels, token and position embedding tables) is decayed; one
 * with 0 or 1 (biases, layernorm gains and offsets) is not. This is the rule of nanoGPT's
 * configure_optimizers. adamw_init sets opt.decay[i] by it; change opt.decay[i] afterwards to
 * override it for parameter i (params->items[i]).
 *
 * The schedule (lr_schedule_at): linear warm-up to peak_lr over warmup_steps, then a half cosine
 * from peak_lr down to min_lr at total_steps, and min_lr after. Step s is the update about to be
 * taken, counted from 0:
 *
 *     s < W:        lr = peak * (s + 1) / W                    (the first update is not wasted)
 *     W <= s < T:   lr = min + (peak - min) * (1 + cos(pi * (s - W) / (T - W))) / 2
 *     s >= T:       lr = min
 *
 * Clipping (clip_grad_norm) is torch.nn.utils.clip_grad_norm_ with the 2-norm over all the
 * gradients together: norm = sqrt(sum of g^2 over every element of every parameter), summed in
 * double; every gradient is then scaled by c = max_norm / (norm + 1e-6) when c < 1 (PyTorch
 * clamps c at 1, so this also scales, by a hair, when norm is within 1e-6 below max_norm). It
 * returns the norm before clipping. max_norm <= 0 measures without clipping. A NaN or infinite
 * norm leaves the gradients untouched (PyTorch would multiply them by NaN): the caller sees the
 * norm and decides (skip the step, stop).
 *
 * Bad arguments (betas outside [0, 1), a negative eps, weight decay or lr, a schedule with
 * min_lr > peak_lr, a set that grew after adamw_init) are programming errors: cpool_fail() with
 * one line naming the function ("adamw_step: lr must be >= 0, got -0.001").
 */
#ifndef CPOOL_OPTIM_H
#define CPOOL_OPTIM_H

#include "params.h"

typedef struct AdamWConfig {
    double beta1, beta2; /* decay rates of the moment estimates */
    double eps;          /* added to sqrt(v^) */
    double weight_decay; /* wd, for the parameters with decay[i] = 1 */
} AdamWConfig;

/* PyTorch's AdamW defaults. */
#define ADAMW_DEFAULTS                                                                             \
    ((AdamWConfig){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01})

typedef struct AdamW {
    AdamWConfig config;
    ParamSet *params;     /* the parameters it updates (not owned) */
    int count;            /* params->count at adamw_init; the set must not change after */
    long step;            /* updates taken so far (PyTorch's state['step']) */
    Tensor **m;           /* m[i]: first moment of params->items[i], same shape, no grad */
    Tensor **v;           /* v[i]: second moment */
    unsigned char *decay; /* decay[i]: 1 if weight decay applies to parameter i */
    Arena arena;          /* m, v, decay and their tensors: one lifetime, one free */
} AdamW;

void adamw_init(AdamW *opt, ParamSet *params, AdamWConfig config);
void adamw_free(AdamW *opt);
/* The default decay rule: 1 for a tensor with 2 or more dimensions, else 0. */
int adamw_default_decay(const Tensor *t);
/* One update of every parameter from its grad, with learning rate lr (>= 0). */
void adamw_step(AdamW *opt, double lr);

typedef struct LrSchedule {
    double peak_lr;    /* reached at the end of warm-up */
    double min_lr;     /* the cosine's floor (0 <= min_lr <= peak_lr) */
    long warmup_steps; /* W >= 0 */
    long total_steps;  /* T >= W */
} LrSchedule;

double lr_schedule_at(const LrSchedule *schedule, long step);
/* Check a schedule built from user keys before training with it: 0, or -1 with one line in err
 * naming the run keys (lr, min_lr, warmup, steps), e.g. "min_lr=1 must be <= lr=0.001". The
 * checks are lr_schedule_at's, which treats a bad schedule as a programming error. */
int lr_schedule_check(const LrSchedule *schedule, char *err, size_t err_len);

/* Scale all gradients so their global 2-norm is at most max_norm; returns the norm before. */
double clip_grad_norm(ParamSet *params, double max_norm);

#endif
