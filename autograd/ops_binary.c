/* ops_binary.c - elementwise a (op) b with NumPy broadcasting: add, sub, mul, div.
 *
 * Broadcasting. Shapes are aligned at the right; each pair of dimensions must be equal or one of
 * them 1 (a missing leading dimension counts as 1), and the output takes the larger. An input of
 * size 1 along an output dimension is broadcast: every position along that dimension reads its
 * one element. A stride of 0 says exactly that:
 *
 *     a (3, 1) + b (4)  ->  y (3, 4)      a strides (1, 0), b strides (0, 1)
 *     y[i, j] = a[1 i + 0 j] + b[0 i + 1 j]
 *
 * Backward. Output element y_i = f(a_ia, b_ib) adds dy_i * df/da to da_ia and dy_i * df/db to
 * db_ib. A broadcast element is read by many outputs and receives all their contributions, so
 * the backward sums dy (times the local derivative) over the input's broadcast dimensions:
 *
 *     x (B, N, D) + bias (D):   dx_bnd += dy_bnd,   dbias_d += sum_{b,n} dy_bnd
 *
 * Such sums (over B N terms here) accumulate in double, then are added into the gradient.
 *
 * The walk. Output dimensions of size 1 are dropped and neighbouring dimensions that both inputs
 * step through alike are merged, so the common cases become short loops over contiguous rows:
 *     same shape                 one row of y->size          (the plain loop)
 *     x (B, N, D) + bias (D)     B N rows of D, bias strides (0, 1): the same D values per row
 *     x (B, N, D) * s (B, N, 1)  B N rows of D, s strides (1, 0): one value of s per row
 *     x (B, N, D) + c ()         one row, c stride 0
 * and an odometer over the remaining (outer) dimensions finds where each row starts. */

#include "ops.h"
#include "util.h"

/* Inlined into each op, so that the switch on the op folds away and the row loops vectorise. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

typedef enum { ADD, SUB, MUL, DIV } BinaryOp;

static const char *const OP_NAME[] = {"add", "sub", "mul", "div"};

/* --- The table: y = f(a, b) and the contributions dy * df/da, dy * df/db ------------------- */

static ALWAYS_INLINE real binary_value(BinaryOp op, real a, real b) {
    switch (op) {
    case ADD:
        return a + b;
    case SUB:
        return a - b;
    case MUL:
        return a * b;
    case DIV:
        return a / b;
    }
    return 0;
}

/* da += dy * df/da:   add 1,  sub 1,  mul b,  div 1 / b. */
static ALWAYS_INLINE real gradient_a(BinaryOp op, real dy, real b) {
    switch (op) {
    case ADD:
        return dy;
    case SUB:
        return dy;
    case MUL:
        return dy * b;
    case DIV:
        return dy / b;
    }
    return 0;
}

/* db += dy * df/db:   add 1,  sub -1,  mul a,  div -a / b^2 = -(y / b) (PyTorch's form; it
 * does not overflow where b^2 would). */
static ALWAYS_INLINE real gradient_b(BinaryOp op, real dy, real a, real b, real y) {
    switch (op) {
    case ADD:
        return dy;
    case SUB:
        return -dy;
    case MUL:
        return dy * a;
    case DIV:
        return -dy * (y / b);
    }
    return 0;
}

/* --- Broadcasting -------------------------------------------------------------------------- */

/* The broadcast shape of a and b into shape; returns its ndim or fails naming the op. */
static int broadcast_shape(BinaryOp op, const Tensor *a, const Tensor *b, int *shape) {
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < ndim; d++) {
        int from_end = ndim - 1 - d;
        int size_a = from_end < a->ndim ? a->shape[a->ndim - 1 - from_end] : 1;
        int size_b = from_end < b->ndim ? b->shape[b->ndim - 1 - from_end] : 1;
        if (size_a != size_b && size_a != 1 && size_b != 1) {
            char shape_a[64], shape_b[64];
            cpool_fail("op_%s: shapes %s and %s do not broadcast", OP_NAME[op],
                       TENSOR_SHAPE_STR(a, shape_a), TENSOR_SHAPE_STR(b, shape_b));
        }
        shape[d] = size_a == 1 ? size_b : size_a;
    }
    return ndim;
}

