/* test_attention_op.c - the fused attention op, op_attention, and the layer that uses it.
 *
 *   - hand values: with q = 0 every seen key gets the same probability, so o_i is the mean of the
 *     values row i sees (all, the past, or a window of them);
 *   - agreement with the same attention composed from tape ops (scale, matmul, masked_fill,
 *     softmax, matmul), forward, P and every gradient, for every mask, odd sizes, N = 1 and N
 *     past the op's 64-row block; op_attention_qkv and op_attention_q_kv (heads side by side)
 *     against slicing, splitting the heads, op_attention and merging them; and the layer on its
 *     fused path (self- and cross-attention) against reach.composed = 1;
 *   - properties: masked probabilities are exactly 0 and rows sum to 1; a causal op's gradients
 *     never reach a key after the query they come from; N = 1 gives o = v; the bits do not depend
 *     on the thread count; missing gradients are skipped;
 *   - every bad argument, one line each.
 *
 * Tolerances, |got - expected| / max(1, |expected|). Float64: the two paths differ only in where
 * they round (the composed one scales q first, the blocks sum in another order): 1e-12
 * (measured: below 1e-15). Float32: each path rounds every product and sum to 24 bits (6e-8),
 * over sums of up to 150 terms: 5e-6 (measured: below 5e-7, the largest in dv). */
#include "test_util.h"

#include <omp.h>
#include <stdlib.h>

#include "attention.h"
#include "ops.h"
#include "params.h"
#include "rng.h"
#include "tape.h"

static const int is_double = sizeof(real) == sizeof(double);
/* The fused and composed paths (and the side-by-side layouts) sum the same terms in different
 * orders: each value is a sum of at most N ~ 70 products of O(1) numbers, so they may differ
 * by ~N eps, 70 x 6e-8 = 4e-6 in float32 and 70 x 1.1e-16 = 8e-15 in float64; the backward
 * chains two such sums, and 1e-12 leaves that room. Measured: ~5e-7 and ~1e-15. */
#define TOL (is_double ? 1e-12 : 5e-6)

static Tensor *uniform_tensor(Rng *rng, int ndim, const int *shape, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
    return t;
}

static real *random_seed(Rng *rng, long n) {
    real *seed = malloc((size_t)n * sizeof(real));
    assert_non_null(seed);
    for (long i = 0; i < n; i++) seed[i] = (real)rng_range(rng, -1, 1);
    return seed;
}

/* A copy of n reals as doubles, for assert_close. */
static double *as_doubles(const real *x, long n) {
    double *out = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    assert_non_null(out);
    for (long i = 0; i < n; i++) out[i] = x[i];
    return out;
}

static void assert_tensors_close(const real *expected, const real *got, long n, double tolerance,
                                 const char *what) {
    double *want = as_doubles(expected, n);
    assert_close(want, got, n, tolerance, what);
    free(want);
}

/* Does query i see key j? */
static int sees(int i, int j, int causal, int window) {
    return !(causal && j > i) && !(window > 0 && abs(i - j) > window);
}

/* The same attention from ordinary tape ops: softmax((q / sqrt(dh)) k^T, masked) v. */
static Tensor *composed_attention(Tape *tape, Tensor *q, Tensor *k, Tensor *v, int causal,
                                  int window, Tensor **probs) {
    int N = q->shape[2], dh = q->shape[3];
    Tensor *scores = op_matmul(tape, op_scale(tape, q, (real)(1 / sqrt((double)dh))), k, 0, 1);
    Tensor *hidden = tape_tensor(tape, 2, (int[]){N, N});
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) hidden->data[i * N + j] = !sees(i, j, causal, window);
    *probs = op_softmax(tape, op_masked_fill(tape, scores, hidden, (real)-1e30));
    return op_matmul(tape, *probs, v, 0, 0);
}

typedef struct Case {
    int B, H, N, dh, causal, window;
} Case;

