/* block.h - the pre-norm transformer block.
 *
 *   x = x + attn(ln1(x))
 *   x = x + ffn(ln2(x))
 * Parameters, in creation order (the order of PyTorch's state_dict for the same module tree):
 * "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
 * "attn.proj.bias", "ln2.weight", "ln2.bias", "ffn.fc1.weight", "ffn.fc1.bias",
 * "ffn.fc2.weight", "ffn.fc2.bias"; each initialised as its layer (LayerNorm ones/zeros, Linear
 * uniform), the random ones drawn from rng in that order. (The ContextPool issue adds an optional
 * pool stage.)
 *
 *     Block block;
 *     block_init(&block, (BlockConfig){.dim = 64, .heads = 4, .causal = 1}, &params, "blocks.0",
 *                &rng);
 *     Tensor *y = block_forward(tape, &block, x, NULL);   // x, y (B, N, 64)
 */
#ifndef CPOOL_BLOCK_H
#define CPOOL_BLOCK_H

#include "attention.h"
#include "ffn.h"
#include "layernorm.h"

typedef struct BlockConfig {
    int dim, heads;
    int ffn_hidden; /* 0 means 4 * dim */
    int causal;
} BlockConfig;

typedef struct Block {
    BlockConfig config;
    LayerNorm ln1, ln2;
    Attention attn;
    Ffn ffn;
} Block;

void block_init(Block *layer, BlockConfig config, ParamSet *params, const char *prefix, Rng *rng);
/* x (B, N, dim) -> (B, N, dim). probs as in attention_forward. */
Tensor *block_forward(Tape *tape, const Block *layer, Tensor *x, Tensor **probs);

#endif
