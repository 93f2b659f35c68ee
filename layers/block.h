/* block.h - the pre-norm transformer block.
 *
 *   x = x + attn(ln1(x))
 *   x = x + ffn(ln2(x))
 * Parameters: "ln1.*", "attn.*", "ln2.*", "ffn.fc1.*", "ffn.fc2.*". (The ContextPool issue adds
 * an optional pool stage.)
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
