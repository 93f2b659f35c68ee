/* ops_conv.c - convolution (1-d and 2-d, grouped) and 2-d pooling, as in PyTorch.
 *
 * Convolution is cross-correlation with zero padding (no kernel flip), as torch.nn.functional:
 *
 *   y[b, o, i, j] = bias[o] + sum_{c in group(o), p, q} w[o, c', p, q] x[b, c, i s + p - pt,
 *                                                                        j s + q - pl]
 *
 * where s is the stride, pt/pl the top/left padding, c' = c - group_start the channel within o's
 * group, and x is 0 outside the input. Channels are split into `groups` equal groups; output
 * channel o (group g = o / (O / groups)) sees only the C / groups input channels of group g.
 *
 * Two paths compute it, both im2col + gemm (takes_batched_path says which):
 *
 * The per-(b, g) path, for several groups and for the small shapes: per batch element b and
 * group g,
 *   columns (Cg KH KW, Ho Wo):  columns[(c, p, q), (i, j)] = x[b, c, i s + p - pt, j s + q - pl]
 *   forward:   y_g (Og, Ho Wo)  = w_g (Og, Cg KH KW) @ columns     (+ bias[o] per row)
 *   backward:  dw_g            += dy_g @ columns^T
 *              dcolumns         = w_g^T @ dy_g, then dx += col2im(dcolumns)
 *              dbias[o]        += sum_{b, i, j} dy[b, o, i, j]
 * col2im adds each column entry back into the x element it was copied from: it is the transpose
 * of im2col (a gather becomes a scatter-add), which is why padding and overlapping windows need
 * no special care in backward. A 1x1 kernel with stride 1 and no padding needs no columns at
 * all: they are x itself.
 *
 * The batched path, for one group: the whole batch in one product per direction, with x laid
 * out channels-last, the output positions in rows and the channels in columns (see "Batched,
 * channels-last convolution" below). Its products are long (M = B Ho Wo rows), which gemm runs
 * near its peak; the per-(b, g) products of the models' shapes were short (the ViT's 3x3 conv:
 * 64 products of 16 x 49 x 576 at ~15 GFLOP/s).
 *
 * conv1d is conv2d with H = KH = 1 (then the top padding and the vertical stride never matter),
 * so both share one geometry and one implementation; conv1d alone has asymmetric padding
 * (pad_left = K - 1, pad_right = 0 is the causal convolution).
 *
 * Memory (arena; the per-(b, g) path): the columns buffer (Cg KH KW x Ho Wo, reused for every b
 * and g), and in backward a column-gradient buffer of the same size when x needs a gradient
 * (none for a 1x1 stride-1 unpadded kernel); backward recomputes columns into the first rather
 * than keeping one copy per batch element. The batched path's buffers: see its "Memory".
 *
 * Determinism: every sum runs in a fixed order on one thread, except inside gemm, whose
 * results do not depend on the thread count either (gemm.c): so neither do the convolutions. */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "util.h"

/* ---- Geometry ---------------------------------------------------------------------------- */

typedef struct ConvGeometry {
    int batch, in_channels, out_channels, groups;
    int in_h, in_w, kernel_h, kernel_w;
    int stride, pad_top, pad_left; /* bottom/right padding only shows in out_h/out_w */
    int out_h, out_w;
} ConvGeometry;

static int group_in(const ConvGeometry *g) {
    return g->in_channels / g->groups;
}
static int group_out(const ConvGeometry *g) {
    return g->out_channels / g->groups;
}
static long column_rows(const ConvGeometry *g) {
    return (long)group_in(g) * g->kernel_h * g->kernel_w;
}
static long column_cols(const ConvGeometry *g) {
    return (long)g->out_h * g->out_w;
}

/* 1x1 kernel, stride 1, no padding: the columns matrix (Cg, H W) is the input slab itself. */
static int is_pointwise(const ConvGeometry *g) {
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride == 1 && g->pad_top == 0 &&
           g->pad_left == 0 && g->out_h == g->in_h && g->out_w == g->in_w;
}

/* ceil(a / s) for a > 0, else 0: the first output index whose tap lands at or after a. */
static int first_at_or_after(int a, int s) {
    return a > 0 ? (a + s - 1) / s : 0;
}

/* Output columns j whose tap j s + q - pad_left falls inside [0, in_w): j in [*lo, *hi). */
static void valid_columns(const ConvGeometry *g, int q, int *lo, int *hi) {
    *lo = first_at_or_after(g->pad_left - q, g->stride);
    *hi = first_at_or_after(g->in_w + g->pad_left - q, g->stride);
    if (*lo > g->out_w) *lo = g->out_w;
    if (*hi > g->out_w) *hi = g->out_w;
    if (*hi < *lo) *hi = *lo;
}

/* ---- im2col and col2im ------------------------------------------------------------------
 * Both walk the same index map (row (c, p, q), column (i, j)) <-> x[c, i s + p - pt, j s + q - pl].
 * For each row and output line i the valid j form one interval, so the inner loops have no
 * bounds tests: zeros before and after, a strided copy (or add) in between. */

/* columns (Cg KH KW, Ho Wo) <- x_group (Cg, H, W), zeros where the tap is in the padding. */
static void im2col(const ConvGeometry *g, const real *x_group, real *columns) {
    const int s = g->stride, out_w = g->out_w;
    real *row = columns;
    for (int c = 0; c < group_in(g); c++)
        for (int p = 0; p < g->kernel_h; p++)
            for (int q = 0; q < g->kernel_w; q++) {
                int lo, hi;
                valid_columns(g, q, &lo, &hi);
                for (int i = 0; i < g->out_h; i++, row += out_w) {
                    int ih = i * s + p - g->pad_top;
                    if (ih < 0 || ih >= g->in_h) {
                        memset(row, 0, (size_t)out_w * sizeof(real));
                        continue;
                    }
                    memset(row, 0, (size_t)lo * sizeof(real));
                    memset(row + hi, 0, (size_t)(out_w - hi) * sizeof(real));
                    if (hi == lo) continue;
                    const real *line = x_group + ((long)c * g->in_h + ih) * g->in_w;
                    const real *tap = line + ((long)lo * s + q - g->pad_left); /* x at j = lo */
                    if (s == 1)
                        memcpy(row + lo, tap, (size_t)(hi - lo) * sizeof(real));
                    else
                        for (int j = lo; j < hi; j++) row[j] = tap[(long)(j - lo) * s];
                }
            }
}

