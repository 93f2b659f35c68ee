/* test_reference.c - every op in ops.h against PyTorch (torch 1.13, float64).
 *
 * tests/reference/make_fixtures.py wrote, for each case of each op, the inputs, the op's output
 * y, a random upstream gradient gy and the gradients torch autograd computed for sum(y * gy); the
 * manifest tests/reference/cases.txt lists the cases with their parameters:
 *
 *     conv1d causal stride=1 pad_left=3 pad_right=0 groups=1 bias=1 grads=x,w,bias
 *
 * Here each case loads its inputs (with a gradient), calls the op with those parameters, runs
 * tape_backward_from(y, gy), and compares y and the gradient of every input in `grads` with the
 * fixture. One cmocka test per op, so a failure names the op; each failing array is reported
 * with its case, the worst element, the expected and the computed value.
 *
 * The error measure, per array: max_i |got_i - expected_i| / max_i |expected_i|, the worst error
 * relative to the array's scale (as gradcheck.h measures; an all-zero expected array is compared
 * absolutely). Tolerances:
 *   - float64 build: 1e-9. Both sides compute in double; they differ only in the order of
 *     operations and in libm (exp, erf, tanh), a few ulps: the worst seen is 5e-16. 1e-9 leaves a
 *     wide margin yet catches any wrong term, off-by-one window or missed contribution.
 *   - float32 build: 1e-5. The inputs are float32 numbers (make_fixtures.py rounds them), so this
 *     measures our float32 arithmetic against float64: a few float32 ulps (6e-8 each) for
 *     elementwise ops, up to ~sqrt(n) ulps for the sums in matmul, convolutions, reductions,
 *     softmax and layernorm; the worst seen is 1.5e-7.
 * No op needs a tolerance of its own: the cases avoid the places where the two sides legitimately
 * differ (ties, kinks, all-ignored rows; see make_fixtures.py).
 */
#include "test_util.h"

#include <stdlib.h>

#include "npy.h"
#include "ops.h"

#define REFERENCE_DIR "tests/reference/"

#ifdef CPOOL_DOUBLE
#define TOLERANCE 1e-9
#else
#define TOLERANCE 1e-5
#endif

/* --- The manifest ----------------------------------------------------------------------------- */

#define MAX_PARAMS 12
#define MAX_INPUTS 8

typedef struct Case {
    char op[32];
    char name[64];
    int n_params;
    char key[MAX_PARAMS][32];
    char value[MAX_PARAMS][64];
    int n_grads; /* the differentiable inputs, whose gradients the fixture holds */
    char grads[MAX_INPUTS][16];
    int line; /* in cases.txt, for messages */
} Case;

static Case *cases;
static int n_cases;

/* Copies a token into a fixed buffer; 0 if it does not fit. */
static int copy_token(char *out, size_t capacity, const char *token, size_t n) {
    if (n >= capacity) return 0;
    memcpy(out, token, n);
    out[n] = '\0';
    return 1;
}

/* "grads=a,b,c" into c->grads. */
static int parse_grads(Case *c, const char *list) {
    while (*list) {
        size_t n = strcspn(list, ",");
        if (c->n_grads == MAX_INPUTS || !copy_token(c->grads[c->n_grads++], 16, list, n)) return 0;
        list += n + (list[n] == ',');
    }
    return c->n_grads > 0;
}

/* One manifest line: "op case key=value ... grads=a,b". 0 if malformed. */
static int parse_case(Case *c, char *line) {
    char *words[2 + MAX_PARAMS + 1];
    int n_words = 0;
    for (char *word = strtok(line, " \t\n"); word; word = strtok(NULL, " \t\n")) {
        if (n_words == (int)(sizeof words / sizeof words[0])) return 0;
        words[n_words++] = word;
    }
    if (n_words < 3 || !copy_token(c->op, sizeof c->op, words[0], strlen(words[0])) ||
        !copy_token(c->name, sizeof c->name, words[1], strlen(words[1])))
        return 0;
    for (int w = 2; w < n_words; w++) {
        char *equals = strchr(words[w], '=');
        if (!equals) return 0;
        if (strncmp(words[w], "grads=", 6) == 0) {
            if (!parse_grads(c, equals + 1)) return 0;
            continue;
        }
        if (c->n_params == MAX_PARAMS ||
            !copy_token(c->key[c->n_params], 32, words[w], (size_t)(equals - words[w])) ||
            !copy_token(c->value[c->n_params], 64, equals + 1, strlen(equals + 1)))
            return 0;
        c->n_params++;
    }
    return c->n_grads > 0;
}