static const Case cases[] = {
    {1, 1, 1, 1, 0, 0},   {1, 1, 1, 4, 1, 3},    {2, 3, 5, 4, 0, 0},    {2, 2, 7, 3, 1, 0},
    {1, 2, 6, 2, 0, 2},   {2, 1, 9, 5, 1, 3},    {1, 1, 5, 2, 1, 9},    {1, 2, 150, 8, 1, 0},
    {1, 1, 150, 4, 0, 0}, {2, 1, 130, 3, 1, 40}, {1, 1, 131, 3, 0, 70},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Forward and backward of one path from the same seed; returns o, fills *probs and the grads. */
typedef Tensor *(*AttentionFn)(Tape *, Tensor *, Tensor *, Tensor *, int, int, Tensor **);

static Tensor *run_path(Tape *tape, AttentionFn fn, Tensor *in[3], const Case *c, const real *seed,
                        Tensor **probs) {
    for (int t = 0; t < 3; t++) tensor_zero_grad(in[t]);
    Tensor *o = fn(tape, in[0], in[1], in[2], c->causal, c->window, probs);
    tape_backward_from(tape, o, seed);
    return o;
}

static void fused_matches_composed_forward_probs_and_every_gradient(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 7);
    /* Two tapes: a backward walks every record of its tape. */
    Tape *tape = tape_create(), *other = tape_create();
    for (int ci = 0; ci < N_CASES; ci++) {
        const Case *c = &cases[ci];
        int shape[4] = {c->B, c->H, c->N, c->dh};
        Tensor *in[3];
        for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 1);
        long n = in[0]->size, nn = (long)c->B * c->H * c->N * c->N;
        real *seed = random_seed(&rng, n);
        Tensor *p_fused, *p_composed;
        Tensor *o_fused = run_path(other, op_attention, in, c, seed, &p_fused);
        real *grads[3];
        for (int t = 0; t < 3; t++) {
            grads[t] = malloc((size_t)n * sizeof(real));
            memcpy(grads[t], in[t]->grad, (size_t)n * sizeof(real));
        }
        Tensor *o_composed = run_path(tape, composed_attention, in, c, seed, &p_composed);
        char what[96];
        snprintf(what, sizeof what, "case %d (N=%d causal=%d window=%d): o", ci, c->N, c->causal,
                 c->window);
        assert_tensors_close(o_composed->data, o_fused->data, n, TOL, what);
        assert_tensors_close(p_composed->data, p_fused->data, nn, TOL, "P");
        const char *names[3] = {"dq", "dk", "dv"};
        for (int t = 0; t < 3; t++) {
            assert_tensors_close(in[t]->grad, grads[t], n, TOL, names[t]);
            free(grads[t]);
        }
        free(seed);
        for (int t = 0; t < 3; t++) tensor_free(in[t]);
        tape_reset(tape);
        tape_reset(other);
    }
    tape_free(tape);
    tape_free(other);
}

/* q = 0: every score is 0, so each seen key has probability 1 / |seen(i)| and o_i is the mean of
 * the values row i sees. N = 4, dh = 1, v = (1, 2, 4, 8):
 *   full:              every o_i = 15 / 4
 *   causal:            o = 1, 3/2, 7/3, 15/4
 *   window 1:          o = 3/2, 7/3, 14/3, 6
 *   causal, window 1:  o = 1, 3/2, 3, 6 */
static void zero_queries_average_the_values_each_row_sees(void **state) {
    (void)state;
    const double want[4][4] = {{15.0 / 4, 15.0 / 4, 15.0 / 4, 15.0 / 4},
                               {1, 1.5, 7.0 / 3, 15.0 / 4},
                               {1.5, 7.0 / 3, 14.0 / 3, 6},
                               {1, 1.5, 3, 6}};
    Tape *tape = tape_create();
    int shape[4] = {1, 1, 4, 1};
    Tensor *q = tensor_create(4, shape, 0), *k = tensor_create(4, shape, 0);
    Tensor *v = tensor_create(4, shape, 0);
    for (int i = 0; i < 4; i++) k->data[i] = (real)(i - 1.5), v->data[i] = (real)(1 << i);
    tensor_fill(q, 0);
    for (int mask = 0; mask < 4; mask++) {
        Tensor *o = op_attention(tape, q, k, v, mask & 1, mask >> 1, NULL);
        assert_close(want[mask], o->data, 4, is_double ? 1e-15 : 1e-6, "o");
    }
    tensor_free(q), tensor_free(k), tensor_free(v);
    tape_free(tape);
}