/* dx_group (Cg, H, W) += col2im(column_grads): each entry goes back to the x element it came
 * from; entries that came from the padding are dropped. */
static void col2im_add(const ConvGeometry *g, const real *column_grads, real *dx_group) {
    const int s = g->stride, out_w = g->out_w;
    const real *row = column_grads;
    for (int c = 0; c < group_in(g); c++)
        for (int p = 0; p < g->kernel_h; p++)
            for (int q = 0; q < g->kernel_w; q++) {
                int lo, hi;
                valid_columns(g, q, &lo, &hi);
                for (int i = 0; i < g->out_h; i++, row += out_w) {
                    int ih = i * s + p - g->pad_top;
                    if (ih < 0 || ih >= g->in_h || hi == lo) continue;
                    real *line = dx_group + ((long)c * g->in_h + ih) * g->in_w;
                    real *tap = line + ((long)lo * s + q - g->pad_left);
                    if (s == 1)
                        for (int j = lo; j < hi; j++) tap[j - lo] += row[j];
                    else
                        for (int j = lo; j < hi; j++) tap[(long)(j - lo) * s] += row[j];
                }
            }
}

/* ---- Forward and backward (shared by conv1d and conv2d) ----------------------------------- */

typedef struct ConvSaved {
    ConvGeometry geometry;
    real *columns; /* the forward's im2col buffer (arena), reused as scratch in backward */
} ConvSaved;

/* Slabs of one batch element b and group k: x (Cg, H W), w (Og, Cg KH KW), y (Og, Ho Wo). */
static long x_offset(const ConvGeometry *g, int b, int k) {
    return ((long)b * g->in_channels + (long)k * group_in(g)) * g->in_h * g->in_w;
}
static long w_offset(const ConvGeometry *g, int k) {
    return (long)k * group_out(g) * column_rows(g);
}
static long y_offset(const ConvGeometry *g, int b, int k) {
    return ((long)b * g->out_channels + (long)k * group_out(g)) * column_cols(g);
}

/* y = w * x (+ bias): each output row starts at its bias and gemm accumulates onto it. */
static void conv_forward(const ConvGeometry *g, const real *x, const real *w, const real *bias,
                         real *columns, real *y) {
    const long rows = column_rows(g), cols = column_cols(g);
    for (int b = 0; b < g->batch; b++)
        for (int k = 0; k < g->groups; k++) {
            const real *x_group = x + x_offset(g, b, k);
            real *y_group = y + y_offset(g, b, k);
            if (bias)
                for (int o = 0; o < group_out(g); o++) {
                    real value = bias[k * group_out(g) + o];
                    for (long n = 0; n < cols; n++) y_group[o * cols + n] = value;
                }
            if (!is_pointwise(g)) im2col(g, x_group, columns);
            gemm(0, 0, group_out(g), (int)cols, (int)rows, w + w_offset(g, k), (int)rows,
                 is_pointwise(g) ? x_group : columns, (int)cols, y_group, (int)cols, bias != NULL);
        }
}

/* dbias[o] += sum over b and positions of dy[b, o, :], summed in double: in LANES partial sums
 * (position n into lane n mod LANES, then the lanes in order), which compilers vectorize; one
 * running sum is a chain of dependent adds, 4 cycles each. */
static void conv_bias_backward(const ConvGeometry *g, const real *dy, real *dbias) {
    enum { LANES = 8 };
    const long cols = column_cols(g), whole = cols / LANES * LANES;
    for (int o = 0; o < g->out_channels; o++) {
        double lane[LANES] = {0};
        for (int b = 0; b < g->batch; b++) {
            const real *row = dy + ((long)b * g->out_channels + o) * cols;
            for (long n = 0; n < whole; n += LANES)
                for (int k = 0; k < LANES; k++) lane[k] += row[n + k];
            for (long n = whole; n < cols; n++) lane[n - whole] += row[n];
        }
        double sum = 0;
        for (int k = 0; k < LANES; k++) sum += lane[k];
        dbias[o] += (real)sum;
    }
}

static void conv_backward(Tape *tape, TapeRecord *record) {
    const ConvSaved *saved = record->saved;
    const ConvGeometry *g = &saved->geometry;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w);
    real *dbias = record->n_inputs == 3 ? tape_grad(tape, record->inputs[2]) : NULL;
    const long rows = column_rows(g), cols = column_cols(g);
    const int pointwise = is_pointwise(g);
    real *column_grads = NULL;
    if (dx && !pointwise) column_grads = arena_alloc(&tape->arena, rows * cols * sizeof(real));

    for (int b = 0; b < g->batch; b++)
        for (int k = 0; k < g->groups; k++) {
            const real *x_group = x->data + x_offset(g, b, k), *w_group = w->data + w_offset(g, k);
            const real *dy_group = y->grad + y_offset(g, b, k);
            if (dw) { /* dw_g (Og, Cg KH KW) += dy_g (Og, Ho Wo) @ columns^T */
                if (!pointwise) im2col(g, x_group, saved->columns);
                gemm(0, 1, group_out(g), (int)rows, (int)cols, dy_group, (int)cols,
                     pointwise ? x_group : saved->columns, (int)cols, dw + w_offset(g, k),
                     (int)rows, 1);
            }
            if (dx && pointwise) /* dx_g (Cg, H W) += w_g^T @ dy_g directly */
                gemm(1, 0, (int)rows, (int)cols, group_out(g), w_group, (int)rows, dy_group,
                     (int)cols, dx + x_offset(g, b, k), (int)cols, 1);
            if (dx && !pointwise) { /* dcolumns = w_g^T @ dy_g; dx_g += col2im(dcolumns) */
                gemm(1, 0, (int)rows, (int)cols, group_out(g), w_group, (int)rows, dy_group,
                     (int)cols, column_grads, (int)cols, 0);
                col2im_add(g, column_grads, dx + x_offset(g, b, k));
            }
        }
    if (dbias) conv_bias_backward(g, y->grad, dbias);
}