/* How to walk y in rows: the merged output dimensions and, per input, the stride (in elements)
 * of one step along each; 0 where that input is broadcast. The last dimension is the row. */
typedef struct Walk {
    int ndim;                        /* >= 1 */
    long shape[TENSOR_MAX_DIMS];     /* merged output dimensions, none of size 1 (but a lone 1) */
    long stride[2][TENSOR_MAX_DIMS]; /* [0] for a, [1] for b */
} Walk;

/* The stride of t along output dimension d of an ndim-dimensional output (right-aligned). */
static long input_stride(const Tensor *t, int ndim, int d) {
    int k = d - (ndim - t->ndim); /* t's own dimension, if it has one */
    if (k < 0 || t->shape[k] == 1) return 0;
    long stride = 1;
    for (int j = k + 1; j < t->ndim; j++) stride *= t->shape[j];
    return stride;
}

static Walk plan_walk(const Tensor *a, const Tensor *b, const Tensor *y) {
    Walk w = {.ndim = 0};
    for (int d = 0; d < y->ndim; d++) {
        if (y->shape[d] == 1) continue;
        long stride_a = input_stride(a, y->ndim, d), stride_b = input_stride(b, y->ndim, d);
        int last = w.ndim - 1;
        /* Merge into the previous dimension when one step of it is shape[d] steps of this one
         * for both inputs (0 == 0 for a dimension broadcast in both). */
        if (last >= 0 && w.stride[0][last] == stride_a * y->shape[d] &&
            w.stride[1][last] == stride_b * y->shape[d]) {
            w.shape[last] *= y->shape[d];
            w.stride[0][last] = stride_a;
            w.stride[1][last] = stride_b;
            continue;
        }
        w.shape[w.ndim] = y->shape[d];
        w.stride[0][w.ndim] = stride_a;
        w.stride[1][w.ndim] = stride_b;
        w.ndim++;
    }
    if (w.ndim == 0) w = (Walk){.ndim = 1, .shape = {1}}; /* one element: y = f(a[0], b[0]) */
    return w;
}

/* The odometer over the outer dimensions (all but the row): where a's and b's rows start. */
typedef struct Cursor {
    long index[TENSOR_MAX_DIMS];
    long offset[2];
} Cursor;

static void next_row(Cursor *c, const Walk *w) {
    for (int d = w->ndim - 2; d >= 0; d--) {
        c->offset[0] += w->stride[0][d];
        c->offset[1] += w->stride[1][d];
        if (++c->index[d] < w->shape[d]) return;
        c->offset[0] -= w->stride[0][d] * w->shape[d];
        c->offset[1] -= w->stride[1][d] * w->shape[d];
        c->index[d] = 0;
    }
}

/* --- Forward and backward, shared by the four ops ----------------------------------------- */

/* y (broadcast shape) = f(a, b). */
static ALWAYS_INLINE void forward(BinaryOp op, const Tensor *a, const Tensor *b, Tensor *y) {
    const real *pa = a->data, *pb = b->data;
    real *py = y->data;
    if (a->size == y->size && b->size == y->size) { /* same shape (up to leading 1s) */
        for (long i = 0; i < y->size; i++) py[i] = binary_value(op, pa[i], pb[i]);
        return;
    }
    if (y->size == 0) return;
    Walk w = plan_walk(a, b, y);
    long n = w.shape[w.ndim - 1], step_a = w.stride[0][w.ndim - 1],
         step_b = w.stride[1][w.ndim - 1];
    Cursor c = {{0}, {0, 0}};
    for (long row = 0; row < y->size / n; row++, next_row(&c, &w)) {
        const real *ra = pa + c.offset[0], *rb = pb + c.offset[1];
        real *ry = py + row * n;
        for (long j = 0; j < n; j++) ry[j] = binary_value(op, ra[j * step_a], rb[j * step_b]);
    }
}

