/* ffn.c - see ffn.h. */
#include "ffn.h"

#include "ops.h"
#include "util.h"

void ffn_init(Ffn *layer, FfnConfig config, ParamSet *params, const char *prefix, Rng *rng) {
    if (config.dim < 1) cpool_fail("ffn: dim=%d must be positive", config.dim);
    if (config.hidden < 1) cpool_fail("ffn: hidden=%d must be positive", config.hidden);
    layer->config = config;
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "fc1");
    linear_init(&layer->fc1, (LinearConfig){config.dim, config.hidden, 1}, params, name, rng);
    params_join(name, prefix, "fc2");
    linear_init(&layer->fc2, (LinearConfig){config.hidden, config.dim, 1}, params, name, rng);
}

/* y = fc2(GELU(fc1(x))). */
Tensor *ffn_forward(Tape *tape, const Ffn *layer, Tensor *x) {
    if (x->ndim < 1 || x->shape[x->ndim - 1] != layer->config.dim) {
        char shape[64];
        cpool_fail("ffn: x must be (..., %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    }
    Tensor *hidden = op_gelu(tape, linear_forward(tape, &layer->fc1, x)); /* (..., hidden) */
    return linear_forward(tape, &layer->fc2, hidden);                     /* (..., dim) */
}