/* ---- Batched, channels-last convolution (groups == 1) -------------------------------------
 * The per-(b, g) products are short: the char-LM's k = 3 conv is 8 products of 32 x 256 x 384,
 * the ViT's 3x3 conv 64 products of 16 x 49 x 576, far from the long products gemm is fast at.
 * With one group, the whole batch is one product instead. Lay x out channels-last and
 * zero-padded, x_cl (B, Hp, Wp, C), Hp = (Ho - 1) s + KH and Wp = (Wo - 1) s + KW the extent the
 * windows touch; order the depth index (p, q, c); and put the output positions in rows:
 *
 *   columns_t (M, KH KW C):  columns_t[(b, i, j), (p, q, c)] = x_cl[b, i s + p, j s + q, c]
 *   forward:   y_t (M, O)  = columns_t @ w_r^T,   w_r (O, KH KW C) = w reordered to (o, p, q, c)
 *              y[b, o, i, j] = y_t[(b, i, j), o] + bias[o]
 *   backward:  dw_r^T (KH KW C, O) = columns_t^T @ dy_t  (one long sum over all b, i, j)
 *              dcolumns_t          = dy_t @ w_r, then dx_cl = col2im(dcolumns_t), dx += dx_cl
 *
 * with M = B Ho Wo: products of 3136 x 16 x 576 and the like. For one p, the (q, c) part of a
 * row is KW C contiguous reals of x_cl, so building columns_t ("gather") and col2im ("scatter")
 * are KH memcpy's or vector adds per row. (dw_r^T rather than dw_r: with O <= 16, O as gemm's N
 * takes the narrow tile; the ViT's dw ran 0.8 instead of 1.0-1.5 ms; equal for the char-LM.)
 *
 * Gathered plan: columns_t is built chunk by chunk, at least CHUNK_MIN_ROWS rows (whole images)
 * at a time, forward and again in backward for dw: the full columns_t of the ViT's 3x3 conv is
 * 7.2 MB a block; a chunk of 11 images, 1.2 MB, which ran as fast (the copy is cheap next to
 * the products, and the chunk stays in cache for them).
 *
 * Flat plan. With stride 1 and KH = 1 over a single line (conv1d: Hp = 1), a row IS those KW C
 * contiguous reals: row (b, l) starts at x_cl + (b Lp + l) C, Lp = Hp Wp, so x_cl read in place
 * with row stride C (rows overlap) is columns_t and nothing is gathered. Taking rows r = b Lp + l
 * for every r < B Lp - (KW - 1) makes it one matrix; the KW - 1 rows per batch element with
 * l >= Lo = Lp - KW + 1 straddle two batch elements and are computed and dropped (1% of the rows
 * for the char-LM: 2 of 258). In backward they meet zero rows of dy_t, so dw is unchanged
 * (unless x holds an Inf: then 0 Inf puts a NaN into dw, where the exact sum has an Inf or a
 * NaN from the same x anyway). A 1x1 stride-1 kernel is flat too (Lo = Lp = Hp Wp: no dropped
 * rows). The flat dx needs no col2im either: it is itself a convolution of dy with the kernel
 * flipped, computed with channels in rows so that adding it into dx is a run of contiguous adds:
 *
 *   dx_cl[b, t, c] = sum_{q, o} dy[b, t - q, o] w[o, c, q]
 *                  = sum_{q', o} dy_pad[b Lp + t + q', o] w[o, c, KW - 1 - q']    (q' = KW - 1 - q)
 *   dx_rows (C, B Lp) = w_flip_t (C, KW O) @ (dy_pad windows (B Lp, KW O))^T
 *
 * where dy_pad holds KW - 1 zero rows before each batch element's Lo rows of dy_t (and after the
 * last): the zero-padded dy_t buffer itself, read from KW - 1 rows earlier, in place with row
 * stride O (windows overlap).
 *
 * Memory, in reals (bytes: times sizeof(real)), from the arena:
 *   forward:  x_cl           B Hp Wp C
 *             y_t buffer     (B S + KW - 1) O, S = Hp Wp (flat plan; lead KW - 1 rows)
 *                            or B Ho Wo O (gathered plan)
 *             w_r            O KH KW C
 *             columns_t      R KH KW C, gathered plan only: R = n Ho Wo rows, n = the images of
 *                            a chunk, min(B, ceil(CHUNK_MIN_ROWS / (Ho Wo)))
 *   backward: scratch        KH KW C O (dw_r^T, then w_flip_t), when w or (flat) x needs a grad
 * Backward reuses the forward's buffers: the y_t buffer holds dy_t, x_cl holds dx_cl (dx_rows,
 * flat) once dw is done, the columns_t chunk holds dcolumns_t. For the char-LM's conv1d
 * (B 8, C 128, L 256, O 32, k 3, causal): 264,192 + 66,112 + 12,288 + 12,288 reals = 1.42 MB in
 * float32 (the per-(b, g) path: 2 x 98,304 reals, 0.79 MB); the ViT's 3x3 conv (B 64, C 64,
 * 7x7, O 16): 331,776 + 50,176 + 9,216 + 310,464 + 9,216 reals = 2.84 MB (per-(b, g):
 * 2 x 28,224 reals, 0.23 MB). */

typedef struct ColumnPlan {
    int flat;               /* 1: columns_t is x_cl read in place (see "Flat plan") */
    int padded_h, padded_w; /* Hp, Wp */
    long segment;           /* rows of y_t per batch element: Hp Wp (flat) or Ho Wo */
    long lead;              /* zero rows before y_t in its buffer: KW - 1 (flat) or 0 */
    int chunk_images;       /* gathered: columns_t holds this many images' rows at a time */
    long depth;             /* KH KW C: columns of columns_t */
    long row_stride;        /* lda of columns_t: C (flat) or KH KW C */
} ColumnPlan;

enum { CHUNK_MIN_ROWS = 512 };

static ColumnPlan column_plan(const ConvGeometry *g) {
    ColumnPlan c;
    c.padded_h = (g->out_h - 1) * g->stride + g->kernel_h;
    c.padded_w = (g->out_w - 1) * g->stride + g->kernel_w;
    c.flat = g->stride == 1 && g->kernel_h == 1 && (c.padded_h == 1 || g->kernel_w == 1);
    c.depth = (long)g->kernel_h * g->kernel_w * g->in_channels;
    if (c.flat) {
        c.segment = (long)c.padded_h * c.padded_w;
        c.lead = g->kernel_w - 1;
        c.chunk_images = g->batch;
        c.row_stride = g->in_channels;
    } else {
        c.segment = column_cols(g);
        c.lead = 0;
        c.chunk_images = (int)((CHUNK_MIN_ROWS + c.segment - 1) / c.segment);
        if (c.chunk_images > g->batch) c.chunk_images = g->batch;
        c.row_stride = c.depth;
    }
    return c;
}