static int read_manifest(void **state) {
    (void)state;
    const char *path = REFERENCE_DIR "cases.txt";
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open %s: run the tests from the repository root\n", path);
        return -1;
    }
    char line[1024];
    int capacity = 0, line_number = 0;
    while (fgets(line, sizeof line, fp)) {
        line_number++;
        if (line[0] == '#' || line[strspn(line, " \t\n")] == '\0') continue;
        if (n_cases == capacity)
            cases = realloc(cases, (size_t)(capacity = 2 * capacity + 64) * sizeof *cases);
        Case *c = &cases[n_cases];
        memset(c, 0, sizeof *c);
        c->line = line_number;
        if (!parse_case(c, line)) {
            fprintf(stderr, "%s:%d: malformed case line\n", path, line_number);
            fclose(fp);
            return -1;
        }
        n_cases++;
    }
    fclose(fp);
    return n_cases > 0 ? 0 : -1;
}

static int free_manifest(void **state) {
    (void)state;
    free(cases);
    return 0;
}

/* --- Case parameters -------------------------------------------------------------------------- */

/* The text of a parameter, or NULL. */
static const char *find_param(const Case *c, const char *key) {
    for (int p = 0; p < c->n_params; p++)
        if (strcmp(c->key[p], key) == 0) return c->value[p];
    return NULL;
}

static const char *param(const Case *c, const char *key) {
    const char *text = find_param(c, key);
    if (!text) cpool_fail("cases.txt line %d has no parameter '%s'", c->line, key);
    return text;
}

static int param_int(const Case *c, const char *key) {
    const char *text = param(c, key);
    char *end;
    long value = strtol(text, &end, 10);
    if (end == text || *end) cpool_fail("parameter %s=%s is not an integer", key, text);
    return (int)value;
}

static real param_real(const Case *c, const char *key) {
    const char *text = param(c, key);
    char *end;
    double value = strtod(text, &end);
    if (end == text || *end) cpool_fail("parameter %s=%s is not a number", key, text);
    return (real)value;
}

/* A comma-separated list "2,-1,3" (empty for none); returns the count. */
static int param_ints(const Case *c, const char *key, int *out, int max) {
    const char *text = param(c, key);
    int n = 0;
    while (*text) {
        char *end;
        long value = strtol(text, &end, 10);
        if (end == text || n == max || (*end && *end != ','))
            cpool_fail("parameter %s=%s is not a list of integers", key, param(c, key));
        out[n++] = (int)value;
        text = *end ? end + 1 : end;
    }
    return n;
}

/* --- Running a case --------------------------------------------------------------------------- */

/* Everything one case loads, so it can all be freed, even after an op fails. */
typedef struct Run {
    const Case *c;
    Tape *tape;
    int failures; /* arrays that differ from the fixture, or 1 if the case could not run */
    int n_inputs; /* differentiable inputs, in the order they were loaded */
    const char *input_names[MAX_INPUTS];
    Tensor *inputs[MAX_INPUTS];
    int n_constants;
    Tensor *constants[4];
    int *int_arrays[2];
    int n_int_arrays;
} Run;

static void fixture_path(const Case *c, const char *array, char *path, size_t capacity) {
    snprintf(path, capacity, REFERENCE_DIR "%s/%s_%s.npy", c->op, c->name, array);
}

static Tensor *load_tensor(const Case *c, const char *array) {
    char path[256], err[512];
    fixture_path(c, array, path, sizeof path);
    Tensor *t;
    if (npy_load(path, &t, err, sizeof err) != 0) cpool_fail("%s", err);
    return t;
}

/* A differentiable input: loaded with a zeroed gradient; its gradient is compared afterwards. */
static Tensor *input(Run *r, const char *name) {
    if (r->n_inputs == MAX_INPUTS) cpool_fail("more than %d inputs", MAX_INPUTS);
    Tensor *t = load_tensor(r->c, name);
    t->requires_grad = 1;
    t->grad = xcalloc((size_t)t->size, sizeof(real));
    r->input_names[r->n_inputs] = name;
    r->inputs[r->n_inputs++] = t;
    return t;
}

