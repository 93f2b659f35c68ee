/* check_attention.c - gradient checks for op_attention (ops_attention.c).
 *
 * Every mask (none, causal, window, causal + window) on shapes (B, H, N, dh) with N = 1 (one key:
 * P = 1, so dq = dk = 0 exactly), odd sizes, size-1 batch and head dimensions, a window that
 * reaches past the sequence, and N = 70 > the op's 64-row block (a second block whose columns
 * start inside the first). q, k, v are U(-1, 1): scores stay in [-dh / sqrt(dh), ...], so no
 * probability is tiny and no row's gradient drowns in rounding.
 *
 * Step h = 1e-5 (as the smooth ops of check_nn.c): attention is smooth, truncation h^2 |f'''|
 * is ~1e-11 relative, rounding ~1e-16 |L| / h ~ 1e-11 |L|, more relative to an input whose whole
 * gradient is small (the N = 70, dh = 1 case). Measured (`cpool64 gradcheck attention_op --seed S`,
 * S = 1..10): typically 2e-10 to 8e-10, worst 1.9e-9; 1e-8 keeps a margin of five, while a wrong
 * transpose, a missed block or a mask entry leaking gradient gives an O(1) error. */
#include "gradcheck.h"
#include "ops.h"

typedef struct AttentionCase {
    int B, H, N, dh;
    int causal, window;
} AttentionCase;

static const AttentionCase cases[] = {
    {1, 1, 1, 1, 0, 0}, {1, 1, 1, 3, 1, 0},  {2, 3, 5, 4, 0, 0},
    {1, 2, 7, 3, 1, 0}, {2, 1, 6, 2, 0, 2},  {1, 3, 7, 5, 1, 3},
    {1, 1, 5, 2, 1, 9}, {1, 1, 70, 2, 1, 5}, {1, 1, 70, 1, 0, 0},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static Tensor *attention_fn(Tape *tape, Tensor *const *in, void *context) {
    const AttentionCase *c = context;
    return op_attention(tape, in[0], in[1], in[2], c->causal, c->window, NULL);
}

static void check_attention_op(Rng *rng, GradcheckStats *stats) {
    for (int i = 0; i < N_CASES; i++) {
        const AttentionCase *c = &cases[i];
        int shape[4] = {c->B, c->H, c->N, c->dh};
        Tensor *in[3];
        for (int t = 0; t < 3; t++) in[t] = gradcheck_input(rng, 4, shape, -1, 1);
        GradcheckOptions options = {.step = 1e-5, .seed = rng_u64(rng)};
        gradcheck(attention_fn, (void *)c, in, 3, &options, stats, NULL);
        gradcheck_free(in, 3);
    }
}

const OpCheck check_table_attention[] = {
    /* Tolerance: at the top of the file. */
    {"attention_op", check_attention_op, 1e-8},
    {0},
};