/* Outside seen(i) P is exactly 0 (never a tiny exp); inside it is positive; rows sum to 1. */
static void masked_probabilities_are_exactly_zero(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11);
    Tape *tape = tape_create();
    for (int ci = 0; ci < N_CASES; ci++) {
        const Case *c = &cases[ci];
        int shape[4] = {c->B, c->H, c->N, c->dh};
        Tensor *in[3];
        for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 0);
        for (long e = 0; e < in[0]->size; e++) in[0]->data[e] *= 20; /* peaked rows */
        Tensor *P;
        op_attention(tape, in[0], in[1], in[2], c->causal, c->window, &P);
        for (long row = 0; row < (long)c->B * c->H * c->N; row++) {
            int i = (int)(row % c->N);
            double total = 0;
            for (int j = 0; j < c->N; j++) {
                real p = P->data[row * c->N + j];
                if (sees(i, j, c->causal, c->window) ? !(p >= 0) : p != 0)
                    fail_msg("case %d: P[%d][%d] = %g", ci, i, j, (double)p);
                total += p;
            }
            assert_close(((double[]){1}), &(real){(real)total}, 1, is_double ? 1e-14 : 1e-6,
                         "row sum");
        }
        for (int t = 0; t < 3; t++) tensor_free(in[t]);
        tape_reset(tape);
    }
    tape_free(tape);
}

/* A causal op: the gradient from query row i reaches q_i, and k_j, v_j for j <= i only. Seed
 * dO on row 2 of N = 6: dq, dk, dv of rows 3.. are exactly 0 and dq of rows other than 2 too. */
static void causal_gradients_never_reach_later_keys(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 12);
    Tape *tape = tape_create();
    const int N = 6, dh = 3, row = 2;
    int shape[4] = {1, 1, N, dh};
    Tensor *in[3];
    for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 1);
    real seed[6 * 3] = {0};
    for (int d = 0; d < dh; d++) seed[row * dh + d] = (real)(d + 1);
    Tensor *o = op_attention(tape, in[0], in[1], in[2], 1, 0, NULL);
    tape_backward_from(tape, o, seed);
    for (int i = 0; i < N; i++)
        for (int d = 0; d < dh; d++) {
            assert_true((in[0]->grad[i * dh + d] != 0) == (i == row));
            assert_true((in[1]->grad[i * dh + d] != 0) == (i <= row));
            assert_true((in[2]->grad[i * dh + d] != 0) == (i <= row));
        }
    for (int t = 0; t < 3; t++) tensor_free(in[t]);
    tape_free(tape);
}

/* One token sees only itself: P = 1, o = v, and q, k get no gradient. */
static void one_token_gives_its_value(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 13);
    Tape *tape = tape_create();
    int shape[4] = {2, 3, 1, 4};
    Tensor *in[3];
    for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 1);
    Tensor *P;
    Tensor *o = op_attention(tape, in[0], in[1], in[2], 1, 0, &P);
    for (long e = 0; e < P->size; e++) assert_true(P->data[e] == 1);
    assert_memory_equal(o->data, in[2]->data, o->size * sizeof(real));
    real *seed = random_seed(&rng, o->size);
    tape_backward_from(tape, o, seed);
    for (long e = 0; e < o->size; e++) {
        assert_true(in[0]->grad[e] == 0 && in[1]->grad[e] == 0);
        assert_true(in[2]->grad[e] == seed[e]);
    }
    free(seed);
    for (int t = 0; t < 3; t++) tensor_free(in[t]);
    tape_free(tape);
}