/* dst[j dst_stride + i] = src[i src_stride + j] (or += when add) for i, j < TRANSPOSE_TILE.
 *
 * With AVX-512 floats the 16 x 16 tile is transposed in registers, as gemm.c's packing does
 * (see transpose_block there for the derivation): stage h swaps the off-diagonal h x h blocks
 * of every 2h x 2h block, for h = 8, 4, 2, 1; SWAP_LOW_h / SWAP_HIGH_h list the lanes of the two
 * new rows (16 + j is lane j of the second vector). The plain loop below it, which is what
 * doubles and other targets get, compiled to one scalar insert per element with GCC and took
 * a quarter of the conv1d's time in the char-LM. */
#if defined(__AVX512F__) && !defined(CPOOL_DOUBLE)
enum { TRANSPOSE_TILE = 16 };
typedef float tile_row __attribute__((vector_size(64)));
#define SWAP_LOW_8  0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define SWAP_HIGH_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define SWAP_LOW_4  0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define SWAP_HIGH_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define SWAP_LOW_2  0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define SWAP_HIGH_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define SWAP_LOW_1  0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define SWAP_HIGH_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define SWAP_BLOCKS(v, h)                                                                          \
    for (int i = 0; i < 16; i++)                                                                   \
        if (!(i & (h))) {                                                                          \
            tile_row lo = v[i], hi = v[i + (h)];                                                   \
            v[i] = __builtin_shufflevector(lo, hi, SWAP_LOW_##h);                                  \
            v[i + (h)] = __builtin_shufflevector(lo, hi, SWAP_HIGH_##h);                           \
        }
static void transpose_tile(const real *src, long src_stride, real *dst, long dst_stride, int add) {
    tile_row v[16]; /* v[i] = src row i; after the swaps, dst row j */
    for (int i = 0; i < 16; i++) memcpy(&v[i], src + i * src_stride, sizeof(tile_row));
    SWAP_BLOCKS(v, 8)
    SWAP_BLOCKS(v, 4)
    SWAP_BLOCKS(v, 2)
    SWAP_BLOCKS(v, 1)
    for (int j = 0; j < 16; j++) {
        if (add) {
            tile_row old;
            memcpy(&old, dst + j * dst_stride, sizeof(tile_row));
            v[j] += old;
        }
        memcpy(dst + j * dst_stride, &v[j], sizeof(tile_row));
    }
}
#else
enum { TRANSPOSE_TILE = 8 };
static void transpose_tile(const real *src, long src_stride, real *dst, long dst_stride, int add) {
    for (int j = 0; j < TRANSPOSE_TILE; j++) {
        real *to = dst + j * dst_stride;
        if (add)
            for (int i = 0; i < TRANSPOSE_TILE; i++) to[i] += src[i * src_stride + j];
        else
            for (int i = 0; i < TRANSPOSE_TILE; i++) to[i] = src[i * src_stride + j];
    }
}
#endif

/* dst[j dst_stride + i] = src[i src_stride + j] (or += when add) for i < rows, j < cols: whole
 * tiles, then the ragged edges element by element. */
static void transpose(const real *src, long src_stride, long rows, long cols, real *dst,
                      long dst_stride, int add) {
    const long T = TRANSPOSE_TILE, full_rows = rows / T * T, full_cols = cols / T * T;
    for (long i0 = 0; i0 < full_rows; i0 += T)
        for (long j0 = 0; j0 < full_cols; j0 += T)
            transpose_tile(src + i0 * src_stride + j0, src_stride, dst + j0 * dst_stride + i0,
                           dst_stride, add);
    for (long i = 0; i < rows; i++)
        for (long j = i < full_rows ? full_cols : 0; j < cols; j++) {
            real *to = dst + j * dst_stride + i;
            *to = add ? *to + src[i * src_stride + j] : src[i * src_stride + j];
        }
}

/* The x line (b, ih) lands in x_cl line ih + pt, columns pl ..; lines and columns past the
 * extent the windows touch (stride not dividing the input) are never read. */
static int line_in_extent(const ConvGeometry *g, const ColumnPlan *c, int ih) {
    return ih + g->pad_top < c->padded_h;
}
static int line_width_in_extent(const ConvGeometry *g, const ColumnPlan *c) {
    int width = c->padded_w - g->pad_left; /* <= 0: a long left padding covers the extent */
    return width < 0 ? 0 : width < g->in_w ? width : g->in_w;
}
static long cl_offset(const ConvGeometry *g, const ColumnPlan *c, int b, int ih) {
    return (((long)b * c->padded_h + ih + g->pad_top) * c->padded_w + g->pad_left) * g->in_channels;
}

/* Zeros at the positions of x_cl (B, Hp, Wp, C) no x element is copied to (the padding). */
static void zero_padding(const ConvGeometry *g, const ColumnPlan *c, real *x_cl) {
    const long C = g->in_channels, line = c->padded_w * C;
    const int left = g->pad_left < c->padded_w ? g->pad_left : c->padded_w;
    const int right = left + line_width_in_extent(g, c);
    for (int b = 0; b < g->batch; b++)
        for (int hp = 0; hp < c->padded_h; hp++) {
            real *x_line = x_cl + ((long)b * c->padded_h + hp) * line;
            int ih = hp - g->pad_top;
            if (ih < 0 || ih >= g->in_h) {
                memset(x_line, 0, (size_t)line * sizeof(real));
                continue;
            }
            memset(x_line, 0, (size_t)(left * C) * sizeof(real));
            memset(x_line + right * C, 0, (size_t)((c->padded_w - right) * C) * sizeof(real));
        }
}

/* x_cl (B, Hp, Wp, C) <- x (B, C, H, W), zeros in the padding. */
static void to_channels_last(const ConvGeometry *g, const ColumnPlan *c, const real *x,
                             real *x_cl) {
    const long plane = (long)g->in_h * g->in_w;
    zero_padding(g, c, x_cl);
    for (int b = 0; b < g->batch; b++)
        for (int ih = 0; ih < g->in_h; ih++)
            if (line_in_extent(g, c, ih))
                transpose(x + (long)b * g->in_channels * plane + (long)ih * g->in_w, plane,
                          g->in_channels, line_width_in_extent(g, c), x_cl + cl_offset(g, c, b, ih),
                          g->in_channels, 0);
}

/* dx (B, C, H, W) += dx_cl (B, Hp, Wp, C) at the positions x was copied to (padding dropped). */
static void add_from_channels_last(const ConvGeometry *g, const ColumnPlan *c, const real *dx_cl,
                                   real *dx) {
    const long plane = (long)g->in_h * g->in_w;
    for (int b = 0; b < g->batch; b++)
        for (int ih = 0; ih < g->in_h; ih++)
            if (line_in_extent(g, c, ih))
                transpose(dx_cl + cl_offset(g, c, b, ih), g->in_channels,
                          line_width_in_extent(g, c), g->in_channels,
                          dx + (long)b * g->in_channels * plane + (long)ih * g->in_w, plane, 1);
}

/* dx (B, C, H, W) += dx_rows (C, B Hp Wp), the flat plan's dx with channels in rows: each
 * line of x is a contiguous run of a row. */
static void add_from_channel_rows(const ConvGeometry *g, const ColumnPlan *c, const real *dx_rows,
                                  real *dx) {
    const long plane = (long)g->in_h * g->in_w, row_length = g->batch * c->segment;
    const int width = line_width_in_extent(g, c);
    for (int b = 0; b < g->batch; b++)
        for (int ch = 0; ch < g->in_channels; ch++)
            for (int ih = 0; ih < g->in_h; ih++) {
                if (!line_in_extent(g, c, ih)) continue;
                const real *from = dx_rows + ch * row_length + b * c->segment +
                                   (long)(ih + g->pad_top) * c->padded_w + g->pad_left;
                real *to = dx + ((long)b * g->in_channels + ch) * plane + (long)ih * g->in_w;
                for (int iw = 0; iw < width; iw++) to[iw] += from[iw];
            }
}

/* The KW C reals of x_cl that row (b, i, j) of columns_t holds at (p, 0, 0) onwards. */
static long window_offset(const ConvGeometry *g, const ColumnPlan *c, int b, int i, int j, int p) {
    return (((long)b * c->padded_h + (long)i * g->stride + p) * c->padded_w + (long)j * g->stride) *
           g->in_channels;
}

/* columns_t (B Ho Wo, KH KW C) <- x_cl (gathered plan): KH copies of KW C reals per row. */
static void gather_columns(const ConvGeometry *g, const ColumnPlan *c, const real *x_cl, int first,
                           int count, real *columns_t) {
    const long span = (long)g->kernel_w * g->in_channels;
    real *row = columns_t;
    for (int b = first; b < first + count; b++)
        for (int i = 0; i < g->out_h; i++)
            for (int j = 0; j < g->out_w; j++, row += c->depth)
                for (int p = 0; p < g->kernel_h; p++)
                    memcpy(row + p * span, x_cl + window_offset(g, c, b, i, j, p),
                           (size_t)span * sizeof(real));
}

/* dx_cl += col2im(dcolumns_t): the transpose of gather_columns, rows added in order. */
static void scatter_add_columns(const ConvGeometry *g, const ColumnPlan *c, const real *dcolumns_t,
                                int first, int count, real *dx_cl) {
    const long span = (long)g->kernel_w * g->in_channels;
    const real *row = dcolumns_t;
    for (int b = first; b < first + count; b++)
        for (int i = 0; i < g->out_h; i++)
            for (int j = 0; j < g->out_w; j++, row += c->depth)
                for (int p = 0; p < g->kernel_h; p++) {
                    real *window = dx_cl + window_offset(g, c, b, i, j, p);
                    const real *from = row + p * span;
                    for (long n = 0; n < span; n++) window[n] += from[n];
                }
}

/* w_r[o, (p, q, c)] = w[o, c, p, q]: the depth order of columns_t. */
static void reorder_weights(const ConvGeometry *g, const real *w, real *w_r) {
    const int C = g->in_channels, taps = g->kernel_h * g->kernel_w;
    for (int o = 0; o < g->out_channels; o++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < taps; t++)
                w_r[((long)o * taps + t) * C + c] = w[((long)o * C + c) * taps + t];
}

/* dw[o, c, p, q] += dw_r_t[(p, q, c), o]: reorder_weights backward, from dw_r transposed. */
static void add_reordered_grads(const ConvGeometry *g, const real *dw_r_t, real *dw) {
    const int C = g->in_channels, O = g->out_channels, taps = g->kernel_h * g->kernel_w;
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < taps; t++)
                dw[((long)o * C + c) * taps + t] += dw_r_t[((long)t * C + c) * O + o];
}

/* w_flip_t[c, (q', o)] = w[o, c, KW - 1 - q'] (flat plan, KH = 1). */
static void flip_weights(const ConvGeometry *g, const real *w, real *w_flip_t) {
    const int C = g->in_channels, O = g->out_channels, K = g->kernel_w;
    for (int c = 0; c < C; c++)
        for (int q = 0; q < K; q++)
            for (int o = 0; o < O; o++)
                w_flip_t[((long)c * K + (K - 1 - q)) * O + o] = w[((long)o * C + c) * K + q];
}

typedef struct BatchedSaved {
    ConvGeometry geometry;
    ColumnPlan plan;
    real *x_cl;      /* (B, Hp, Wp, C) */
    real *columns_t; /* (M, KH KW C), gathered plan only */
    real *y_buffer;  /* lead + M rows of O (+ KW - 1 more rows, flat): y_t, then dy_t */
    real *w_r;       /* (O, KH KW C) */
} BatchedSaved;

static long y_buffer_rows(const ConvGeometry *g, const ColumnPlan *c) {
    return g->batch * c->segment + c->lead;
}

/* Chunks: images [first, first + count) of the batch, whose rows of columns_t and y_t are rows
 * first S .. of y_t, count S - lead of them (the flat plan is one chunk, without the dropped
 * rows of its last image). */
static int chunk_count(const ConvGeometry *g, const ColumnPlan *c, int first) {
    return first + c->chunk_images < g->batch ? c->chunk_images : g->batch - first;
}
static int chunk_rows(const ColumnPlan *c, int count) {
    return (int)(count * c->segment - c->lead);
}

/* The chunk's rows of columns_t: x_cl in place, or gathered into the columns_t buffer. */
static const real *chunk_columns(const BatchedSaved *s, int first, int count) {
    if (s->plan.flat) return s->x_cl;
    gather_columns(&s->geometry, &s->plan, s->x_cl, first, count, s->columns_t);
    return s->columns_t;
}

static void batched_forward(const BatchedSaved *s, const real *x, const real *w, const real *bias,
                            real *y) {
    const ConvGeometry *g = &s->geometry;
    const ColumnPlan *c = &s->plan;
    const int O = g->out_channels;
    const long plane = column_cols(g);
    real *y_t = s->y_buffer + c->lead * O;
    to_channels_last(g, c, x, s->x_cl);
    reorder_weights(g, w, s->w_r);
    for (int first = 0; first < g->batch; first += c->chunk_images) {
        /* y_t (M, O) = columns_t (M, KH KW C) @ w_r^T, a chunk of rows at a time */
        int count = chunk_count(g, c, first);
        gemm(0, 1, chunk_rows(c, count), O, (int)c->depth, chunk_columns(s, first, count),
             (int)c->row_stride, s->w_r, (int)c->depth, y_t + first * c->segment * O, O, 0);
    }
    for (int b = 0; b < g->batch; b++) { /* y[b, o, l] = y_t[b S + l, o] + bias[o] */
        real *y_b = y + (long)b * O * plane;
        transpose(y_t + b * c->segment * O, O, plane, O, y_b, plane, 0);
        if (bias)
            for (int o = 0; o < O; o++)
                for (long n = 0; n < plane; n++) y_b[o * plane + n] += bias[o];
    }
}

static void batched_backward(Tape *tape, TapeRecord *record) {
    const BatchedSaved *s = record->saved;
    const ConvGeometry *g = &s->geometry;
    const ColumnPlan *c = &s->plan;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w);
    real *dbias = record->n_inputs == 3 ? tape_grad(tape, record->inputs[2]) : NULL;
    const int O = g->out_channels, C = g->in_channels;
    const long plane = column_cols(g);
    real *dy_t = s->y_buffer + c->lead * O;

    /* dy_t[b S + l, o] = dy[b, o, l], zero in the lead rows and the dropped rows */
    memset(s->y_buffer, 0, (size_t)(y_buffer_rows(g, c) * O) * sizeof(real));
    for (int b = 0; b < g->batch; b++)
        transpose(y->grad + (long)b * O * plane, plane, O, plane, dy_t + b * c->segment * O, O, 0);
    real *scratch = (dw || (dx && c->flat))
                        ? arena_alloc(&tape->arena, (size_t)(O * c->depth) * sizeof(real))
                        : NULL;
    if (dw && g->batch > 0) { /* dw_r^T (KH KW C, O) = columns_t^T @ dy_t, chunk by chunk */
        for (int first = 0; first < g->batch; first += c->chunk_images) {
            int count = chunk_count(g, c, first);
            gemm(1, 0, (int)c->depth, O, chunk_rows(c, count), chunk_columns(s, first, count),
                 (int)c->row_stride, dy_t + first * c->segment * O, O, scratch, O, first > 0);
        }
        add_reordered_grads(g, scratch, dw);
    }
    if (dx && c->flat) { /* dx_rows (C, B Lp) = w_flip_t (C, KW O) @ dy_pad windows^T */
        const int length = (int)(g->batch * c->segment);
        flip_weights(g, w->data, scratch);
        gemm(0, 1, C, length, g->kernel_w * O, scratch, g->kernel_w * O, s->y_buffer, O, s->x_cl,
             length, 0);
        add_from_channel_rows(g, c, s->x_cl, dx);
    }
    if (dx && !c->flat) { /* dcolumns_t = dy_t @ w_r; dx_cl = col2im(dcolumns_t), by chunks */
        memset(s->x_cl, 0,
               (size_t)g->batch * c->padded_h * c->padded_w * g->in_channels * sizeof(real));
        for (int first = 0; first < g->batch; first += c->chunk_images) {
            int count = chunk_count(g, c, first);
            gemm(0, 0, chunk_rows(c, count), (int)c->depth, O, dy_t + first * c->segment * O, O,
                 s->w_r, (int)c->depth, s->columns_t, (int)c->depth, 0);
            scatter_add_columns(g, c, s->columns_t, first, count, s->x_cl);
        }
        add_from_channels_last(g, c, s->x_cl, dx);
    }
    if (dbias) conv_bias_backward(g, y->grad, dbias);
}

