/* block.c - see block.h. */
#include "block.h"

#include "ops.h"
#include "util.h"

/* The variant's checks, and the pool's config completed from the block's. */
static BlockVariant check_variant(const BlockConfig *config, BlockVariant v) {
    if (v.pool != BLOCK_POOL_NONE && v.pool != BLOCK_POOL_CONTEXTPOOL)
        cpool_fail("block: pool=%d is not none (0) or contextpool (1)", (int)v.pool);
    if (v.pool_feeds != BLOCK_POOL_FEEDS_KV && v.pool_feeds != BLOCK_POOL_FEEDS_QKV &&
        v.pool_feeds != BLOCK_POOL_FEEDS_STREAM)
        cpool_fail("block: pool_feeds=%d is not kv (0), qkv (1) or stream (2)", (int)v.pool_feeds);
    if (v.grid_h < 0 || v.grid_w < 0 || (v.grid_h > 0) != (v.grid_w > 0))
        cpool_fail("block: grid_h=%d, grid_w=%d: give both (> 0) for image tokens, or neither",
                   v.grid_h, v.grid_w);
    if (v.grid_h > 0 && config->causal)
        cpool_fail("block: causal=1 with grid_h=%d, grid_w=%d: image tokens have no order, "
                   "expected causal=0",
                   v.grid_h, v.grid_w);
    if (v.cp.stride > 1)
        cpool_fail("block: cp stride=%d, but a block keeps its N tokens (expected 0 or 1)",
                   v.cp.stride);
    v.attn = attention_resolve_reach(v.attn);
    ContextPoolConfig defaults = contextpool_default_config(config->dim, config->causal);
    v.cp.dim = config->dim;
    v.cp.causal = config->causal;
    if (v.cp.s_min == 0) v.cp.s_min = defaults.s_min;
    if (v.cp.s_max == 0) v.cp.s_max = defaults.s_max;
    return v;
}

/* The pool's own checks, before the block creates anything: contextpool_init on a scratch set
 * (freed at once) with a copy of rng. A refused config thus leaves params untouched, as with
 * every other layer. */
static void check_pool_config(const BlockVariant *v, const Rng *rng) {
    if (v->pool != BLOCK_POOL_CONTEXTPOOL) return;
    ParamSet scratch = {0};
    Rng copy = *rng;
    ContextPool pool;
    if (v->grid_h > 0)
        contextpool2d_init(&pool, v->cp, &scratch, "pool", &copy);
    else
        contextpool_init(&pool, v->cp, &scratch, "pool", &copy);
    params_free(&scratch);
}

void block_init(Block *layer, BlockConfig config, ParamSet *params, const char *prefix, Rng *rng) {
    block_init_variant(layer, config, (BlockVariant){0}, params, prefix, rng);
}

void block_init_variant(Block *layer, BlockConfig config, BlockVariant variant, ParamSet *params,
                        const char *prefix, Rng *rng) {
    if (config.dim < 1) cpool_fail("block: dim=%d must be positive", config.dim);
    if (config.heads < 1) cpool_fail("block: heads=%d must be positive", config.heads);
    if (config.dim % config.heads != 0)
        cpool_fail("block: heads=%d does not divide dim=%d", config.heads, config.dim);
    if (config.ffn_hidden < 0)
        cpool_fail("block: ffn_hidden=%d must be positive (0 means 4*dim)", config.ffn_hidden);
    if (config.ffn_hidden == 0) config.ffn_hidden = 4 * config.dim;
    layer->config = config;
    layer->variant = check_variant(&config, variant);
    check_pool_config(&layer->variant, rng);
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "ln1");
    layernorm_init(&layer->ln1, (LayerNormConfig){config.dim, 0}, params, name);
    params_join(name, prefix, "attn");
    attention_init_reach(&layer->attn, (AttentionConfig){config.dim, config.heads, config.causal},
                         layer->variant.attn, params, name, rng);
    params_join(name, prefix, "ln2");
    layernorm_init(&layer->ln2, (LayerNormConfig){config.dim, 0}, params, name);
    params_join(name, prefix, "ffn");
    ffn_init(&layer->ffn, (FfnConfig){config.dim, config.ffn_hidden}, params, name, rng);
    if (layer->variant.pool != BLOCK_POOL_CONTEXTPOOL) return;
    params_join(name, prefix, "pool");
    if (layer->variant.grid_h > 0)
        contextpool2d_init(&layer->pool, layer->variant.cp, params, name, rng);
    else
        contextpool_init(&layer->pool, layer->variant.cp, params, name, rng);
    layer->variant.cp = layer->pool.config; /* with the pool's own defaults filled in */
}