/* One thread or two: the same bits for o, P and every gradient (items are split, sums are not). */
static void results_do_not_depend_on_the_thread_count(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 14);
    int shape[4] = {2, 3, 40, 8};
    Tensor *in[3];
    for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 1);
    real *seed = random_seed(&rng, in[0]->size);
    int saved_threads = omp_get_max_threads();
    real *first[5] = {0};
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        Tape *tape = tape_create();
        for (int t = 0; t < 3; t++) tensor_zero_grad(in[t]);
        Tensor *P;
        Tensor *o = op_attention(tape, in[0], in[1], in[2], 1, 0, &P);
        tape_backward_from(tape, o, seed);
        const real *now[5] = {o->data, P->data, in[0]->grad, in[1]->grad, in[2]->grad};
        long sizes[5] = {o->size, P->size, o->size, o->size, o->size};
        for (int r = 0; r < 5; r++) {
            size_t bytes = (size_t)sizes[r] * sizeof(real);
            if (threads == 1) {
                first[r] = malloc(bytes);
                memcpy(first[r], now[r], bytes);
            } else {
                assert_memory_equal(first[r], now[r], bytes);
                free(first[r]);
            }
        }
        tape_free(tape);
    }
    omp_set_num_threads(saved_threads);
    free(seed);
    for (int t = 0; t < 3; t++) tensor_free(in[t]);
}

/* Only v requires grad: its gradient is the one of the full run, and nothing else is touched;
 * in no-grad mode nothing is recorded and o is the same. */
static void missing_gradients_and_no_grad_change_nothing_else(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 15);
    int shape[4] = {1, 2, 9, 3};
    Tensor *in[3], *v_only = uniform_tensor(&rng, 4, shape, 1);
    for (int t = 0; t < 3; t++) in[t] = uniform_tensor(&rng, 4, shape, 1);
    memcpy(v_only->data, in[2]->data, (size_t)v_only->size * sizeof(real));
    Tensor *q_const = tensor_create(4, shape, 0), *k_const = tensor_create(4, shape, 0);
    memcpy(q_const->data, in[0]->data, (size_t)q_const->size * sizeof(real));
    memcpy(k_const->data, in[1]->data, (size_t)k_const->size * sizeof(real));
    real *seed = random_seed(&rng, in[0]->size);
    Tape *tape = tape_create(), *other = tape_create();
    Tensor *o = op_attention(tape, in[0], in[1], in[2], 1, 2, NULL);
    tape_backward_from(tape, o, seed);
    Tensor *o_v = op_attention(other, q_const, k_const, v_only, 1, 2, NULL);
    tape_backward_from(other, o_v, seed);
    assert_int_equal(other->n_records, 1);
    assert_memory_equal(o->data, o_v->data, o->size * sizeof(real));
    assert_memory_equal(in[2]->grad, v_only->grad, o->size * sizeof(real));
    other->no_grad = 1;
    tape_reset(other);
    Tensor *o_none = op_attention(other, in[0], in[1], in[2], 1, 2, NULL);
    assert_int_equal(other->n_records, 0);
    assert_memory_equal(o->data, o_none->data, o->size * sizeof(real));
    free(seed);
    tensor_free(v_only), tensor_free(q_const), tensor_free(k_const);
    for (int t = 0; t < 3; t++) tensor_free(in[t]);
    tape_free(tape);
    tape_free(other);
}

/* Heads side by side, split the slow way: q, k, v (each (B, N, H dh), columns [c, c + H dh) of
 * `source`) -> (B, H, N, dh) by slice, reshape and permute, op_attention, and back to
 * (B, N, H dh). What op_attention_qkv and op_attention_q_kv do in place. */
static Tensor *split_heads_of(Tape *tape, Tensor *source, int column, int heads, int dim) {
    int B = source->shape[0], N = source->shape[1];
    Tensor *part = op_slice(tape, source, 2, column, column + dim);
    Tensor *four = op_reshape(tape, part, 4, (int[]){B, N, heads, dim / heads});
    return op_permute(tape, four, (int[]){0, 2, 1, 3});
}
static Tensor *attention_by_copies(Tape *tape, Tensor *q_source, Tensor *kv_source, int q_column,
                                   int k_column, int heads, int dim, const Case *c,
                                   Tensor **probs) {
    Tensor *q = split_heads_of(tape, q_source, q_column, heads, dim);
    Tensor *k = split_heads_of(tape, kv_source, k_column, heads, dim);
    Tensor *v = split_heads_of(tape, kv_source, k_column + dim, heads, dim);
    Tensor *o = op_attention(tape, q, k, v, c->causal, c->window, probs);
    o = op_permute(tape, o, (int[]){0, 2, 1, 3});
    return op_reshape(tape, o, 3, (int[]){q_source->shape[0], q_source->shape[1], dim});
}