/* A tensor without a gradient (a mask, the upstream gradient gy). */
static Tensor *constant(Run *r, const char *name) {
    if (r->n_constants == 4) cpool_fail("more than 4 constants");
    Tensor *t = load_tensor(r->c, name);
    r->constants[r->n_constants++] = t;
    return t;
}

/* Integer ids or targets. */
static int *int_array(Run *r, const char *name, int *ndim, int shape[TENSOR_MAX_DIMS]) {
    char path[256], err[512];
    fixture_path(r->c, name, path, sizeof path);
    int *values;
    if (r->n_int_arrays == 2) cpool_fail("more than 2 integer arrays");
    if (npy_load_ints(path, &values, ndim, shape, err, sizeof err) != 0) cpool_fail("%s", err);
    r->int_arrays[r->n_int_arrays++] = values;
    return values;
}

static void free_run(Run *r) {
    for (int i = 0; i < r->n_inputs; i++) tensor_free(r->inputs[i]);
    for (int i = 0; i < r->n_constants; i++) tensor_free(r->constants[i]);
    for (int i = 0; i < r->n_int_arrays; i++) free(r->int_arrays[i]);
    tape_free(r->tape);
}

/* --- The ops: one runner each, calling the op as its case says -------------------------------- */

typedef Tensor *(*OpRunner)(Run *r);

static Tensor *run_add(Run *r) {
    Tensor *a = input(r, "a"), *b = input(r, "b");
    return op_add(r->tape, a, b);
}
static Tensor *run_sub(Run *r) {
    Tensor *a = input(r, "a"), *b = input(r, "b");
    return op_sub(r->tape, a, b);
}
static Tensor *run_mul(Run *r) {
    Tensor *a = input(r, "a"), *b = input(r, "b");
    return op_mul(r->tape, a, b);
}
static Tensor *run_div(Run *r) {
    Tensor *a = input(r, "a"), *b = input(r, "b");
    return op_div(r->tape, a, b);
}

static Tensor *run_neg(Run *r) {
    return op_neg(r->tape, input(r, "x"));
}
static Tensor *run_scale(Run *r) {
    return op_scale(r->tape, input(r, "x"), param_real(r->c, "c"));
}
static Tensor *run_pow(Run *r) {
    return op_pow(r->tape, input(r, "x"), param_real(r->c, "p"));
}
static Tensor *run_exp(Run *r) {
    return op_exp(r->tape, input(r, "x"));
}
static Tensor *run_log(Run *r) {
    return op_log(r->tape, input(r, "x"));
}
static Tensor *run_sqrt(Run *r) {
    return op_sqrt(r->tape, input(r, "x"));
}
static Tensor *run_abs(Run *r) {
    return op_abs(r->tape, input(r, "x"));
}
static Tensor *run_clamp(Run *r) {
    return op_clamp(r->tape, input(r, "x"), param_real(r->c, "lo"), param_real(r->c, "hi"));
}
static Tensor *run_tanh(Run *r) {
    return op_tanh(r->tape, input(r, "x"));
}
static Tensor *run_sigmoid(Run *r) {
    return op_sigmoid(r->tape, input(r, "x"));
}
static Tensor *run_softplus(Run *r) {
    return op_softplus(r->tape, input(r, "x"));
}
static Tensor *run_relu(Run *r) {
    return op_relu(r->tape, input(r, "x"));
}
static Tensor *run_gelu(Run *r) {
    return op_gelu(r->tape, input(r, "x"));
}

static Tensor *run_masked_fill(Run *r) {
    Tensor *x = input(r, "x"), *mask = constant(r, "mask");
    return op_masked_fill(r->tape, x, mask, param_real(r->c, "value"));
}

/* Only p = 0 compares with torch (the identity); p > 0 is check_dropout_mask below. */
static Tensor *run_dropout(Run *r) {
    Rng rng;
    rng_seed(&rng, (uint64_t)param_int(r->c, "seed"));
    return op_dropout(r->tape, input(r, "x"), param_real(r->c, "p"), &rng);
}

