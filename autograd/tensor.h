/* tensor.h - N-d contiguous row-major tensors of real numbers.
 *
 * A Tensor is a shape, a data buffer and (when it needs a gradient) a grad buffer of the same
 * size. There are no strides: every tensor is contiguous in row-major (C) order, so element
 * (i0, i1, ..., ik) lives at data[((i0 * shape[1] + i1) * shape[2] + ...) + ik]. Ops that change
 * the layout (transpose, permute, slice) copy.
 *
 * Tensors come from two places with two lifetimes:
 *   - tensor_create(): the caller owns it (parameters, inputs, data); free with tensor_free().
 *     If requires_grad is set its grad buffer is allocated and zeroed right away.
 *   - tape_tensor() (tape.h): an intermediate result living in the tape's arena until the next
 *     tape_reset(). Its grad buffer is allocated during backward, only if a gradient reaches it.
 *
 * The scalar type is `real`: float by default, double when compiled with -DCPOOL_DOUBLE. The
 * gradient checker and its tests are the same source built in double.
 *
 *     Tensor *x = tensor_create(2, (int[]){3, 4}, 1);   // 3x4, zeros, with a gradient
 *     x->data[1 * 4 + 2] = 5;                            // element (1, 2)
 *     tensor_free(x);
 */
#ifndef CPOOL_TENSOR_H
#define CPOOL_TENSOR_H

#include <stdio.h>

#ifdef CPOOL_DOUBLE
typedef double real;
#define REAL_NAME "float64"
#else
typedef float real;
#define REAL_NAME "float32"
#endif

#define TENSOR_MAX_DIMS 6

typedef struct Tensor {
    int ndim;                   /* 0 (a scalar) .. TENSOR_MAX_DIMS */
    int shape[TENSOR_MAX_DIMS]; /* shape[0..ndim-1]; the rest are 1 */
    long size;                  /* number of elements, the product of the shape */
    real *data;                 /* size elements, row-major */
    real *grad;                 /* size elements of d(loss)/d(data), or NULL */
    int requires_grad;          /* ops record themselves on the tape when an input has this */
} Tensor;

/* Owned tensors (see above). tensor_create zeroes data; shape may be NULL when ndim is 0. */
Tensor *tensor_create(int ndim, const int *shape, int requires_grad);
void tensor_free(Tensor *t);
void tensor_zero_grad(Tensor *t);

/* Shape helpers. A negative axis counts from the end (-1 is the last axis), as in NumPy. */
long shape_size(int ndim, const int *shape);                 /* fails on a negative dimension */
int tensor_axis(const Tensor *t, int axis, const char *who); /* normalised axis, or cpool_fail */
int tensor_same_shape(const Tensor *a, const Tensor *b);
/* "(2, 3, 4)" into buffer (returns buffer) for error messages. */
char *shape_string(int ndim, const int *shape, char *buffer, size_t buffer_len);
#define TENSOR_SHAPE_STR(t, buf) shape_string((t)->ndim, (t)->shape, (buf), sizeof(buf))

/* Fill helpers for tests, lessons and initialisation. */
void tensor_fill(Tensor *t, real value);
void tensor_print(FILE *out, const char *name, const Tensor *t); /* shape and up to 8 values */

#endif
