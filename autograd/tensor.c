/* tensor.c - see tensor.h. */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

long shape_size(int ndim, const int *shape) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        cpool_fail("tensor: %d dimensions requested, between 0 and %d supported", ndim,
                   TENSOR_MAX_DIMS);
    long size = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) cpool_fail("tensor: dimension %d is negative (%d)", d, shape[d]);
        size *= shape[d];
    }
    return size;
}

Tensor *tensor_create(int ndim, const int *shape, int requires_grad) {
    long size = shape_size(ndim, shape);
    Tensor *t = xcalloc(1, sizeof *t);
    t->ndim = ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    t->size = size;
    t->data = xcalloc((size_t)size, sizeof(real));
    t->requires_grad = requires_grad;
    if (requires_grad) t->grad = xcalloc((size_t)size, sizeof(real));
    return t;
}

void tensor_free(Tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

void tensor_zero_grad(Tensor *t) {
    if (t->grad) memset(t->grad, 0, (size_t)t->size * sizeof(real));
}

int tensor_axis(const Tensor *t, int axis, const char *who) {
    int normalised = axis < 0 ? axis + t->ndim : axis;
    if (normalised < 0 || normalised >= t->ndim) {
        char shape[64];
        cpool_fail("%s: axis %d out of range for a tensor of shape %s", who, axis,
                   TENSOR_SHAPE_STR(t, shape));
    }
    return normalised;
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

char *shape_string(int ndim, const int *shape, char *buffer, size_t buffer_len) {
    size_t used = (size_t)snprintf(buffer, buffer_len, "(");
    for (int d = 0; d < ndim && used < buffer_len; d++)
        used += (size_t)snprintf(buffer + used, buffer_len - used, d ? ", %d" : "%d", shape[d]);
    if (used < buffer_len) snprintf(buffer + used, buffer_len - used, ")");
    return buffer;
}

void tensor_fill(Tensor *t, real value) {
    for (long i = 0; i < t->size; i++) t->data[i] = value;
}

void tensor_print(FILE *out, const char *name, const Tensor *t) {
    char shape[64];
    fprintf(out, "%s %s = [", name, TENSOR_SHAPE_STR(t, shape));
    long shown = t->size < 8 ? t->size : 8;
    for (long i = 0; i < shown; i++) fprintf(out, i ? ", %.6g" : "%.6g", (double)t->data[i]);
    fprintf(out, "%s]\n", t->size > shown ? ", ..." : "");
}