static Tensor *run_matmul(Run *r) {
    Tensor *a = input(r, "a"), *b = input(r, "b");
    return op_matmul(r->tape, a, b, param_int(r->c, "trans_a"), param_int(r->c, "trans_b"));
}

/* axis=all means the whole-tensor reduction (op_sum_all ...). */
static int over_all(const Case *c) {
    return strcmp(param(c, "axis"), "all") == 0;
}

static Tensor *run_sum(Run *r) {
    Tensor *x = input(r, "x");
    if (over_all(r->c)) return op_sum_all(r->tape, x);
    return op_sum(r->tape, x, param_int(r->c, "axis"), param_int(r->c, "keepdim"));
}
static Tensor *run_mean(Run *r) {
    Tensor *x = input(r, "x");
    if (over_all(r->c)) return op_mean_all(r->tape, x);
    return op_mean(r->tape, x, param_int(r->c, "axis"), param_int(r->c, "keepdim"));
}
static Tensor *run_max(Run *r) {
    Tensor *x = input(r, "x");
    if (over_all(r->c)) return op_max_all(r->tape, x);
    return op_max(r->tape, x, param_int(r->c, "axis"), param_int(r->c, "keepdim"));
}

static Tensor *run_softmax(Run *r) {
    return op_softmax(r->tape, input(r, "x"));
}
static Tensor *run_log_softmax(Run *r) {
    return op_log_softmax(r->tape, input(r, "x"));
}

static Tensor *run_cross_entropy(Run *r) {
    Tensor *logits = input(r, "logits");
    int ndim, shape[TENSOR_MAX_DIMS];
    const int *targets = int_array(r, "targets", &ndim, shape);
    if (shape_size(ndim, shape) * logits->shape[logits->ndim - 1] != logits->size)
        cpool_fail("targets do not match the logits' rows");
    return op_cross_entropy(r->tape, logits, targets, param_int(r->c, "ignore_index"));
}

static Tensor *run_layernorm(Run *r) {
    Tensor *x = input(r, "x");
    Tensor *weight = param_int(r->c, "weight") ? input(r, "weight") : NULL;
    Tensor *bias = param_int(r->c, "bias") ? input(r, "bias") : NULL;
    return op_layernorm(r->tape, x, weight, bias, param_real(r->c, "eps"));
}

static Tensor *run_embedding(Run *r) {
    Tensor *weight = input(r, "weight");
    int ndim, shape[TENSOR_MAX_DIMS];
    const int *ids = int_array(r, "ids", &ndim, shape);
    return op_embedding(r->tape, weight, ids, ndim, shape);
}

static Tensor *run_reshape(Run *r) {
    int shape[TENSOR_MAX_DIMS];
    int ndim = param_ints(r->c, "shape", shape, TENSOR_MAX_DIMS);
    return op_reshape(r->tape, input(r, "x"), ndim, shape);
}
static Tensor *run_transpose(Run *r) {
    return op_transpose(r->tape, input(r, "x"), param_int(r->c, "dim0"), param_int(r->c, "dim1"));
}
static Tensor *run_permute(Run *r) {
    int perm[TENSOR_MAX_DIMS];
    Tensor *x = input(r, "x");
    if (param_ints(r->c, "perm", perm, TENSOR_MAX_DIMS) != x->ndim)
        cpool_fail("perm does not match x");
    return op_permute(r->tape, x, perm);
}
static Tensor *run_slice(Run *r) {
    return op_slice(r->tape, input(r, "x"), param_int(r->c, "axis"), param_int(r->c, "start"),
                    param_int(r->c, "end"));
}
static Tensor *run_concat(Run *r) {
    static const char *const names[] = {"x0", "x1", "x2", "x3", "x4", "x5"};
    int n = param_int(r->c, "n");
    if (n < 1 || n > 6) cpool_fail("n=%d", n);
    Tensor *xs[6];
    for (int i = 0; i < n; i++) xs[i] = input(r, names[i]);
    return op_concat(r->tape, xs, n, param_int(r->c, "axis"));
}