/* dy * df/d(input `side`) for one element: side 0 is a, side 1 is b. */
static ALWAYS_INLINE real contribution(BinaryOp op, int side, real dy, real a, real b, real y) {
    return side == 0 ? gradient_a(op, dy, b) : gradient_b(op, dy, a, b, y);
}

/* The input of side `side` is as large as y: its element i is y's element i, so each gradient
 * element receives exactly one contribution: stored into a fresh buffer (overwrite), else added. */
static ALWAYS_INLINE void backward_full(BinaryOp op, int side, const Walk *w, const Tensor *a,
                                        const Tensor *b, const Tensor *y, real *dx, int overwrite) {
    long n = w->shape[w->ndim - 1], step_a = w->stride[0][w->ndim - 1],
         step_b = w->stride[1][w->ndim - 1];
    Cursor c = {{0}, {0, 0}};
    for (long row = 0; row < y->size / n; row++, next_row(&c, w)) {
        const real *ra = a->data + c.offset[0], *rb = b->data + c.offset[1];
        const real *ry = y->data + row * n, *rdy = y->grad + row * n;
        real *rdx = dx + row * n;
        for (long j = 0; j < n; j++) {
            real g = contribution(op, side, rdy[j], ra[j * step_a], rb[j * step_b], ry[j]);
            rdx[j] = overwrite ? g : rdx[j] + g;
        }
    }
}

/* The input of side `side` is broadcast: sum the contributions over its broadcast dimensions
 * in a double buffer of its size (in the arena), then add the sums into dx. */
static ALWAYS_INLINE void backward_reduce(Tape *tape, BinaryOp op, int side, const Walk *w,
                                          const Tensor *a, const Tensor *b, const Tensor *y,
                                          real *dx, int overwrite) {
    long size = side == 0 ? a->size : b->size;
    double *sum = tape_save(tape, (size_t)size * sizeof(double)); /* zeroed */
    long n = w->shape[w->ndim - 1], step_a = w->stride[0][w->ndim - 1],
         step_b = w->stride[1][w->ndim - 1], step_x = side == 0 ? step_a : step_b;
    Cursor c = {{0}, {0, 0}};
    for (long row = 0; row < y->size / n; row++, next_row(&c, w)) {
        const real *ra = a->data + c.offset[0], *rb = b->data + c.offset[1];
        const real *ry = y->data + row * n, *rdy = y->grad + row * n;
        double *rsum = sum + c.offset[side];
        if (step_x == 0) { /* the whole row reduces into one element */
            double row_sum = 0;
            for (long j = 0; j < n; j++)
                row_sum += contribution(op, side, rdy[j], ra[j * step_a], rb[j * step_b], ry[j]);
            rsum[0] += row_sum;
            continue;
        }
        for (long j = 0; j < n; j++)
            rsum[j] += contribution(op, side, rdy[j], ra[j * step_a], rb[j * step_b], ry[j]);
    }
    for (long k = 0; k < size; k++) dx[k] = overwrite ? (real)sum[k] : dx[k] + (real)sum[k];
}

/* Whether `input` can take y's gradient buffer as its own, instead of a new buffer holding a
 * copy of it. Its contribution must be dy itself, element for element (add, and sub's a: as
 * large as y, so element i of the input is element i of y), and the input must have no gradient
 * yet (a fresh one would be exactly that copy). y's gradient is complete when this runs (every
 * op reading y comes later on the tape and has run its backward) and nothing reads it afterwards,
 * so the input may go on to add its other contributions into the same memory. Only one input
 * may take it: two would share one buffer. (x + x: a takes it, then b adds dy into it, 2 dy.) */
