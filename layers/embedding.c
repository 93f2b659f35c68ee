/* embedding.c - see embedding.h. */
#include "embedding.h"

#include "ops.h"
#include "util.h"

void embedding_init(Embedding *layer, EmbeddingConfig config, ParamSet *params, const char *prefix,
                    Rng *rng) {
    if (config.vocab < 1) cpool_fail("embedding: vocab=%d must be positive", config.vocab);
    if (config.dim < 1) cpool_fail("embedding: dim=%d must be positive", config.dim);
    layer->config = config;
    layer->weight = params_new(params, prefix, "weight", 2, (int[]){config.vocab, config.dim});
    for (long i = 0; i < layer->weight->size; i++) layer->weight->data[i] = (real)rng_normal(rng);
}

/* y[p] = weight[ids[p]]: ids of shape `shape` -> (shape..., dim). op_embedding checks each id. */
Tensor *embedding_forward(Tape *tape, const Embedding *layer, const int *ids, int ndim,
                          const int *shape) {
    if (ndim < 0 || ndim >= TENSOR_MAX_DIMS)
        cpool_fail("embedding: ids must have 0 to %d dimensions, got %d", TENSOR_MAX_DIMS - 1,
                   ndim);
    return op_embedding(tape, layer->weight, ids, ndim, shape);
}

/* Positions 0..n-1 looked up in the table: (n, dim). The scratch ids come from the tape's arena
 * (no malloc per call); op_embedding keeps its own copy for backward. */
Tensor *embedding_positions(Tape *tape, const Embedding *layer, int n) {
    if (n < 1 || n > layer->config.vocab)
        cpool_fail("embedding: %d positions requested, the table holds 1 to %d", n,
                   layer->config.vocab);
    int *positions = tape_save(tape, (size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) positions[i] = i;
    return op_embedding(tape, layer->weight, positions, 1, (int[]){n}); /* (n, dim) */
}