static void check_input(const Block *layer, const Tensor *x) {
    char shape[64];
    if (x->ndim != 3 || x->shape[2] != layer->config.dim)
        cpool_fail("block: x must be (B, N, %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    int grid_h = layer->variant.grid_h, grid_w = layer->variant.grid_w;
    if (grid_h > 0 && x->shape[1] != grid_h * grid_w)
        cpool_fail("block: x of shape %s has N=%d tokens, but grid_h=%d x grid_w=%d is %d",
                   TENSOR_SHAPE_STR(x, shape), x->shape[1], grid_h, grid_w, grid_h * grid_w);
}

/* The pool over the tokens t (B, N, dim) -> (B, N, dim). On a grid the tokens are an image:
 * (B, N, dim) -> (B, H, W, dim) -> (B, dim, H, W), contextpool2d, and the same way back. */
static Tensor *pool_tokens(Tape *tape, const Block *layer, Tensor *t, ContextPoolAux *aux) {
    int grid_h = layer->variant.grid_h, grid_w = layer->variant.grid_w;
    if (grid_h == 0) return contextpool_forward(tape, &layer->pool, t, aux);
    int B = t->shape[0], N = t->shape[1], dim = t->shape[2];
    Tensor *image = op_reshape(tape, t, 4, (int[]){B, grid_h, grid_w, dim}); /* (B, H, W, dim) */
    image = op_permute(tape, image, (int[]){0, 3, 1, 2});                    /* (B, dim, H, W) */
    Tensor *pooled = contextpool2d_forward(tape, &layer->pool, image, aux);  /* (B, dim, H, W) */
    pooled = op_permute(tape, pooled, (int[]){0, 2, 3, 1});                  /* (B, H, W, dim) */
    return op_reshape(tape, pooled, 3, (int[]){B, N, dim});                  /* (B, N, dim) */
}

/* Pre-norm residual block: each sublayer sees a normalised copy and adds to the stream; the pool
 * (if any) replaces the attention's keys and values, all its inputs, or the stream itself. */
Tensor *block_forward_aux(Tape *tape, const Block *layer, Tensor *x, BlockAux *aux) {
    check_input(layer, x);
    BlockAux out = {0};
    int pooled = layer->variant.pool == BLOCK_POOL_CONTEXTPOOL;
    BlockPoolFeeds feeds = layer->variant.pool_feeds;
    Tensor *h = layernorm_forward(tape, &layer->ln1, x); /* (B, N, dim) */
    Tensor *queries = h, *keys_values = h;
    if (pooled && feeds == BLOCK_POOL_FEEDS_KV)
        keys_values = pool_tokens(tape, layer, h, &out.pool);
    if (pooled && feeds == BLOCK_POOL_FEEDS_QKV)
        queries = keys_values = pool_tokens(tape, layer, h, &out.pool);
    /* P is asked for only when the caller takes it: the fused op then skips writing the zeros
     * of the masked blocks that its own backward never reads. */
    Tensor *attended =
        attention_forward(tape, &layer->attn, queries, keys_values, aux ? &out.probs : NULL);
    x = op_add(tape, x, attended);                          /* x + attn */
    h = layernorm_forward(tape, &layer->ln2, x);            /* (B, N, dim) */
    x = op_add(tape, x, ffn_forward(tape, &layer->ffn, h)); /* x + ffn */
    if (pooled && feeds == BLOCK_POOL_FEEDS_STREAM) x = pool_tokens(tape, layer, x, &out.pool);
    if (aux) *aux = out;
    return x;
}

Tensor *block_forward(Tape *tape, const Block *layer, Tensor *x, Tensor **probs) {
    if (!probs) return block_forward_aux(tape, layer, x, NULL);
    BlockAux aux;
    Tensor *y = block_forward_aux(tape, layer, x, &aux);
    if (probs) *probs = aux.probs;
    return y;
}