/* The batched path's buffers for g, from the arena (sizes: see "Memory" above). */
static BatchedSaved batched_buffers(Tape *tape, const ConvGeometry *g) {
    BatchedSaved s = {.geometry = *g, .plan = column_plan(g)};
    const ColumnPlan *c = &s.plan;
    s.x_cl = arena_alloc(&tape->arena, (size_t)g->batch * c->padded_h * c->padded_w *
                                           g->in_channels * sizeof(real));
    if (!c->flat)
        s.columns_t = arena_alloc(
            &tape->arena, (size_t)(chunk_rows(c, c->chunk_images) * c->depth) * sizeof(real));
    s.y_buffer =
        arena_alloc(&tape->arena, (size_t)(y_buffer_rows(g, c) * g->out_channels) * sizeof(real));
    s.w_r = arena_alloc(&tape->arena, (size_t)(g->out_channels * c->depth) * sizeof(real));
    return s;
}

/* When the batched path pays (measured on one thread, forward + backward):
 *   - it puts the output channels in the columns of its products, where gemm's tile is 16 or
 *     32 wide: below 8 channels most of each tile is padding, and the per-(b, g) product (Ho Wo
 *     columns) is faster: 0.05 against 0.12 ms for the char-LM's conv1d 32 -> 2, 1x1;
 *   - its layout copies (x to x_cl, y_t to y, dy to dy_t, dx_cl to dx) cost O(inputs +
 *     outputs), its products 2 KH KW C flops per output each: with KH KW C = 16 (the ViT's patch
 *     conv, 4x4 on one channel) the copies cost as much as the products and the per-(b, g) path
 *     took 0.52 against 0.65 ms. */