static int takes_output_gradient(BinaryOp op, int side, Tensor *input, const Tensor *y) {
    int passes_dy = op == ADD || (op == SUB && side == 0);
    if (!passes_dy || !input->requires_grad || input->grad || input->size != y->size) return 0;
    input->grad = y->grad;
    return 1;
}

static ALWAYS_INLINE void backward(Tape *tape, BinaryOp op, TapeRecord *record) {
    Tensor *a = record->inputs[0], *b = record->inputs[1], *y = record->output;
    /* Each path below produces all of da (and of db) in one pass, so a fresh buffer is stored
     * into instead of being zeroed and added to. (x op x: db then finds da's part and adds.) An
     * input that took y's gradient (takes_output_gradient) needs no pass at all. */
    int overwrite_a = 0, overwrite_b = 0;
    real *da = NULL, *db = NULL;
    int a_took = takes_output_gradient(op, 0, a, y);
    if (!a_took) da = tape_grad_write(tape, a, &overwrite_a);
    if (a_took || !takes_output_gradient(op, 1, b, y)) db = tape_grad_write(tape, b, &overwrite_b);
    if (a->size == y->size && b->size == y->size) { /* same shape: the plain loops */
        for (long i = 0; da && i < y->size; i++) {
            real g = gradient_a(op, y->grad[i], b->data[i]);
            da[i] = overwrite_a ? g : da[i] + g;
        }
        for (long i = 0; db && i < y->size; i++) {
            real g = gradient_b(op, y->grad[i], a->data[i], b->data[i], y->data[i]);
            db[i] = overwrite_b ? g : db[i] + g;
        }
        return;
    }
    if (y->size == 0) return;
    Walk w = plan_walk(a, b, y);
    if (da && a->size == y->size) backward_full(op, 0, &w, a, b, y, da, overwrite_a);
    if (da && a->size != y->size) backward_reduce(tape, op, 0, &w, a, b, y, da, overwrite_a);
    if (db && b->size == y->size) backward_full(op, 1, &w, a, b, y, db, overwrite_b);
    if (db && b->size != y->size) backward_reduce(tape, op, 1, &w, a, b, y, db, overwrite_b);
}

static ALWAYS_INLINE Tensor *binary(Tape *tape, BinaryOp op, BackwardFn backward_fn, Tensor *a,
                                    Tensor *b) {
    int shape[TENSOR_MAX_DIMS];
    int ndim = broadcast_shape(op, a, b, shape);
    Tensor *y = tape_tensor(tape, ndim, shape);
    forward(op, a, b, y);
    Tensor *inputs[2] = {a, b};
    tape_record(tape, OP_NAME[op], backward_fn, y, 2, inputs);
    return y;
}

/* --- The four ops: each a forward and a backward specialised from the code above ----------- */

/* add: y = a + b;  da += dy,  db += dy (each summed over its broadcast dimensions). */
static void add_backward(Tape *tape, TapeRecord *record) {
    backward(tape, ADD, record);
}
Tensor *op_add(Tape *tape, Tensor *a, Tensor *b) {
    return binary(tape, ADD, add_backward, a, b);
}

/* sub: y = a - b;  da += dy,  db -= dy. */
static void sub_backward(Tape *tape, TapeRecord *record) {
    backward(tape, SUB, record);
}
Tensor *op_sub(Tape *tape, Tensor *a, Tensor *b) {
    return binary(tape, SUB, sub_backward, a, b);
}

/* mul: y = a b;  da += dy b,  db += dy a. */
static void mul_backward(Tape *tape, TapeRecord *record) {
    backward(tape, MUL, record);
}
Tensor *op_mul(Tape *tape, Tensor *a, Tensor *b) {
    return binary(tape, MUL, mul_backward, a, b);
}

/* div: y = a / b;  da += dy / b,  db -= dy a / b^2 = dy (y / b). */
static void div_backward(Tape *tape, TapeRecord *record) {
    backward(tape, DIV, record);
}
Tensor *op_div(Tape *tape, Tensor *a, Tensor *b) {
    return binary(tape, DIV, div_backward, a, b);
}