/* op_attention_qkv (one packed input) and op_attention_q_kv (two) against the copies: o, P and
 * every input gradient, for every mask and N past the 64-row block. */
static void heads_side_by_side_match_split_heads(void **state) {
    (void)state;
    const Case side_cases[] = {
        {2, 3, 70, 5, 0, 0}, {2, 3, 70, 5, 1, 0}, {1, 2, 9, 4, 1, 3}, {2, 1, 66, 3, 0, 4}};
    for (int n = 0; n < (int)(sizeof side_cases / sizeof side_cases[0]); n++)
        for (int cross = 0; cross < 2; cross++) {
            const Case *c = &side_cases[n];
            int dim = c->H * c->dh;
            Rng rng;
            rng_seed(&rng, 40 + n);
            Tensor *q_source =
                uniform_tensor(&rng, 3, (int[]){c->B, c->N, (cross ? 1 : 3) * dim}, 1);
            Tensor *kv_source =
                cross ? uniform_tensor(&rng, 3, (int[]){c->B, c->N, 2 * dim}, 1) : q_source;
            int k_column = cross ? 0 : dim;
            real *seed = random_seed(&rng, (long)c->B * c->N * dim);
            Tape *tape = tape_create(), *other = tape_create();
            Tensor *p_fast, *p_slow;
            Tensor *o_fast =
                cross ? op_attention_q_kv(tape, q_source, kv_source, c->H, c->causal, c->window,
                                          &p_fast)
                      : op_attention_qkv(tape, q_source, c->H, c->causal, c->window, &p_fast);
            tape_backward_from(tape, o_fast, seed);
            double *dq = as_doubles(q_source->grad, q_source->size);
            double *dkv = as_doubles(kv_source->grad, kv_source->size);
            tensor_zero_grad(q_source), tensor_zero_grad(kv_source);
            Tensor *o_slow =
                attention_by_copies(other, q_source, kv_source, 0, k_column, c->H, dim, c, &p_slow);
            tape_backward_from(other, o_slow, seed);
            assert_int_equal(o_fast->ndim, 3);
            assert_int_equal(o_fast->shape[2], dim);
            assert_tensors_close(o_slow->data, o_fast->data, o_fast->size, TOL, "side by side o");
            assert_tensors_close(p_slow->data, p_fast->data, p_fast->size, TOL, "side by side P");
            assert_close(dq, q_source->grad, q_source->size, TOL, "side by side dq (or dqkv)");
            assert_close(dkv, kv_source->grad, kv_source->size, TOL, "side by side dkv");
            free(dq), free(dkv), free(seed);
            if (cross) tensor_free(kv_source);
            tensor_free(q_source);
            tape_free(tape);
            tape_free(other);
        }
}

/* Where the inputs are arena intermediates, the fused backward *stores* into their fresh
 * gradient buffers when it is their only contributor (and, for dk and dv, when its first row
 * block sees every key, i.e. without a window), and adds otherwise. Each wiring below must give
 * the leaf x the composed path's gradient, for every mask (windows included):
 *   0: q, k, v distinct, all fresh (stored; with a window dk, dv zeroed and added)
 *   1: k = v, one tensor twice (two contributions: added)
 *   2: q = k = v
 *   3: k also feeds a later add, whose backward runs first: dk exists, dv is fresh (both added)
 *   4: heads side by side, qkv fresh (op_attention_qkv; stored whole or, with a window, added)
 *   5: the same, with a slice of qkv also added to the output (dqkv exists: added)
 * The fused op is run without asking for P, so the masked blocks of P stay unwritten. */
static Tensor *wired_attention(Tape *tape, Tensor *x, int wiring, int fused, const Case *c) {
    Tensor *probs;
    if (wiring >= 4) {
        int dim = c->H * c->dh;
        Tensor *qkv = op_scale(tape, x, (real)0.5); /* (B, N, 3 dim) */
        Tensor *o = fused ? op_attention_qkv(tape, qkv, c->H, c->causal, c->window, NULL)
                          : attention_by_copies(tape, qkv, qkv, 0, dim, c->H, dim, c, &probs);
        return wiring == 5 ? op_add(tape, o, op_slice(tape, qkv, 2, dim, 2 * dim)) : o;
    }
    Tensor *q = op_scale(tape, x, (real)0.5), *k = op_scale(tape, x, (real)-1.5);
    Tensor *v = op_scale(tape, x, (real)2);
    if (wiring == 1) v = k;
    if (wiring == 2) k = v = q;
    Tensor *o = fused ? op_attention(tape, q, k, v, c->causal, c->window, NULL)
                      : composed_attention(tape, q, k, v, c->causal, c->window, &probs);
    return wiring == 3 ? op_add(tape, o, k) : o;
}

