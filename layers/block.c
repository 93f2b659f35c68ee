/* block.c - see block.h. */
#include "block.h"

#include "ops.h"
#include "util.h"

void block_init(Block *layer, BlockConfig config, ParamSet *params, const char *prefix, Rng *rng) {
    if (config.dim < 1) cpool_fail("block: dim=%d must be positive", config.dim);
    if (config.heads < 1) cpool_fail("block: heads=%d must be positive", config.heads);
    if (config.dim % config.heads != 0)
        cpool_fail("block: heads=%d does not divide dim=%d", config.heads, config.dim);
    if (config.ffn_hidden < 0)
        cpool_fail("block: ffn_hidden=%d must be positive (0 means 4*dim)", config.ffn_hidden);
    if (config.ffn_hidden == 0) config.ffn_hidden = 4 * config.dim;
    layer->config = config;
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "ln1");
    layernorm_init(&layer->ln1, (LayerNormConfig){config.dim, 0}, params, name);
    params_join(name, prefix, "attn");
    attention_init(&layer->attn, (AttentionConfig){config.dim, config.heads, config.causal}, params,
                   name, rng);
    params_join(name, prefix, "ln2");
    layernorm_init(&layer->ln2, (LayerNormConfig){config.dim, 0}, params, name);
    params_join(name, prefix, "ffn");
    ffn_init(&layer->ffn, (FfnConfig){config.dim, config.ffn_hidden}, params, name, rng);
}

/* Pre-norm residual block: each sublayer sees a normalised copy and adds to the stream. */
Tensor *block_forward(Tape *tape, const Block *layer, Tensor *x, Tensor **probs) {
    if (x->ndim != 3 || x->shape[2] != layer->config.dim) {
        char shape[64];
        cpool_fail("block: x must be (B, N, %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    }
    Tensor *h = layernorm_forward(tape, &layer->ln1, x);                     /* (B, N, dim) */
    x = op_add(tape, x, attention_forward(tape, &layer->attn, h, h, probs)); /* x + attn */
    h = layernorm_forward(tape, &layer->ln2, x);                             /* (B, N, dim) */
    return op_add(tape, x, ffn_forward(tape, &layer->ffn, h));               /* x + ffn */
}
