/* conv_batched.c - the batched, channels-last path of conv1d and conv2d (groups == 1), which
 * ops_conv.c takes when conv_takes_batched_path says so; the convolution itself is defined there.
 *
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
#include <string.h>

#include "conv_batched.h"
#include "gemm.h"
#include "simd.h"
#include "util.h"

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

/* dst[j dst_stride + i] = src[i src_stride + j] (or += when add) for i, j < TRANSPOSE_TILE:
 * simd.h's register transpose where there is one (AVX-512 floats), else the plain loop, which
 * GCC compiles to one scalar insert per element (it took a quarter of the conv1d's time in the
 * char-LM before the register version). */
#if SIMD_TRANSPOSE_16
enum { TRANSPOSE_TILE = 16 };
static void transpose_tile(const real *src, long src_stride, real *dst, long dst_stride, int add) {
    transpose_16x16(src, src_stride, dst, dst_stride, add);
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
int conv_takes_batched_path(const ConvGeometry *g) {
    return g->groups == 1 && g->out_channels >= 8 && column_rows(g) >= 64;
}

void conv_batched_run(Tape *tape, const ConvGeometry *g, Tensor *x, Tensor *w, Tensor *bias,
                      Tensor *y, const char *name) {
    Tensor *inputs[3] = {x, w, bias};
    BatchedSaved batched = batched_buffers(tape, g);
    batched_forward(&batched, x->data, w->data, bias ? bias->data : NULL, y->data);
    TapeRecord *record = tape_record(tape, name, batched_backward, y, bias ? 3 : 2, inputs);
    if (record) {
        BatchedSaved *saved = tape_save(tape, sizeof *saved);
        *saved = batched;
        record->saved = saved;
    }
}
