/* ops_unary.c - elementwise functions of one tensor: y_i = f(x_i), so dx_i += dy_i * f'(x_i).
 *
 * Every op here has the same shape (x and y are the same shape) and the same backward loop; what
 * differs is f and f'. Where f' is cheaper from the output (exp: f' = y; tanh: 1 - y^2) the
 * backward reads y instead of recomputing. */
#include <math.h>

#include "ops.h"

/* A new arena tensor of x's shape. */
static Tensor *like(Tape *tape, const Tensor *x) { return tape_tensor(tape, x->ndim, x->shape); }

/* exp: y = e^x, dy/dx = e^x = y, so dx += dy * y. */
static void exp_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    for (long i = 0; i < y->size; i++) dx[i] += y->grad[i] * y->data[i];
}

Tensor *op_exp(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = (real)exp(x->data[i]);
    tape_record(tape, "exp", exp_backward, y, 1, &x);
    return y;
}