static int takes_batched_path(const ConvGeometry *g) {
    return g->groups == 1 && g->out_channels >= 8 && column_rows(g) >= 64;
}

/* Runs the convolution described by g and records it; y has shape (B, O, out_shape...). */
static Tensor *conv_run(Tape *tape, const ConvGeometry *g, Tensor *x, Tensor *w, Tensor *bias,
                        int out_ndim, const int *out_shape, const char *name) {
    Tensor *y = tape_tensor(tape, out_ndim, out_shape);
    Tensor *inputs[3] = {x, w, bias};
    const real *bias_data = bias ? bias->data : NULL;
    if (takes_batched_path(g)) {
        BatchedSaved batched = batched_buffers(tape, g);
        batched_forward(&batched, x->data, w->data, bias_data, y->data);
        TapeRecord *record = tape_record(tape, name, batched_backward, y, bias ? 3 : 2, inputs);
        if (record) {
            BatchedSaved *saved = tape_save(tape, sizeof *saved);
            *saved = batched;
            record->saved = saved;
        }
        return y;
    }
    real *columns = NULL;
    if (!is_pointwise(g))
        columns = arena_alloc(&tape->arena, column_rows(g) * column_cols(g) * sizeof(real));
    conv_forward(g, x->data, w->data, bias_data, columns, y->data);
    TapeRecord *record = tape_record(tape, name, conv_backward, y, bias ? 3 : 2, inputs);
    if (record) {
        ConvSaved *saved = tape_save(tape, sizeof *saved);
        *saved = (ConvSaved){.geometry = *g, .columns = columns};
        record->saved = saved;
    }
    return y;
}