static Tensor *run_conv1d(Run *r) {
    Tensor *x = input(r, "x"), *w = input(r, "w");
    Tensor *bias = param_int(r->c, "bias") ? input(r, "bias") : NULL;
    return op_conv1d(r->tape, x, w, bias, param_int(r->c, "stride"), param_int(r->c, "pad_left"),
                     param_int(r->c, "pad_right"), param_int(r->c, "groups"));
}
static Tensor *run_conv1d_nlc(Run *r) {
    Tensor *bias = param_int(r->c, "bias") ? input(r, "bias") : NULL;
    return op_conv1d_nlc(r->tape, input(r, "x"), input(r, "w"), bias, param_int(r->c, "pad_left"),
                         param_int(r->c, "pad_right"));
}
static Tensor *run_conv2d(Run *r) {
    Tensor *x = input(r, "x"), *w = input(r, "w");
    Tensor *bias = param_int(r->c, "bias") ? input(r, "bias") : NULL;
    return op_conv2d(r->tape, x, w, bias, param_int(r->c, "stride"), param_int(r->c, "padding"),
                     param_int(r->c, "groups"));
}
static Tensor *run_avgpool2d(Run *r) {
    return op_avgpool2d(r->tape, input(r, "x"), param_int(r->c, "kernel"),
                        param_int(r->c, "stride"));
}
static Tensor *run_maxpool2d(Run *r) {
    return op_maxpool2d(r->tape, input(r, "x"), param_int(r->c, "kernel"),
                        param_int(r->c, "stride"));
}

typedef struct OpEntry {
    const char *op;
    OpRunner run;
} OpEntry;

static const OpEntry op_table[] = {
    {"add", run_add},
    {"sub", run_sub},
    {"mul", run_mul},
    {"div", run_div},
    {"neg", run_neg},
    {"scale", run_scale},
    {"pow", run_pow},
    {"exp", run_exp},
    {"log", run_log},
    {"sqrt", run_sqrt},
    {"abs", run_abs},
    {"clamp", run_clamp},
    {"tanh", run_tanh},
    {"sigmoid", run_sigmoid},
    {"softplus", run_softplus},
    {"relu", run_relu},
    {"gelu", run_gelu},
    {"matmul", run_matmul},
    {"sum", run_sum},
    {"mean", run_mean},
    {"max", run_max},
    {"softmax", run_softmax},
    {"log_softmax", run_log_softmax},
    {"cross_entropy", run_cross_entropy},
    {"layernorm", run_layernorm},
    {"embedding", run_embedding},
    {"reshape", run_reshape},
    {"transpose", run_transpose},
    {"permute", run_permute},
    {"slice", run_slice},
    {"concat", run_concat},
    {"masked_fill", run_masked_fill},
    {"dropout", run_dropout},
    {"conv1d", run_conv1d},
    {"conv2d", run_conv2d},
    {"conv1d_nlc", run_conv1d_nlc},
    {"avgpool2d", run_avgpool2d},
    {"maxpool2d", run_maxpool2d},
};
#define N_OPS ((int)(sizeof op_table / sizeof op_table[0]))

/* --- Comparing -------------------------------------------------------------------------------- */

typedef struct Stats {
    int cases;
    int arrays;
    double worst; /* the largest error measure seen */
    char worst_where[128];
} Stats;

/* "[1, 0, 2]": the multi-index of flat element i. */
static void index_string(long i, int ndim, const int *shape, char *out, size_t capacity) {
    int index[TENSOR_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        index[d] = shape[d] ? (int)(i % shape[d]) : 0;
        i = shape[d] ? i / shape[d] : 0;
    }
    size_t used = (size_t)snprintf(out, capacity, "[");
    for (int d = 0; d < ndim && used < capacity; d++)
        used += (size_t)snprintf(out + used, capacity - used, d ? ", %d" : "%d", index[d]);
    if (used < capacity) snprintf(out + used, capacity - used, "]");
}

/* Compares got (the values of a tensor shaped like `like`) with the fixture
 * <op>/<case>_<array>.npy; prints the worst element and returns 1 on a mismatch. */
