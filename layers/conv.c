/* conv.c - see conv.h. */
#include "conv.h"

#include <math.h>

#include "ops.h"
#include "util.h"

/* Checks the config and fills in the defaults (stride 0 -> 1, groups 0 -> 1). */
static ConvConfig resolve_config(ConvConfig config, const char *name) {
    if (config.in < 1) cpool_fail("%s: in=%d must be positive", name, config.in);
    if (config.out < 1) cpool_fail("%s: out=%d must be positive", name, config.out);
    if (config.kernel < 1) cpool_fail("%s: kernel=%d must be positive", name, config.kernel);
    if (config.stride < 0) cpool_fail("%s: stride=%d must be positive", name, config.stride);
    if (config.padding < 0) cpool_fail("%s: padding=%d must be >= 0", name, config.padding);
    if (config.groups < 0) cpool_fail("%s: groups=%d must be positive", name, config.groups);
    if (config.stride == 0) config.stride = 1;
    if (config.groups == 0) config.groups = 1;
    if (config.in % config.groups != 0)
        cpool_fail("%s: in=%d is not divisible by groups=%d", name, config.in, config.groups);
    if (config.out % config.groups != 0)
        cpool_fail("%s: out=%d is not divisible by groups=%d", name, config.out, config.groups);
    return config;
}

/* weight (out, in/groups, k[, k]) and bias (out), both ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
 * fan_in = in/groups * k^kernel_dims, drawn weight first, row-major. */
static void create_parameters(Conv *layer, ParamSet *params, const char *prefix, Rng *rng,
                              int kernel_dims) {
    ConvConfig c = layer->config;
    int shape[4] = {c.out, c.in / c.groups, c.kernel, c.kernel};
    layer->weight = params_new(params, prefix, "weight", 2 + kernel_dims, shape);
    double bound = 1 / sqrt((double)(layer->weight->size / c.out)); /* fan_in */
    for (long i = 0; i < layer->weight->size; i++)
        layer->weight->data[i] = (real)rng_range(rng, -bound, bound);
    layer->bias = NULL;
    if (!c.bias) return;
    layer->bias = params_new(params, prefix, "bias", 1, (int[]){c.out});
    for (long i = 0; i < c.out; i++) layer->bias->data[i] = (real)rng_range(rng, -bound, bound);
}

void conv1d_init(Conv *layer, ConvConfig config, ParamSet *params, const char *prefix, Rng *rng) {
    config = resolve_config(config, "conv1d");
    if (config.causal && config.padding != 0)
        cpool_fail("conv1d: causal=1 pads kernel-1 on the left itself; padding=%d must be 0",
                   config.padding);
    layer->config = config;
    create_parameters(layer, params, prefix, rng, 1);
}

void conv2d_init(Conv *layer, ConvConfig config, ParamSet *params, const char *prefix, Rng *rng) {
    config = resolve_config(config, "conv2d");
    if (config.causal) cpool_fail("conv2d: causal=1 is for conv1d only, expected causal=0");
    layer->config = config;
    create_parameters(layer, params, prefix, rng, 2);
}

/* x (B, in, L) -> (B, out, L_out), L_out = (L + pad_left + pad_right - k) / stride + 1. */
Tensor *conv1d_forward(Tape *tape, const Conv *layer, Tensor *x) {
    ConvConfig c = layer->config;
    char shape[64];
    if (x->ndim != 3 || x->shape[1] != c.in)
        cpool_fail("conv1d: x must be (B, %d, L), got shape %s", c.in, TENSOR_SHAPE_STR(x, shape));
    int pad_left = c.causal ? c.kernel - 1 : c.padding, pad_right = c.causal ? 0 : c.padding;
    if (x->shape[2] + pad_left + pad_right < c.kernel)
        cpool_fail("conv1d: x of shape %s padded by %d+%d is shorter than kernel=%d",
                   TENSOR_SHAPE_STR(x, shape), pad_left, pad_right, c.kernel);
    return op_conv1d(tape, x, layer->weight, layer->bias, c.stride, pad_left, pad_right, c.groups);
}

/* x (B, in, H, W) -> (B, out, H_out, W_out), H_out = (H + 2 padding - k) / stride + 1. */
Tensor *conv2d_forward(Tape *tape, const Conv *layer, Tensor *x) {
    ConvConfig c = layer->config;
    char shape[64];
    if (x->ndim != 4 || x->shape[1] != c.in)
        cpool_fail("conv2d: x must be (B, %d, H, W), got shape %s", c.in,
                   TENSOR_SHAPE_STR(x, shape));
    if (x->shape[2] + 2 * c.padding < c.kernel || x->shape[3] + 2 * c.padding < c.kernel)
        cpool_fail("conv2d: x of shape %s padded by %d is smaller than kernel=%d",
                   TENSOR_SHAPE_STR(x, shape), c.padding, c.kernel);
    return op_conv2d(tape, x, layer->weight, layer->bias, c.stride, c.padding, c.groups);
}