/* ---- Argument checks --------------------------------------------------------------------- */

/* Ranks, non-empty w, stride, groups, channel counts and bias, for x of rank 2 + spatial. */
static void check_conv_args(const char *name, const Tensor *x, const Tensor *w, const Tensor *bias,
                            int spatial, int stride, int groups) {
    char xs[64], ws[64], bs[64];
    const char *x_form = spatial == 1 ? "(B, C, L)" : "(B, C, H, W)";
    const char *w_form = spatial == 1 ? "(O, C/groups, K)" : "(O, C/groups, KH, KW)";
    if (x->ndim != 2 + spatial)
        cpool_fail("%s: x must be %s, got shape %s", name, x_form, TENSOR_SHAPE_STR(x, xs));
    int w_ok = w->ndim == 2 + spatial;
    for (int d = 0; d < w->ndim && w_ok; d++) w_ok = w->shape[d] >= 1;
    if (!w_ok)
        cpool_fail("%s: w must be %s with every size >= 1, got shape %s", name, w_form,
                   TENSOR_SHAPE_STR(w, ws));
    if (stride < 1) cpool_fail("%s: stride must be >= 1, got %d", name, stride);
    if (groups < 1) cpool_fail("%s: groups must be >= 1, got %d", name, groups);
    if (x->shape[1] % groups != 0)
        cpool_fail("%s: %d input channels of x %s are not divisible by groups = %d", name,
                   x->shape[1], TENSOR_SHAPE_STR(x, xs), groups);
    if (w->shape[0] % groups != 0)
        cpool_fail("%s: %d output channels of w %s are not divisible by groups = %d", name,
                   w->shape[0], TENSOR_SHAPE_STR(w, ws), groups);
    if (w->shape[1] != x->shape[1] / groups)
        cpool_fail("%s: w %s has %d input channels per group, x %s with groups = %d needs %d", name,
                   TENSOR_SHAPE_STR(w, ws), w->shape[1], TENSOR_SHAPE_STR(x, xs), groups,
                   x->shape[1] / groups);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        cpool_fail("%s: bias must be (%d) for w %s, got shape %s", name, w->shape[0],
                   TENSOR_SHAPE_STR(w, ws), TENSOR_SHAPE_STR(bias, bs));
}

static ConvGeometry geometry_of(const Tensor *x, const Tensor *w, int groups) {
    return (ConvGeometry){.batch = x->shape[0],
                          .in_channels = x->shape[1],
                          .out_channels = w->shape[0],
                          .groups = groups};
}

/* ---- conv1d, conv2d ---------------------------------------------------------------------- */

Tensor *op_conv1d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int pad_left,
                  int pad_right, int groups) {
    check_conv_args("op_conv1d", x, w, bias, 1, stride, groups);
    if (pad_left < 0 || pad_right < 0)
        cpool_fail("op_conv1d: padding must be >= 0, got pad_left = %d, pad_right = %d", pad_left,
                   pad_right);
    int length = x->shape[2], kernel = w->shape[2], padded = length + pad_left + pad_right;
    if (kernel > padded) {
        char xs[64], ws[64];
        cpool_fail("op_conv1d: kernel %d of w %s is larger than the padded input %d (x %s, "
                   "padding %d + %d)",
                   kernel, TENSOR_SHAPE_STR(w, ws), padded, TENSOR_SHAPE_STR(x, xs), pad_left,
                   pad_right);
    }
    ConvGeometry g = geometry_of(x, w, groups);
    g.in_h = g.kernel_h = g.out_h = 1;
    g.in_w = length;
    g.kernel_w = kernel;
    g.stride = stride;
    g.pad_left = pad_left;
    g.out_w = (padded - kernel) / stride + 1;
    int out_shape[3] = {g.batch, g.out_channels, g.out_w};
    return conv_run(tape, &g, x, w, bias, 3, out_shape, "conv1d");
}

Tensor *op_conv2d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int padding,
                  int groups) {
    check_conv_args("op_conv2d", x, w, bias, 2, stride, groups);
    if (padding < 0) cpool_fail("op_conv2d: padding must be >= 0, got %d", padding);
    int padded_h = x->shape[2] + 2 * padding, padded_w = x->shape[3] + 2 * padding;
    if (w->shape[2] > padded_h || w->shape[3] > padded_w) {
        char xs[64], ws[64];
        cpool_fail("op_conv2d: kernel %dx%d of w %s is larger than the padded input %dx%d (x %s, "
                   "padding %d)",
                   w->shape[2], w->shape[3], TENSOR_SHAPE_STR(w, ws), padded_h, padded_w,
                   TENSOR_SHAPE_STR(x, xs), padding);
    }
    ConvGeometry g = geometry_of(x, w, groups);
    g.in_h = x->shape[2];
    g.in_w = x->shape[3];
    g.kernel_h = w->shape[2];
    g.kernel_w = w->shape[3];
    g.stride = stride;
    g.pad_top = g.pad_left = padding;
    g.out_h = (padded_h - g.kernel_h) / stride + 1;
    g.out_w = (padded_w - g.kernel_w) / stride + 1;
    int out_shape[4] = {g.batch, g.out_channels, g.out_h, g.out_w};
    return conv_run(tape, &g, x, w, bias, 4, out_shape, "conv2d");
}