static int compare(const Case *c, const char *array, const Tensor *like, const real *got,
                   Stats *stats) {
    char path[256], err[512], got_shape[64], want_shape[64];
    fixture_path(c, array, path, sizeof path);
    double *expected;
    int ndim, shape[TENSOR_MAX_DIMS];
    if (npy_load_doubles(path, &expected, &ndim, shape, err, sizeof err) != 0) {
        print_error("%s/%s: %s\n", c->op, c->name, err);
        return 1;
    }
    stats->arrays++;
    shape_string(ndim, shape, want_shape, sizeof want_shape);
    if (ndim != like->ndim || memcmp(shape, like->shape, (size_t)ndim * sizeof(int)) != 0) {
        print_error("%s/%s: %s: expected shape %s, got %s\n", c->op, c->name, array, want_shape,
                    TENSOR_SHAPE_STR(like, got_shape));
        free(expected);
        return 1;
    }
    double scale = 0, worst = 0;
    long worst_at = 0;
    for (long i = 0; i < like->size; i++) scale = fmax(scale, fabs(expected[i]));
    for (long i = 0; i < like->size; i++) {
        double error = fabs((double)got[i] - expected[i]);
        if (isnan(error)) error = INFINITY;
        if (error > worst) worst = error, worst_at = i;
    }
    double measure = scale > 0 ? worst / scale : worst;
    if (measure > stats->worst) {
        stats->worst = measure;
        snprintf(stats->worst_where, sizeof stats->worst_where, "%s/%s", c->name, array);
    }
    int failed = !(measure <= TOLERANCE);
    if (failed) {
        char where[64];
        index_string(worst_at, ndim, shape, where, sizeof where);
        print_error("%s/%s: %s%s (shape %s): expected %.17g, got %.17g; error %.3g / max "
                    "|expected| %.3g = %.3g > %g\n",
                    c->op, c->name, array, where, want_shape, expected[worst_at],
                    (double)got[worst_at], worst, scale, measure, TOLERANCE);
    }
    free(expected);
    return failed;
}

/* Compares the op's output with y and each input's gradient with grad_<input>. */
static void compare_with_torch(Run *r, OpRunner run, Stats *stats) {
    const Case *c = r->c;
    Tensor *y = run(r);
    r->failures += compare(c, "y", y, y->data, stats);
    Tensor *gy = constant(r, "gy");
    if (!tensor_same_shape(gy, y)) cpool_fail("gy and y differ in shape");
    tape_backward_from(r->tape, y, gy->data);
    for (int i = 0; i < r->n_inputs; i++) {
        char array[32];
        snprintf(array, sizeof array, "grad_%s", r->input_names[i]);
        r->failures += compare(c, array, r->inputs[i], r->inputs[i]->grad, stats);
    }
    if (r->n_inputs != c->n_grads) {
        print_error("%s/%s: the fixture has %d gradients, the op took %d inputs\n", c->op, c->name,
                    c->n_grads, r->n_inputs);
        r->failures++;
    }
}

/* dropout with p > 0: torch's mask comes from torch's generator, so instead of comparing values
 * this checks the definition for our own mask m (read off y, as x has no zeros):
 *     y = x * m / (1 - p)   and   dx = gy * m / (1 - p)   with the same m,
 * the number of dropped elements is within 5 standard deviations of p * n, and the same seed
 * draws the same mask again. */
static void check_dropout_mask(Run *r, OpRunner run, Stats *stats) {
    (void)run;
    const Case *c = r->c;
    Tensor *x = input(r, "x"), *gy = constant(r, "gy");
    real p = param_real(c, "p"), scale = (real)(1.0 / (1.0 - (double)p));
    Rng rng;
    rng_seed(&rng, (uint64_t)param_int(c, "seed"));
    Tensor *y = op_dropout(r->tape, x, p, &rng);
    tape_backward_from(r->tape, y, gy->data);
    long dropped = 0;
    for (long i = 0; i < x->size; i++) {
        int kept = y->data[i] != 0;
        dropped += !kept;
        real want_y = kept ? x->data[i] * scale : 0, want_dx = kept ? gy->data[i] * scale : 0;
        if (y->data[i] != want_y || x->grad[i] != want_dx) {
            print_error("%s/%s: element %ld (%s): y = %.9g, dx = %.9g; expected %.9g, %.9g\n",
                        c->op, c->name, i, kept ? "kept" : "dropped", (double)y->data[i],
                        (double)x->grad[i], (double)want_y, (double)want_dx);
            r->failures++;
            break;
        }
    }
    double n = (double)x->size, mean = (double)p * n;
    double sd = sqrt(n * (double)p * (1 - (double)p));
    if (fabs((double)dropped - mean) > 5 * sd) {
        print_error("%s/%s: dropped %ld of %.0f elements, expected %.0f +- %.0f\n", c->op, c->name,
                    dropped, n, mean, 5 * sd);
        r->failures++;
    }
    rng_seed(&rng, (uint64_t)param_int(c, "seed"));
    Tensor *again = op_dropout(r->tape, x, p, &rng);
    if (memcmp(again->data, y->data, (size_t)y->size * sizeof(real)) != 0) {
        print_error("%s/%s: the same seed drew a different mask\n", c->op, c->name);
        r->failures++;
    }
    stats->arrays += 2;
}

