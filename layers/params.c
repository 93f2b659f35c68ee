/* params.c - see params.h. */
#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void params_join(char *out, const char *prefix, const char *name) {
    int has_prefix = prefix && prefix[0];
    int n = snprintf(out, PARAM_NAME_MAX, "%s%s%s", has_prefix ? prefix : "", has_prefix ? "." : "",
                     name);
    if (n < 0 || n >= PARAM_NAME_MAX)
        cpool_fail("params: name '%s.%s' longer than %d characters", prefix, name,
                   PARAM_NAME_MAX - 1);
}

Tensor *params_new(ParamSet *params, const char *prefix, const char *name, int ndim,
                   const int *shape) {
    char full[PARAM_NAME_MAX];
    params_join(full, prefix, name);
    if (params_find(params, full)) cpool_fail("params: duplicate parameter name '%s'", full);
    long size = shape_size(ndim, shape);

    Tensor *t = arena_calloc(&params->arena, sizeof *t);
    t->ndim = ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    t->size = size;
    t->data = arena_calloc(&params->arena, (size_t)size * sizeof(real));
    t->grad = arena_calloc(&params->arena, (size_t)size * sizeof(real));
    t->requires_grad = 1;

    if (params->count == params->capacity) {
        params->capacity = params->capacity ? 2 * params->capacity : 32;
        params->items = xrealloc(params->items, (size_t)params->capacity * sizeof(Param));
    }
    Param *p = &params->items[params->count++];
    strcpy(p->name, full);
    p->tensor = t;
    return t;
}

Tensor *params_find(const ParamSet *params, const char *name) {
    for (int i = 0; i < params->count; i++)
        if (strcmp(params->items[i].name, name) == 0) return params->items[i].tensor;
    return NULL;
}

long params_count_elements(const ParamSet *params) {
    long total = 0;
    for (int i = 0; i < params->count; i++) total += params->items[i].tensor->size;
    return total;
}

void params_zero_grad(ParamSet *params) {
    for (int i = 0; i < params->count; i++) tensor_zero_grad(params->items[i].tensor);
}

void params_free(ParamSet *params) {
    arena_free(&params->arena);
    free(params->items);
    *params = (ParamSet){0};
}