static void stored_and_added_gradients_match_composed(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11);
    for (int ci = 0; ci < N_CASES; ci++)
        for (int wiring = 0; wiring < 6; wiring++) {
            const Case *c = &cases[ci];
            int shape[4] = {c->B, c->H, c->N, c->dh};
            int side[3] = {c->B, c->N, 3 * c->H * c->dh};
            Tensor *x =
                wiring >= 4 ? uniform_tensor(&rng, 3, side, 1) : uniform_tensor(&rng, 4, shape, 1);
            Tape *tape = tape_create();
            Tensor *o = wired_attention(tape, x, wiring, 1, c);
            real *seed = random_seed(&rng, o->size);
            tape_backward_from(tape, o, seed);
            double *fused = as_doubles(x->grad, x->size);
            tensor_zero_grad(x);
            tape_reset(tape);
            tape_backward_from(tape, wired_attention(tape, x, wiring, 0, c), seed);
            char what[96];
            snprintf(what, sizeof what, "case %d wiring %d: dx", ci, wiring);
            assert_close(fused, x->grad, x->size, TOL, what);
            free(fused), free(seed);
            tensor_free(x);
            tape_free(tape);
        }
}

/* The layer: fused (the default) and reach.composed = 1 from the same parameters give the same
 * y, probabilities and parameter and input gradients, for full, causal and windowed attention,
 * self- (op_attention_qkv) and cross-attention (op_attention_q_kv). */
static void attention_layer_fused_matches_composed(void **state) {
    (void)state;
    const AttentionReach reaches[] = {{0}, {.window = 2}, {.window = 7}};
    for (int cross = 0; cross < 2; cross++) /* x_kv = x_q (self) or another tensor */
        for (int causal = 0; causal < 2; causal++)
            for (int r = 0; r < 3; r++) {
                Rng rng, replay;
                rng_seed(&rng, 16 + r);
                replay = rng;
                ParamSet params = {0};
                Attention fused, composed;
                AttentionReach slow = reaches[r];
                slow.composed = 1;
                AttentionConfig config = {.dim = 12, .heads = 3, .causal = causal};
                attention_init_reach(&fused, config, reaches[r], &params, "fused", &rng);
                attention_init_reach(&composed, config, slow, &params, "composed", &replay);
                int shape[3] = {2, 9, 12};
                Tensor *x = uniform_tensor(&rng, 3, shape, 1);
                Tensor *x_kv = cross ? uniform_tensor(&rng, 3, shape, 1) : x;
                real *seed = random_seed(&rng, x->size);
                Tape *tape = tape_create(), *other = tape_create();
                Tensor *p_fused, *p_composed;
                Tensor *y_fused = attention_forward(tape, &fused, x, x_kv, &p_fused);
                tape_backward_from(tape, y_fused, seed);
                double *dx = as_doubles(x->grad, x->size);
                double *dx_kv = as_doubles(x_kv->grad, x_kv->size);
                tensor_zero_grad(x), tensor_zero_grad(x_kv);
                Tensor *y_composed = attention_forward(other, &composed, x, x_kv, &p_composed);
                tape_backward_from(other, y_composed, seed);
                assert_close(dx_kv, x_kv->grad, x_kv->size, TOL, "layer dx_kv");
                free(dx_kv);
                if (cross) tensor_free(x_kv);
                assert_tensors_close(y_composed->data, y_fused->data, y_fused->size, TOL,
                                     "layer y");
                assert_tensors_close(p_composed->data, p_fused->data, p_fused->size, TOL,
                                     "layer P");
                assert_close(dx, x->grad, x->size, TOL, "layer dx");
                int half = params.count / 2; /* fused's parameters, then composed's */
                for (int i = 0; i < half; i++) {
                    const Tensor *a = params.items[i].tensor, *b = params.items[half + i].tensor;
                    assert_tensors_close(b->grad, a->grad, a->size, TOL, params.items[i].name);
                }
                free(dx), free(seed);
                tensor_free(x);
                tape_free(tape);
                tape_free(other);
                params_free(&params);
            }
}