static jmp_buf case_escape;

static void case_failed(const char *message, void *user) {
    (void)message;
    longjmp(*(jmp_buf *)user, 1);
}

/* Runs one case through `check` with cpool_fail caught (an op rejecting its arguments, a missing
 * fixture), so one broken case is reported and the others still run. Returns its failures. */
static int run_case(const Case *c, void (*check)(Run *, OpRunner, Stats *), OpRunner run,
                    Stats *stats) {
    Run *r = xcalloc(1, sizeof *r); /* on the heap: its contents survive the longjmp */
    r->c = c;
    r->tape = tape_create();
    void *previous_user = cpool_error_handler_user();
    ErrorHandler previous = cpool_set_error_handler(case_failed, &case_escape);
    if (setjmp(case_escape) == 0) {
        check(r, run, stats);
    } else {
        print_error("%s/%s: failed: %s\n", c->op, c->name, cpool_last_error());
        r->failures++;
    }
    cpool_set_error_handler(previous, previous_user);
    int failures = r->failures;
    free_run(r);
    free(r);
    return failures;
}

/* --- The tests: one per op -------------------------------------------------------------------- */

static void op_matches_pytorch(void **state) {
    const OpEntry *entry = *state;
    Stats stats = {0};
    int failures = 0;
    for (int i = 0; i < n_cases; i++) {
        const Case *c = &cases[i];
        if (strcmp(c->op, entry->op) != 0) continue;
        stats.cases++;
        const char *p = find_param(c, "p");
        int dropout_mask = strcmp(c->op, "dropout") == 0 && p && strtod(p, NULL) > 0;
        failures +=
            run_case(c, dropout_mask ? check_dropout_mask : compare_with_torch, entry->run, &stats);
    }
    if (stats.cases == 0) fail_msg("%s: no cases in " REFERENCE_DIR "cases.txt", entry->op);
    if (stats.worst > 0)
        print_message("%s: %d cases, %d arrays, worst error %.2g at %s (tolerance %g)\n", entry->op,
                      stats.cases, stats.arrays, stats.worst, stats.worst_where, TOLERANCE);
    else
        print_message("%s: %d cases, %d arrays, all exact\n", entry->op, stats.cases, stats.arrays);
    if (failures) fail_msg("%s: %d failure(s), listed above", entry->op, failures);
}

/* Every case in the manifest belongs to an op this file knows how to call. */
static void every_case_in_the_manifest_has_an_op(void **state) {
    (void)state;
    for (int i = 0; i < n_cases; i++) {
        int known = 0;
        for (int k = 0; k < N_OPS; k++) known |= strcmp(cases[i].op, op_table[k].op) == 0;
        if (!known)
            fail_msg("cases.txt line %d: no runner for op '%s'", cases[i].line, cases[i].op);
    }
}

int main(void) {
    struct CMUnitTest tests[N_OPS + 1];
    for (int k = 0; k < N_OPS; k++)
        tests[k] = (struct CMUnitTest){.name = op_table[k].op,
                                       .test_func = op_matches_pytorch,
                                       .initial_state = (void *)&op_table[k]};
    tests[N_OPS] = (struct CMUnitTest){.name = "every_case_in_the_manifest_has_an_op",
                                       .test_func = every_case_in_the_manifest_has_an_op};
    /* test_util.h's EXPECT_FAIL is not used: op failures are caught per case (run_case). */
    (void)test_catch_error;
    (void)test_escape;
    return cmocka_run_group_tests_name("reference vs PyTorch (" REAL_NAME ")", tests, read_manifest,
                                       free_manifest);
}