/* ---- Pooling ------------------------------------------------------------------------------
 * x (B, C, H, W) -> y (B, C, Ho, Wo), Ho = (H - k) / s + 1 (floor: torch's ceil_mode = False),
 * no padding, each (b, c) plane on its own. Window (i, j) covers rows i s .. i s + k - 1 and
 * columns j s .. j s + k - 1. */

typedef struct PoolSaved {
    int kernel, stride;
    int *argmax; /* maxpool: per output element, the offset ih W + iw of its max in the plane */
} PoolSaved;

/* Rank 4, kernel and stride >= 1, window fits; returns the output shape. */
static void pool_shape(const char *name, const Tensor *x, int kernel, int stride, int *shape) {
    char xs[64];
    if (x->ndim != 4)
        cpool_fail("%s: x must be (B, C, H, W), got shape %s", name, TENSOR_SHAPE_STR(x, xs));
    if (kernel < 1 || stride < 1)
        cpool_fail("%s: kernel and stride must be >= 1, got kernel %d, stride %d", name, kernel,
                   stride);
    if (kernel > x->shape[2] || kernel > x->shape[3])
        cpool_fail("%s: kernel %d is larger than the input %dx%d of x %s", name, kernel,
                   x->shape[2], x->shape[3], TENSOR_SHAPE_STR(x, xs));
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = (x->shape[2] - kernel) / stride + 1;
    shape[3] = (x->shape[3] - kernel) / stride + 1;
}

static PoolSaved *pool_save(Tape *tape, TapeRecord *record, int kernel, int stride, int *argmax) {
    if (!record) return NULL;
    PoolSaved *saved = tape_save(tape, sizeof *saved);
    *saved = (PoolSaved){.kernel = kernel, .stride = stride, .argmax = argmax};
    record->saved = saved;
    return saved;
}

/* avgpool: y[i, j] = (1 / k^2) sum_{p, q < k} x[i s + p, j s + q], so every x element in the
 * window gets dx[i s + p, j s + q] += dy[i, j] / k^2. */
static void avgpool_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const PoolSaved *saved = record->saved;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    const int k = saved->kernel, s = saved->stride, H = x->shape[2], W = x->shape[3];
    const int out_h = y->shape[2], out_w = y->shape[3];
    const real inv_area = (real)(1.0 / ((double)k * k));
    for (long plane = 0; plane < (long)x->shape[0] * x->shape[1]; plane++) {
        real *dx_plane = dx + plane * H * W;
        const real *dy_plane = y->grad + plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                real share = dy_plane[i * out_w + j] * inv_area;
                for (int p = 0; p < k; p++) {
                    real *window_row = dx_plane + (long)(i * s + p) * W + (long)j * s;
                    for (int q = 0; q < k; q++) window_row[q] += share;
                }
            }
    }
}

Tensor *op_avgpool2d(Tape *tape, Tensor *x, int kernel, int stride) {
    int shape[4];
    pool_shape("op_avgpool2d", x, kernel, stride, shape);
    Tensor *y = tape_tensor(tape, 4, shape);
    const int H = x->shape[2], W = x->shape[3], out_h = shape[2], out_w = shape[3];
    const double inv_area = 1.0 / ((double)kernel * kernel);
    for (long plane = 0; plane < (long)shape[0] * shape[1]; plane++) {
        const real *x_plane = x->data + plane * H * W;
        real *y_plane = y->data + plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                double sum = 0; /* in double, as torch's CPU kernel accumulates */
                for (int p = 0; p < kernel; p++) {
                    const real *window_row =
                        x_plane + (long)(i * stride + p) * W + (long)j * stride;
                    for (int q = 0; q < kernel; q++) sum += window_row[q];
                }
                y_plane[i * out_w + j] = (real)(sum * inv_area);
            }
    }
    pool_save(tape, tape_record(tape, "avgpool2d", avgpool_backward, y, 1, &x), kernel, stride,
              NULL);
    return y;
}

/* maxpool: y[i, j] = x[m] where m is the window's maximum; the gradient goes to that one element,
 * dx[m] += dy[i, j]. Ties go to the FIRST maximum in row-major scan order (a later element must
 * be strictly greater to take over), and a NaN takes over as in torch, so NaN propagates. */
static void maxpool_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const PoolSaved *saved = record->saved;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    const long plane_size = (long)x->shape[2] * x->shape[3];
    const long out_plane = (long)y->shape[2] * y->shape[3];
    for (long plane = 0; plane < (long)x->shape[0] * x->shape[1]; plane++)
        for (long n = 0; n < out_plane; n++)
            dx[plane * plane_size + saved->argmax[plane * out_plane + n]] +=
                y->grad[plane * out_plane + n];
}

/* The offset (in the plane) of the window's first maximum, and that maximum. */
static int window_argmax(const real *x_plane, int W, int top, int left, int kernel, real *max) {
    int best = top * W + left;
    real best_value = -INFINITY;
    for (int p = 0; p < kernel; p++)
        for (int q = 0; q < kernel; q++) {
            int offset = (top + p) * W + left + q;
            real value = x_plane[offset];
            if (value > best_value || isnan(value)) {
                best_value = value;
                best = offset;
            }
        }
    *max = best_value;
    return best;
}

Tensor *op_maxpool2d(Tape *tape, Tensor *x, int kernel, int stride) {
    int shape[4];
    pool_shape("op_maxpool2d", x, kernel, stride, shape);
    Tensor *y = tape_tensor(tape, 4, shape);
    int *argmax = arena_alloc(&tape->arena, (size_t)y->size * sizeof(int));
    const int H = x->shape[2], W = x->shape[3], out_h = shape[2], out_w = shape[3];
    for (long plane = 0; plane < (long)shape[0] * shape[1]; plane++) {
        const real *x_plane = x->data + plane * H * W;
        long first = plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                long n = first + (long)i * out_w + j;
                argmax[n] = window_argmax(x_plane, W, i * stride, j * stride, kernel, &y->data[n]);
            }
    }
    pool_save(tape, tape_record(tape, "maxpool2d", maxpool_backward, y, 1, &x), kernel, stride,
              argmax);
    return y;
}