static void bad_arguments_fail_with_one_line(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *q = tensor_create(4, (int[]){1, 2, 3, 4}, 0),
           *k3 = tensor_create(3, (int[]){2, 3, 4}, 0);
    Tensor *k_short = tensor_create(4, (int[]){1, 2, 2, 4}, 0);
    Tensor *v_wide = tensor_create(4, (int[]){1, 2, 3, 5}, 0);
    Tensor *empty = tensor_create(4, (int[]){1, 2, 0, 4}, 0);
    EXPECT_FAIL(op_attention(tape, k3, k3, k3, 0, 0, NULL), "q (2, 3, 4), k (2, 3, 4)");
    EXPECT_FAIL(op_attention(tape, q, k_short, q, 0, 0, NULL), "k (1, 2, 2, 4)");
    EXPECT_FAIL(op_attention(tape, q, q, v_wide, 1, 0, NULL), "v (1, 2, 3, 5)");
    EXPECT_FAIL(op_attention(tape, empty, empty, empty, 0, 0, NULL), "N, dh >= 1");
    EXPECT_FAIL(op_attention(tape, q, q, q, 0, -1, NULL), "window=-1 must be >= 0");
    Tensor *qkv = tensor_create(3, (int[]){1, 3, 12}, 0),
           *q3 = tensor_create(3, (int[]){1, 3, 4}, 0);
    Tensor *kv_long = tensor_create(3, (int[]){1, 4, 8}, 0);
    EXPECT_FAIL(op_attention_qkv(tape, qkv, 0, 0, 0, NULL), "heads=0 must be >= 1");
    EXPECT_FAIL(op_attention_qkv(tape, qkv, 3, 0, 0, NULL), "qkv must be (B, N, 3 heads dh)");
    EXPECT_FAIL(op_attention_qkv(tape, q, 1, 0, 0, NULL), "got (1, 2, 3, 4)");
    EXPECT_FAIL(op_attention_qkv(tape, qkv, 2, 0, -1, NULL), "window=-1 must be >= 0");
    EXPECT_FAIL(op_attention_q_kv(tape, q3, kv_long, 2, 0, 0, NULL),
                "kv must be (B, N, 2 heads dh)");
    EXPECT_FAIL(op_attention_q_kv(tape, q3, qkv, 2, 0, 0, NULL), "twice q's features");
    EXPECT_FAIL(op_attention_q_kv(tape, q3, q3, 3, 0, 0, NULL), "q must be (B, N, 1 heads dh)");
    tensor_free(qkv), tensor_free(q3), tensor_free(kv_long);
    EXPECT_FAIL(attention_resolve_reach((AttentionReach){.composed = 2}),
                "composed=2 must be 0 or 1");
    tensor_free(q), tensor_free(k3), tensor_free(k_short), tensor_free(v_wide), tensor_free(empty);
    tape_free(tape);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zero_queries_average_the_values_each_row_sees),
        cmocka_unit_test(fused_matches_composed_forward_probs_and_every_gradient),
        cmocka_unit_test(masked_probabilities_are_exactly_zero),
        cmocka_unit_test(causal_gradients_never_reach_later_keys),
        cmocka_unit_test(one_token_gives_its_value),
        cmocka_unit_test(results_do_not_depend_on_the_thread_count),
        cmocka_unit_test(missing_gradients_and_no_grad_change_nothing_else),
        cmocka_unit_test(heads_side_by_side_match_split_heads),
        cmocka_unit_test(stored_and_added_gradients_match_composed),
        cmocka_unit_test(attention_layer_fused_matches_composed),
        cmocka_unit_test(bad_arguments_fail_with_one_line),
    };
    return cmocka_run_group_tests_name("attention_op (" REAL_NAME ")", tests, NULL, NULL);
}
