/* block.h - the pre-norm transformer block, and the variants the ContextPool experiments compare.
 *
 *   x = x + attn(ln1(x))
 *   x = x + ffn(ln2(x))
 * Parameters, in creation order (the order of PyTorch's state_dict for the same module tree):
 * "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
 * "attn.proj.bias", "ln2.weight", "ln2.bias", "ffn.fc1.weight", "ffn.fc1.bias",
 * "ffn.fc2.weight", "ffn.fc2.bias"; each initialised as its layer (LayerNorm ones/zeros, Linear
 * uniform), the random ones drawn from rng in that order.
 *
 *     Block block;
 *     block_init(&block, (BlockConfig){.dim = 64, .heads = 4, .causal = 1}, &params, "blocks.0",
 *                &rng);
 *     Tensor *y = block_forward(tape, &block, x, NULL);   // x, y (B, N, 64)
 *
 * Variants (BlockVariant, given to block_init_variant; zeroed, the plain block above):
 *
 * pool = BLOCK_POOL_CONTEXTPOOL adds a ContextPool layer (contextpool.h) "pool", parameters
 * "pool.pred.0.weight", "pool.pred.0.bias", "pool.pred.2.weight", "pool.pred.2.bias", created
 * LAST, so the other parameters draw the same numbers as in the plain block from the same seed.
 * It inherits the block's dim and causal (a causal block never pools from the future). With
 * h = ln1(x), pool_feeds says where it sits:
 *   kv      x = x + attn(q = h, k = v = pool(h));  x = x + ffn(ln2(x))   (the default)
 *   qkv     x = x + attn(pool(h));                 x = x + ffn(ln2(x))
 *   stream  x = x + attn(h);  x = x + ffn(ln2(x));  x = pool(x)          (feeds the next block)
 * In kv the same attn.qkv parameters project queries from h and keys and values from pool(h).
 *
 * Tokens on an image grid: grid_h, grid_w > 0 say that the N = grid_h grid_w tokens are the
 * pixels of a (grid_h, grid_w) image in row-major order (non-causal blocks only). The pool is then
 * contextpool2d with stride 1: (B, N, dim) -> (B, dim, grid_h, grid_w) -> pool -> back.
 *
 * attn (AttentionReach) restricts the block's attention: a local window or the adaptive span
 * (attention.h); with a span the block has "attn.span.z" after "attn.proj.bias".
 *
 * block_forward_aux() also hands back what the block computed on the side: the attention
 * probabilities and the pool's weights and support sizes, for plots per layer:
 *
 *     BlockVariant variant = {.pool = BLOCK_POOL_CONTEXTPOOL, .pool_feeds = BLOCK_POOL_FEEDS_KV};
 *     block_init_variant(&block, config, variant, &params, "blocks.0", &rng);
 *     BlockAux aux;
 *     Tensor *y = block_forward_aux(tape, &block, x, &aux);  // aux.pool.support (B, N)
 */
#ifndef CPOOL_BLOCK_H
#define CPOOL_BLOCK_H

#include "attention.h"
#include "contextpool.h"
#include "ffn.h"
#include "layernorm.h"

typedef struct BlockConfig {
    int dim, heads;
    int ffn_hidden; /* 0 means 4 * dim */
    int causal;
} BlockConfig;

typedef enum BlockPool { BLOCK_POOL_NONE, BLOCK_POOL_CONTEXTPOOL } BlockPool;
typedef enum BlockPoolFeeds {
    BLOCK_POOL_FEEDS_KV,    /* keys and values from pool(ln1(x)) */
    BLOCK_POOL_FEEDS_QKV,   /* queries, keys and values from pool(ln1(x)) */
    BLOCK_POOL_FEEDS_STREAM /* the residual stream, after the block */
} BlockPoolFeeds;

/* What the ContextPool issue adds to a block; zeroed, the plain block. */
typedef struct BlockVariant {
    BlockPool pool;
    BlockPoolFeeds pool_feeds;
    ContextPoolConfig cp; /* the pool's keys: dim and causal are the block's; a 0 in any other
                             field (s_min and s_max too) means contextpool_default_config's */
    int grid_h, grid_w;   /* tokens on a (grid_h, grid_w) image; both 0: a sequence */
    AttentionReach attn;  /* window or adaptive span of the attention */
} BlockVariant;

typedef struct Block {
    BlockConfig config;
    BlockVariant variant; /* cp resolved as the pool holds it */
    LayerNorm ln1, ln2;
    Attention attn;
    Ffn ffn;
    ContextPool pool; /* when variant.pool == BLOCK_POOL_CONTEXTPOOL */
} Block;

/* What one forward pass computed on the side (arena tensors, valid until the tape's reset). */
typedef struct BlockAux {
    Tensor *probs;       /* attention probabilities (B, heads, N, N) */
    ContextPoolAux pool; /* the pool's weights and support: (B, N), or (B, grid_h, grid_w) on a
                            grid; both NULL without a pool */
} BlockAux;

void block_init(Block *layer, BlockConfig config, ParamSet *params, const char *prefix, Rng *rng);
void block_init_variant(Block *layer, BlockConfig config, BlockVariant variant, ParamSet *params,
                        const char *prefix, Rng *rng);
/* x (B, N, dim) -> (B, N, dim). probs as in attention_forward. */
Tensor *block_forward(Tape *tape, const Block *layer, Tensor *x, Tensor **probs);
/* The same, with everything in aux (may be NULL). */
Tensor *block_forward_aux(Tape *tape, const Block *layer, Tensor *x, BlockAux *aux);

#endif
