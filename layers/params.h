/* params.h - a model's named parameters, allocated for the model's lifetime.
 *
 * Layers create their parameters through a ParamSet under a dotted name ("blocks.0.attn.qkv" +
 * "weight" -> "blocks.0.attn.qkv.weight"), exactly the names a PyTorch module with the same
 * structure uses in its state_dict, so parameter files move between the two. Every tensor, its
 * data and its gradient come from the set's own arena (never reset): the whole model is freed by
 * one params_free(), and zeroing gradients is a loop of memsets.
 *
 *     ParamSet params = {0};
 *     Linear fc;
 *     linear_init(&fc, (LinearConfig){.in = 4, .out = 2, .bias = 1}, &params, "fc", &rng);
 *     Tensor *w = params_find(&params, "fc.weight");      // (2, 4)
 *     ... forward, tape_backward ...
 *     params_zero_grad(&params);
 *     params_free(&params);
 */
#ifndef CPOOL_PARAMS_H
#define CPOOL_PARAMS_H

#include "arena.h"
#include "tensor.h"

#define PARAM_NAME_MAX 128

typedef struct Param {
    char name[PARAM_NAME_MAX];
    Tensor *tensor; /* requires_grad = 1, data and grad zeroed at creation */
} Param;

typedef struct ParamSet {
    Arena arena;  /* tensors, data and gradients */
    Param *items; /* items[0..count-1] in creation order (malloc'd, grows) */
    int count;
    int capacity;
} ParamSet;

/* A new zeroed parameter named "prefix.name" (or "name" when prefix is empty or NULL). Fails on
 * a duplicate name or a name longer than PARAM_NAME_MAX - 1. */
Tensor *params_new(ParamSet *params, const char *prefix, const char *name, int ndim,
                   const int *shape);
Tensor *params_find(const ParamSet *params, const char *name); /* NULL if absent */
long params_count_elements(const ParamSet *params);
void params_zero_grad(ParamSet *params);
void params_free(ParamSet *params);

/* Join "prefix" and "name" with a dot into out (PARAM_NAME_MAX bytes); fails if too long. */
void params_join(char *out, const char *prefix, const char *name);

#endif
