/* conv_batched.h - internal to the convolution: what ops_conv.c and conv_batched.c share.
 *
 * ConvGeometry describes one convolution (conv1d is conv2d with H = KH = 1, see ops_conv.c);
 * conv_takes_batched_path says which of the two paths runs it, and conv_batched_run runs and
 * records it on the batched, channels-last path (conv_batched.c). Not a public API: the ops are
 * op_conv1d and op_conv2d in ops.h. */
#ifndef CPOOL_CONV_BATCHED_H
#define CPOOL_CONV_BATCHED_H

#include "tape.h"

typedef struct ConvGeometry {
    int batch, in_channels, out_channels, groups;
    int in_h, in_w, kernel_h, kernel_w;
    int stride, pad_top, pad_left; /* bottom/right padding only shows in out_h/out_w */
    int out_h, out_w;
} ConvGeometry;

static inline int group_in(const ConvGeometry *g) {
    return g->in_channels / g->groups;
}
static inline int group_out(const ConvGeometry *g) {
    return g->out_channels / g->groups;
}
static inline long column_rows(const ConvGeometry *g) {
    return (long)group_in(g) * g->kernel_h * g->kernel_w;
}
static inline long column_cols(const ConvGeometry *g) {
    return (long)g->out_h * g->out_w;
}

/* dbias[o] += sum over b and positions of dy[b, o, :] (ops_conv.c; both paths use it). */
void conv_bias_backward(const ConvGeometry *g, const real *dy, real *dbias);

/* 1 when the batched path runs g (conv_batched.c says when it pays). */
int conv_takes_batched_path(const ConvGeometry *g);

/* Computes y (B, O, out...) = the convolution g of x with w (+ bias) on the batched path and
 * records it on the tape as `name`. */
void conv_batched_run(Tape *tape, const ConvGeometry *g, Tensor *x, Tensor *w, Tensor *bias,
                      Tensor *y, const char *name);

#endif
