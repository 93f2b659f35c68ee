/* embedding.h - token lookup tables (PyTorch nn.Embedding) and learned positions.
 *
 * Parameters: "weight" (vocab, dim) ~ N(0, 1), as PyTorch initialises nn.Embedding, drawn from
 * rng in row-major order.
 * Learned positional embeddings are an Embedding of (max_len, dim) looked up with 0..N-1;
 * embedding_positions() does that lookup for a sequence of length N.
 *
 *     Embedding tokens;
 *     embedding_init(&tokens, (EmbeddingConfig){.vocab = 256, .dim = 64}, &params, "tok", &rng);
 *     Tensor *x = embedding_forward(tape, &tokens, ids, 2, (int[]){B, N});   // (B, N, 64)
 */
#ifndef CPOOL_EMBEDDING_H
#define CPOOL_EMBEDDING_H

#include "params.h"
#include "rng.h"
#include "tape.h"

typedef struct EmbeddingConfig {
    int vocab, dim;
} EmbeddingConfig;

typedef struct Embedding {
    EmbeddingConfig config;
    Tensor *weight; /* (vocab, dim) */
} Embedding;

void embedding_init(Embedding *layer, EmbeddingConfig config, ParamSet *params, const char *prefix,
                    Rng *rng);
/* ids has the given shape; every id in [0, vocab). Result shape + (dim). */
Tensor *embedding_forward(Tape *tape, const Embedding *layer, const int *ids, int ndim,
                          const int *shape);
/* Rows 0..n-1 of the table: (n, dim). n must not exceed vocab (the maximum length). */
Tensor *embedding_positions(Tape *tape, const Embedding *layer, int n);

#endif
