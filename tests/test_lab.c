/* test_lab.c - `cpool lab`: end-to-end runs that agree with calling the layers directly, the help
 * text, and every bad input as one line with the right exit status (2 usage, 1 data).
 *
 * The command's core, lab_run(), is compiled into this test from tools/ (the tools are not part
 * of the library), and runs in a fresh mkdtemp() directory. */
#include "test_temp_dir.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/cmd_lab.c"
#include "../tools/lab_layers.c"

#include "ops.h"

/* cmd_lab() re-executes cpool64 for --double; lab_run(), which the tests call, never does. */
int exec_double_build(int argc, char **argv) {
    (void)argc, (void)argv;
    return 99;
}

static int make_temp_dir(void **state) {
    (void)state;
    return temp_dir_create("lab");
}

static int remove_temp_dir(void **state) {
    (void)state;
    return temp_dir_remove();
}

static int exists(const char *dir, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* Run `cpool lab ARGS...` (NULL-terminated); err receives the error line. */
static int run_lab(char *err, size_t err_len, ...) {
    char *argv[64] = {"lab"};
    int argc = 1;
    va_list args;
    va_start(args, err_len);
    for (const char *a; (a = va_arg(args, const char *));) argv[argc++] = (char *)a;
    va_end(args);
    return lab_run(argc, argv, NULL, err, err_len);
}

/* Save a tensor of the given shape with values from rng (or the given values) as name.npy. */
static const char *save_random(const char *name, int ndim, const int *shape, Rng *rng) {
    Tensor *t = tensor_create(ndim, shape, 0);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
    const char *path = temp_path(name);
    char err[256];
    if (npy_save(path, t, err, sizeof err) != 0) fail_msg("%s", err);
    tensor_free(t);
    return path;
}

static const char *save_values(const char *name, int ndim, const int *shape, const double *values) {
    Tensor *t = tensor_create(ndim, shape, 0);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)values[i];
    const char *path = temp_path(name);
    char err[256];
    if (npy_save(path, t, err, sizeof err) != 0) fail_msg("%s", err);
    tensor_free(t);
    return path;
}

static Tensor *load(const char *dir, const char *name) {
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    Tensor *t = NULL;
    if (npy_load(path, &t, err, sizeof err) != 0) fail_msg("%s", err);
    return t;
}

/* The lab's result must be bit-identical to the direct call: same code, same order. */
static void assert_same_values(const real *expected, const Tensor *got, const char *what) {
    for (long i = 0; i < got->size; i++)
        if (expected[i] != got->data[i])
            fail_msg("%s: element %ld: direct call %.17g, lab %.17g", what, i, (double)expected[i],
                     (double)got->data[i]);
}

static void assert_same_tensor(const Tensor *expected, const Tensor *got, const char *what) {
    char a[64], b[64];
    if (!tensor_same_shape(expected, got))
        fail_msg("%s: shape %s, lab wrote %s", what, TENSOR_SHAPE_STR(expected, a),
                 TENSOR_SHAPE_STR(got, b));
    assert_same_values(expected->data, got, what);
}

/* Every parameter (or its gradient) agrees with what the lab wrote in file. */
static void assert_params_match(const ParamSet *params, const char *dir, const char *file,
                                int use_grad) {
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    SafetensorsFile saved;
    if (safetensors_read(path, &saved, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(saved.count, params->count);
    for (int i = 0; i < params->count; i++) {
        const Tensor *p = params->items[i].tensor;
        const Tensor *t = safetensors_file_find(&saved, params->items[i].name);
        if (!t) fail_msg("%s lacks '%s'", file, params->items[i].name);
        assert_true(tensor_same_shape(p, t));
        assert_same_values(use_grad ? p->grad : p->data, t, params->items[i].name);
    }
    safetensors_file_free(&saved);
}

/* ------------------------------------------------------------------------------------------ */
/* End to end                                                                                 */

static void linear_output_and_gradients_match_the_layer(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 1);
    const char *x_path = save_random("lin_x.npy", 3, (int[]){2, 3, 4}, &rng);
    const char *gy_path = save_random("lin_gy.npy", 3, (int[]){2, 3, 5}, &rng);
    const char *out = temp_path("lin/nested/out"); /* parents created too */
    char err[1024];
    int status = run_lab(err, sizeof err, "linear", "--set", "out=5", "--in", x_path, "--seed", "7",
                         "--grad-out", gy_path, "--out", out, NULL);
    if (status) fail_msg("lab failed: %s", err);

    ParamSet params = {0};
    Linear layer;
    rng_seed(&rng, 7);
    linear_init(&layer, (LinearConfig){.in = 4, .out = 5, .bias = 1}, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *x = load(temp_dir, "lin_x.npy"), *gy = load(temp_dir, "lin_gy.npy");
    x->requires_grad = 1;
    x->grad = calloc((size_t)x->size, sizeof(real));
    Tensor *y = linear_forward(tape, &layer, x);
    tape_backward_from(tape, y, gy->data);

    Tensor *lab_y = load(out, "y.npy"), *lab_dx = load(out, "grad_in.npy");
    assert_same_tensor(y, lab_y, "y");
    assert_same_values(x->grad, lab_dx, "grad_in");
    assert_params_match(&params, out, "params.safetensors", 0);
    assert_params_match(&params, out, "grad_params.safetensors", 1);
    assert_false(exists(out, "attn.npy"));
    tensor_free(lab_y), tensor_free(lab_dx), tensor_free(x), tensor_free(gy);
    tape_free(tape);
    params_free(&params);
}

static void attention_writes_probabilities_that_match_the_layer(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 2);
    const char *x_path = save_random("att_x.npy", 3, (int[]){2, 5, 6}, &rng);
    const char *gy_path = save_random("att_gy.npy", 3, (int[]){2, 5, 6}, &rng);
    const char *out = temp_path("att");
    char err[1024];
    int status = run_lab(err, sizeof err, "attention", "--set", "heads=3", "--set", "causal=1",
                         "--in", x_path, "--grad-out", gy_path, "--out", out, NULL);
    if (status) fail_msg("lab failed: %s", err);

    ParamSet params = {0};
    Attention layer;
    rng_seed(&rng, 0); /* the default seed */
    attention_init(&layer, (AttentionConfig){.dim = 6, .heads = 3, .causal = 1}, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *x = load(temp_dir, "att_x.npy"), *gy = load(temp_dir, "att_gy.npy"), *probs;
    x->requires_grad = 1;
    x->grad = calloc((size_t)x->size, sizeof(real));
    Tensor *y = attention_forward(tape, &layer, x, x, &probs);
    tape_backward_from(tape, y, gy->data);

    Tensor *lab_y = load(out, "y.npy"), *lab_p = load(out, "attn.npy");
    Tensor *lab_dx = load(out, "grad_in.npy");
    assert_same_tensor(y, lab_y, "y");
    assert_same_tensor(probs, lab_p, "attn");
    assert_same_values(x->grad, lab_dx, "grad_in");
    assert_params_match(&params, out, "params.safetensors", 0);
    assert_params_match(&params, out, "grad_params.safetensors", 1);
    /* causal: nothing above the diagonal; every row sums to 1 */
    for (int row = 0; row < 2 * 3 * 5; row++) {
        double sum = 0;
        for (int j = 0; j < 5; j++) {
            double p = lab_p->data[row * 5 + j];
            if (j > row % 5) assert_true(p == 0);
            sum += p;
        }
        assert_true(fabs(sum - 1) < 1e-6);
    }
    tensor_free(lab_y), tensor_free(lab_p), tensor_free(lab_dx), tensor_free(x), tensor_free(gy);
    tape_free(tape);
    params_free(&params);
}

static void block_and_conv_match_their_layers(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 3);
    const char *x_path = save_random("blk_x.npy", 3, (int[]){1, 4, 8}, &rng);
    char err[1024];
    const char *out = temp_path("blk");
    if (run_lab(err, sizeof err, "block", "--set", "heads=2", "--set", "ffn_hidden=12", "--in",
                x_path, "--seed", "11", "--out", out, NULL))
        fail_msg("lab failed: %s", err);
    ParamSet params = {0};
    Block block;
    rng_seed(&rng, 11);
    block_init(&block, (BlockConfig){.dim = 8, .heads = 2, .ffn_hidden = 12}, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *x = load(temp_dir, "blk_x.npy"), *probs;
    Tensor *y = block_forward(tape, &block, x, &probs);
    Tensor *lab_y = load(out, "y.npy"), *lab_p = load(out, "attn.npy");
    assert_same_tensor(y, lab_y, "block y");
    assert_same_tensor(probs, lab_p, "block attn");
    assert_params_match(&params, out, "params.safetensors", 0);
    assert_false(exists(out, "grad_in.npy")); /* no --grad-out, no gradients */
    assert_false(exists(out, "grad_params.safetensors"));
    tensor_free(lab_y), tensor_free(lab_p), tensor_free(x);
    params_free(&params);
    tape_reset(tape);

    x_path = save_random("conv_x.npy", 3, (int[]){2, 4, 9}, &rng);
    out = temp_path("conv");
    if (run_lab(err, sizeof err, "conv1d", "--set", "out=6", "--set", "kernel=3", "--set",
                "groups=2", "--set", "causal=1", "--set", "stride=2", "--in", x_path, "--out", out,
                NULL))
        fail_msg("lab failed: %s", err);
    Conv conv;
    rng_seed(&rng, 0);
    conv1d_init(
        &conv,
        (ConvConfig){
            .in = 4, .out = 6, .kernel = 3, .stride = 2, .groups = 2, .bias = 1, .causal = 1},
        &params, "", &rng);
    x = load(temp_dir, "conv_x.npy");
    y = conv1d_forward(tape, &conv, x);
    lab_y = load(out, "y.npy");
    assert_same_tensor(y, lab_y, "conv1d y");
    tensor_free(lab_y), tensor_free(x);
    params_free(&params);
    tape_free(tape);
}

/* contextpool1d (causal, composed) and contextpool2d (stride 2): y, weights.npy, support.npy and
 * the gradients bit for bit as the direct call; choice keys are written by name. */
static void contextpool_layers_write_weights_and_support(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 12);
    const char *x_path = save_random("cp_x.npy", 3, (int[]){2, 7, 4}, &rng);
    const char *gy_path = save_random("cp_gy.npy", 3, (int[]){2, 7, 4}, &rng);
    const char *out = temp_path("cp1d");
    char err[1024];
    if (run_lab(err, sizeof err, "contextpool1d", "--set", "causal=1", "--set", "impl=composed",
                "--set", "radius=2", "--set", "size=adaptive", "--in", x_path, "--grad-out",
                gy_path, "--seed", "3", "--out", out, NULL))
        fail_msg("lab failed: %s", err);
    ParamSet params = {0};
    ContextPool pool;
    rng_seed(&rng, 3);
    ContextPoolConfig config = contextpool_default_config(4, 1);
    config.radius = 2, config.composed = 1, config.kernel = 3;
    contextpool_init(&pool, config, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *x = load(temp_dir, "cp_x.npy"), *gy = load(temp_dir, "cp_gy.npy");
    x->requires_grad = 1;
    x->grad = calloc((size_t)x->size, sizeof(real));
    ContextPoolAux aux;
    Tensor *y = contextpool_forward(tape, &pool, x, &aux);
    tape_backward_from(tape, y, gy->data);
    Tensor *lab_y = load(out, "y.npy"), *lab_w = load(out, "weights.npy");
    Tensor *lab_s = load(out, "support.npy"), *lab_dx = load(out, "grad_in.npy");
    assert_same_tensor(y, lab_y, "y");
    assert_same_tensor(aux.weights, lab_w, "weights");
    assert_same_tensor(aux.support, lab_s, "support");
    assert_same_values(x->grad, lab_dx, "grad_in");
    assert_params_match(&params, out, "grad_params.safetensors", 1);
    assert_false(exists(out, "attn.npy"));
    char path[600];
    SafetensorsFile file;
    snprintf(path, sizeof path, "%s/params.safetensors", out);
    assert_int_equal(safetensors_read(path, &file, err, sizeof err), 0);
    assert_string_equal(safetensors_file_metadata(&file, "config"),
                        "dim=4 hidden=0 kernel=3 s_min=0.5 s_max=8 radius=2 causal=1 "
                        "weights=learned size=adaptive s_fixed=2 impl=composed");
    safetensors_file_free(&file);
    tensor_free(lab_y), tensor_free(lab_w), tensor_free(lab_s), tensor_free(lab_dx);
    tensor_free(x), tensor_free(gy);
    params_free(&params);
    tape_reset(tape);

    /* 2-d, stride 2 on a 5 x 3 image: weights (B, 5, 3), support (B, 3, 2). */
    x_path = save_random("cp2_x.npy", 4, (int[]){1, 3, 5, 3}, &rng);
    out = temp_path("cp2d");
    if (run_lab(err, sizeof err, "contextpool2d", "--set", "stride=2", "--set", "weights=uniform",
                "--in", x_path, "--out", out, NULL))
        fail_msg("lab failed: %s", err);
    rng_seed(&rng, 0);
    config = contextpool_default_config(3, 0);
    config.stride = 2, config.kernel = 3, config.weights_uniform = 1;
    contextpool2d_init(&pool, config, &params, "", &rng);
    x = load(temp_dir, "cp2_x.npy");
    y = contextpool2d_forward(tape, &pool, x, &aux);
    lab_y = load(out, "y.npy"), lab_w = load(out, "weights.npy"), lab_s = load(out, "support.npy");
    assert_same_tensor(y, lab_y, "2-d y");
    assert_same_tensor(aux.weights, lab_w, "2-d weights");
    assert_same_tensor(aux.support, lab_s, "2-d support");
    assert_int_equal(lab_s->shape[1], 3);
    assert_int_equal(lab_s->shape[2], 2);
    tensor_free(lab_y), tensor_free(lab_w), tensor_free(lab_s), tensor_free(x);
    params_free(&params);
    tape_free(tape);
}

/* A block writes weights.npy and support.npy exactly when it has a pool. */
static void block_writes_pool_outputs_only_with_a_pool(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 13);
    const char *x_path = save_random("bp_x.npy", 3, (int[]){2, 6, 4}, &rng);
    const char *out = temp_path("bp");
    char err[1024];
    if (run_lab(err, sizeof err, "block", "--set", "heads=2", "--set", "pool=contextpool", "--set",
                "pool_feeds=stream", "--set", "grid_h=2", "--set", "grid_w=3", "--set",
                "cp_hidden=3", "--set", "cp_s_max=2", "--in", x_path, "--seed", "5", "--out", out,
                NULL))
        fail_msg("lab failed: %s", err);
    ParamSet params = {0};
    Block block;
    rng_seed(&rng, 5);
    BlockVariant variant = {
        .pool = BLOCK_POOL_CONTEXTPOOL,
        .pool_feeds = BLOCK_POOL_FEEDS_STREAM,
        .grid_h = 2,
        .grid_w = 3,
        .cp = {.hidden = 3, .kernel = 3, .s_min = 0.5, .s_max = 2, .s_fixed = 2},
        .attn = {.span_max = 256, .span_ramp = 32, .span_coef = 2e-6}};
    block_init_variant(&block, (BlockConfig){.dim = 4, .heads = 2}, variant, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *x = load(temp_dir, "bp_x.npy");
    BlockAux aux;
    Tensor *y = block_forward_aux(tape, &block, x, &aux);
    Tensor *lab_y = load(out, "y.npy"), *lab_p = load(out, "attn.npy");
    Tensor *lab_w = load(out, "weights.npy"), *lab_s = load(out, "support.npy");
    assert_same_tensor(y, lab_y, "y");
    assert_same_tensor(aux.probs, lab_p, "attn");
    assert_same_tensor(aux.pool.weights, lab_w, "weights (B, 2, 3)");
    assert_same_tensor(aux.pool.support, lab_s, "support (B, 2, 3)");
    assert_params_match(&params, out, "params.safetensors", 0);
    tensor_free(lab_y), tensor_free(lab_p), tensor_free(lab_w), tensor_free(lab_s);
    tensor_free(x);
    params_free(&params);
    tape_free(tape);

    out = temp_path("bp_none");
    if (run_lab(err, sizeof err, "block", "--set", "window=1", "--in", x_path, "--out", out, NULL))
        fail_msg("lab failed: %s", err);
    assert_true(exists(out, "attn.npy"));
    assert_false(exists(out, "weights.npy"));
    assert_false(exists(out, "support.npy"));
}

static void embedding_takes_ids_and_writes_no_grad_in(void **state) {
    (void)state;
    const char *ids_path = save_values("ids.npy", 2, (int[]){2, 3}, (double[]){1, 2, 0, 3, 3, 1});
    Rng rng;
    rng_seed(&rng, 4);
    const char *gy_path = save_random("emb_gy.npy", 3, (int[]){2, 3, 5}, &rng);
    const char *out = temp_path("emb");
    char err[1024];
    if (run_lab(err, sizeof err, "embedding", "--set", "vocab=4", "--set", "dim=5", "--in",
                ids_path, "--grad-out", gy_path, "--out", out, NULL))
        fail_msg("lab failed: %s", err);
    ParamSet params = {0};
    Embedding layer;
    rng_seed(&rng, 0);
    embedding_init(&layer, (EmbeddingConfig){.vocab = 4, .dim = 5}, &params, "", &rng);
    Tape *tape = tape_create();
    Tensor *gy = load(temp_dir, "emb_gy.npy");
    Tensor *y = embedding_forward(tape, &layer, (int[]){1, 2, 0, 3, 3, 1}, 2, (int[]){2, 3});
    tape_backward_from(tape, y, gy->data);
    Tensor *lab_y = load(out, "y.npy");
    assert_same_tensor(y, lab_y, "embedding y");
    assert_params_match(&params, out, "grad_params.safetensors", 1);
    assert_false(exists(out, "grad_in.npy"));
    tensor_free(lab_y), tensor_free(gy);
    tape_free(tape);
    params_free(&params);
}

static void params_written_by_one_run_reproduce_it(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 5);
    const char *x_path = save_random("ffn_x.npy", 2, (int[]){3, 4}, &rng);
    char err[1024], params_path[600];
    const char *first = temp_path("ffn1");
    if (run_lab(err, sizeof err, "ffn", "--in", x_path, "--seed", "9", "--out", first, NULL))
        fail_msg("%s", err);
    snprintf(params_path, sizeof params_path, "%s/params.safetensors", first);
    const char *second = temp_path("ffn2");
    if (run_lab(err, sizeof err, "ffn", "--in", x_path, "--params", params_path, "--out", second,
                NULL))
        fail_msg("%s", err);
    Tensor *y1 = load(first, "y.npy"), *y2 = load(second, "y.npy");
    assert_same_tensor(y1, y2, "y from --params");
    assert_int_equal(y1->shape[1], 4); /* dim from x's last axis, hidden 4 * dim */
    SafetensorsFile file;
    snprintf(params_path, sizeof params_path, "%s/params.safetensors", second);
    assert_int_equal(safetensors_read(params_path, &file, err, sizeof err), 0);
    assert_int_equal(safetensors_file_find(&file, "fc1.weight")->shape[0], 16);
    assert_string_equal(safetensors_file_metadata(&file, "layer"), "ffn");
    assert_string_equal(safetensors_file_metadata(&file, "config"), "dim=4 hidden=0");
    safetensors_file_free(&file);
    tensor_free(y1), tensor_free(y2);
}

/* A PyTorch fixture case (tests/reference/make_layer_fixtures.py) replayed through the command:
 * --params and --grad-out from the fixture, every output compared with torch's. Error measure as
 * in test_layers_reference.c: |lab - torch| <= tol * max(1, |torch|). */
static void compare_with_torch(const char *dir, const char *file, const char *out) {
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    double *expected;
    int ndim, shape[TENSOR_MAX_DIMS];
    if (npy_load_doubles(path, &expected, &ndim, shape, err, sizeof err) != 0) fail_msg("%s", err);
    Tensor *got = load(out, file);
    assert_int_equal(ndim, got->ndim);
    assert_close(expected, got->data, got->size, sizeof(real) == 8 ? 1e-12 : 1e-5, file);
    tensor_free(got);
    free(expected);
}

/* grad_params.safetensors as the lab wrote it against torch's. */
static void compare_grads_with_torch(const char *dir, const char *out) {
    char path[600], err[256];
    SafetensorsFile torch, lab;
    snprintf(path, sizeof path, "%s/grad_params.safetensors", dir);
    if (safetensors_read(path, &torch, err, sizeof err) != 0) fail_msg("%s", err);
    snprintf(path, sizeof path, "%s/grad_params.safetensors", out);
    if (safetensors_read(path, &lab, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(torch.count, lab.count);
    for (int i = 0; i < torch.count; i++) {
        const Tensor *t = torch.tensors[i], *l = safetensors_file_find(&lab, torch.names[i]);
        if (!l) fail_msg("the lab wrote no gradient for '%s'", torch.names[i]);
        double *expected = malloc((size_t)t->size * sizeof *expected);
        for (long k = 0; k < t->size; k++) expected[k] = t->data[k];
        assert_close(expected, l->data, t->size, sizeof(real) == 8 ? 1e-12 : 1e-5, torch.names[i]);
        free(expected);
    }
    safetensors_file_free(&torch);
    safetensors_file_free(&lab);
}

static void a_pytorch_fixture_replayed_through_the_lab_matches(void **state) {
    (void)state;
    /* case, layer, its --set values (the rest inferred from x or defaults) */
    static const char *const cases[][5] = {
        {"attention_causal", "attention", "heads=3", "causal=1", NULL},
        {"block_causal", "block", "heads=3", "causal=1", NULL},
        {"conv1d_causal", "conv1d", "out=3", "kernel=3", "causal=1"},
    };
    for (int c = 0; c < 3; c++) {
        char dir[256], x[300], params[300], gy[300], err[1024];
        snprintf(dir, sizeof dir, "tests/reference/layers/%s", cases[c][0]);
        snprintf(x, sizeof x, "%s/x.npy", dir);
        snprintf(params, sizeof params, "%s/params.safetensors", dir);
        snprintf(gy, sizeof gy, "%s/gy.npy", dir);
        const char *out = temp_path(cases[c][0]);
        char *argv[32] = {"lab", (char *)cases[c][1]};
        int argc = 2;
        for (int k = 2; k < 5 && cases[c][k]; k++) {
            argv[argc++] = "--set";
            argv[argc++] = (char *)cases[c][k];
        }
        char *rest[] = {"--in", x, "--params", params, "--grad-out", gy, "--out", (char *)out};
        for (int k = 0; k < 8; k++) argv[argc++] = rest[k];
        if (lab_run(argc, argv, NULL, err, sizeof err) != 0) fail_msg("%s: %s", cases[c][0], err);
        compare_with_torch(dir, "y.npy", out);
        compare_with_torch(dir, "grad_in.npy", out);
        if (c < 2) compare_with_torch(dir, "attn.npy", out);
        compare_grads_with_torch(dir, out);
    }
}

/* ContextPool fixtures (tests/reference/make_contextpool_fixtures.py) through the command: a
 * strided 2-d pool and a causal pooled block, every output and gradient against torch. */
static void contextpool_fixtures_replayed_through_the_lab_match(void **state) {
    (void)state;
    static const char *const cases[][9] = {
        {"cp2d_stride2_odd", "contextpool2d", "hidden=4", "s_max=3.0", "radius=3", "stride=2"},
        {"block_pool_kv_causal", "block", "heads=2", "causal=1", "pool=contextpool", "cp_hidden=4",
         "cp_kernel=2", "cp_s_max=3.0", "cp_radius=3"},
    };
    for (int c = 0; c < 2; c++) {
        char dir[256], x[300], params[300], gy[300], err[1024];
        snprintf(dir, sizeof dir, "tests/reference/contextpool/%s", cases[c][0]);
        snprintf(x, sizeof x, "%s/x.npy", dir);
        snprintf(params, sizeof params, "%s/params.safetensors", dir);
        snprintf(gy, sizeof gy, "%s/gy.npy", dir);
        const char *out = temp_path(cases[c][0]);
        char *argv[40] = {"lab", (char *)cases[c][1]};
        int argc = 2;
        for (int k = 2; k < 9 && cases[c][k]; k++) {
            argv[argc++] = "--set";
            argv[argc++] = (char *)cases[c][k];
        }
        char *rest[] = {"--in", x, "--params", params, "--grad-out", gy, "--out", (char *)out};
        for (int k = 0; k < 8; k++) argv[argc++] = rest[k];
        if (lab_run(argc, argv, NULL, err, sizeof err) != 0) fail_msg("%s: %s", cases[c][0], err);
        const char *files[] = {"y.npy", "grad_in.npy", "weights.npy", "support.npy", "attn.npy"};
        for (int f = 0; f < 4 + c; f++) compare_with_torch(dir, files[f], out);
        compare_grads_with_torch(dir, out);
    }
}

static void help_lists_every_layer_and_key(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    char err[256];
    char *argv[] = {"lab", "--help"};
    assert_int_equal(lab_run(2, argv, out, err, sizeof err), 0);
    fclose(out);
    for (int i = 0; i < lab_layer_count; i++) {
        char line[64];
        snprintf(line, sizeof line, "  %-10s ", lab_layers[i].name);
        if (!strstr(text, line)) fail_msg("--help does not list %s", lab_layers[i].name);
        for (int k = 0; lab_layers[i].keys[k].name; k++)
            assert_non_null(strstr(text, lab_layers[i].keys[k].name));
    }
    assert_non_null(strstr(text, "[x's last axis]"));
    assert_non_null(strstr(text, "[kv]")); /* a choice key shows its default by name */
    assert_non_null(strstr(text, "kv|qkv|stream"));
    assert_non_null(strstr(text, "learned|uniform"));
    assert_non_null(strstr(text, "weights.npy"));
    free(text);
}

/* ------------------------------------------------------------------------------------------ */
/* Bad inputs                                                                                 */

typedef struct BadRun {
    int status;
    const char *expected;
    const char *argv[24];
} BadRun;

/* The files the bad runs use, made once: x3 (2, 3, 4), x2 (3, 4), x4 (1, 2, 3, 3), gy_wrong
 * (2, 3, 3), garbage,
 * ids with a fraction, ids out of range, params files with a missing, misshapen or extra tensor,
 * and a plain file where a directory should be. */
static void make_bad_inputs(void) {
    Rng rng;
    rng_seed(&rng, 6);
    save_random("x3.npy", 3, (int[]){2, 3, 4}, &rng);
    save_random("x2.npy", 2, (int[]){3, 4}, &rng);
    save_random("x4.npy", 4, (int[]){1, 2, 3, 3}, &rng);
    save_random("gy_wrong.npy", 3, (int[]){2, 3, 3}, &rng);
    save_values("ids_frac.npy", 1, (int[]){2}, (double[]){1, 0.5});
    save_values("ids_big.npy", 1, (int[]){2}, (double[]){1, 9});
    FILE *fp = fopen(temp_path("garbage.npy"), "wb");
    fputs("\x93NUMPY\x01\x00garbage", fp);
    fclose(fp);
    fp = fopen(temp_path("a_file"), "wb");
    fclose(fp);
    char err[256];
    ParamSet missing = {0}, misshapen = {0}, extra = {0};
    params_new(&missing, "", "weight", 2, (int[]){3, 4});
    params_new(&misshapen, "", "weight", 2, (int[]){4, 3});
    params_new(&misshapen, "", "bias", 1, (int[]){3});
    params_new(&extra, "", "weight", 2, (int[]){3, 4});
    params_new(&extra, "", "bias", 1, (int[]){3});
    params_new(&extra, "", "scale", 1, (int[]){3});
    assert_int_equal(safetensors_save_params(temp_path("p_missing.safetensors"), &missing,
                                             SAFETENSORS_DATA, SAFETENSORS_F32, NULL, err,
                                             sizeof err),
                     0);
    assert_int_equal(safetensors_save_params(temp_path("p_misshapen.safetensors"), &misshapen,
                                             SAFETENSORS_DATA, SAFETENSORS_F32, NULL, err,
                                             sizeof err),
                     0);
    assert_int_equal(safetensors_save_params(temp_path("p_extra.safetensors"), &extra,
                                             SAFETENSORS_DATA, SAFETENSORS_F32, NULL, err,
                                             sizeof err),
                     0);
    params_free(&missing), params_free(&misshapen), params_free(&extra);
}

/* Paths in argv written as "@name" are files in the temp directory. */
static const BadRun bad_runs[] = {
    {2, "which layer?", {NULL}},
    {2, "which layer?", {"--in", "@x3.npy", NULL}},
    {2, "unknown layer 'dense' (layers: linear layernorm embedding attention", {"dense", NULL}},
    {2,
     "linear has no key 'width' (its keys: in out bias)",
     {"linear", "--set", "width=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: key 'out' needs a value (--set out=VALUE)",
     {"linear", "--set", "out", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: key 'out' needs a value",
     {"linear", "--set", "out=", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: out='abc' is not an integer",
     {"linear", "--set", "out=abc", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: out='3.5' is not an integer",
     {"linear", "--set", "out=3.5", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: out='99999999999' is not an integer",
     {"linear", "--set", "out=99999999999", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: bias='2' must be 0 or 1",
     {"linear", "--set", "out=3", "--set", "bias=2", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "layernorm: eps='small' is not a number",
     {"layernorm", "--set", "eps=small", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "layernorm: eps='nan' is not a number",
     {"layernorm", "--set", "eps=nan", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "layernorm: eps=-1 must be positive",
     {"layernorm", "--set", "eps=-1", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: key 'out' is set twice",
     {"linear", "--set", "out=3", "--set", "out=4", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2, "--in x.npy is required", {"linear", "--set", "out=3", "--out", "@o", NULL}},
    {2, "--out DIR is required", {"linear", "--set", "out=3", "--in", "@x3.npy", NULL}},
    {2, "--in needs a value", {"linear", "--set", "out=3", "--out", "@o", "--in", NULL}},
    {2, "--in needs a value", {"linear", "--in", "--out", "@o", NULL}},
    {2,
     "--in given twice",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "unknown option '--verbose'",
     {"linear", "--verbose", "--set", "out=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "--params and --seed exclude each other",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--seed", "1", "--params",
      "@p_missing.safetensors", "--out", "@o", NULL}},
    {2,
     "--seed '-1' is not a non-negative integer",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--seed", "-1", "--out", "@o", NULL}},
    {2,
     "linear: key 'out' is required (--set out=N)",
     {"linear", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "conv1d: key 'kernel' is required",
     {"conv1d", "--set", "out=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "attention: heads=3 does not divide dim=4",
     {"attention", "--set", "heads=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "conv1d: causal=1 pads kernel-1 on the left itself; padding=1 must be 0",
     {"conv1d", "--set", "out=3", "--set", "kernel=2", "--set", "causal=1", "--set", "padding=1",
      "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "linear: in=0 must be positive",
     {"linear", "--set", "in=0", "--set", "out=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {1, "absent.npy", {"linear", "--set", "out=3", "--in", "@absent.npy", "--out", "@o", NULL}},
    {1, "garbage.npy", {"linear", "--set", "out=3", "--in", "@garbage.npy", "--out", "@o", NULL}},
    {1,
     "x2.npy: x has shape (3, 4), but attention takes x (B, N, dim)",
     {"attention", "--in", "@x2.npy", "--out", "@o", NULL}},
    {1,
     "x3.npy: x has shape (2, 3, 4), but conv2d takes x (B, in, H, W)",
     {"conv2d", "--set", "out=2", "--set", "kernel=1", "--in", "@x3.npy", "--out", "@o", NULL}},
    {1,
     "linear: x must be (..., 5), got shape (2, 3, 4)",
     {"linear", "--set", "in=5", "--set", "out=3", "--in", "@x3.npy", "--out", "@o", NULL}},
    {1,
     "conv1d: x of shape (2, 3, 4) padded by 0+0 is shorter than kernel=9",
     {"conv1d", "--set", "out=3", "--set", "kernel=9", "--in", "@x3.npy", "--out", "@o", NULL}},
    {1,
     "p_missing.safetensors: missing tensor 'bias' (the model expects shape (3))",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--params", "@p_missing.safetensors", "--out",
      "@o", NULL}},
    {1,
     "p_misshapen.safetensors: tensor 'weight' has shape (4, 3) but the model expects (3, 4)",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--params", "@p_misshapen.safetensors",
      "--out", "@o", NULL}},
    {1,
     "p_extra.safetensors: unexpected tensor 'scale'",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--params", "@p_extra.safetensors", "--out",
      "@o", NULL}},
    {1,
     "garbage.npy",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--params", "@garbage.npy", "--out", "@o",
      NULL}},
    {1,
     "gy_wrong.npy: dL/dy has shape (2, 3, 3) but y is (2, 3, 4)",
     {"linear", "--set", "out=4", "--in", "@x3.npy", "--grad-out", "@gy_wrong.npy", "--out", "@o",
      NULL}},
    {1,
     "ids_frac.npy",
     {"embedding", "--set", "vocab=4", "--set", "dim=2", "--in", "@ids_frac.npy", "--out", "@o",
      NULL}},
    {1,
     "9",
     {"embedding", "--set", "vocab=4", "--set", "dim=2", "--in", "@ids_big.npy", "--out", "@o",
      NULL}},
    {1, "a_file", {"linear", "--set", "out=3", "--in", "@x3.npy", "--out", "@a_file/sub", NULL}},
    {1,
     "a_file: not a directory",
     {"linear", "--set", "out=3", "--in", "@x3.npy", "--out", "@a_file", NULL}},
    {2,
     "block: pool_feeds='sideways' is not one of kv|qkv|stream",
     {"block", "--set", "pool_feeds=sideways", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "block: pool='maxpool' is not one of none|contextpool",
     {"block", "--set", "pool=maxpool", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "block: cp_impl='fast' is not one of fused|composed",
     {"block", "--set", "cp_impl=fast", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "contextpool1d: weights='random' is not one of learned|uniform",
     {"contextpool1d", "--set", "weights=random", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "contextpool1d: size='0' is not one of adaptive|fixed",
     {"contextpool1d", "--set", "size=0", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "attention: span='fixed' is not one of none|adaptive",
     {"attention", "--set", "span=fixed", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "attention: window=-1 must be >= 0",
     {"attention", "--set", "window=-1", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "block: causal=1 with grid_h=1, grid_w=3: image tokens have no order",
     {"block", "--set", "causal=1", "--set", "grid_h=1", "--set", "grid_w=3", "--in", "@x3.npy",
      "--out", "@o", NULL}},
    {1,
     "block: x of shape (2, 3, 4) has N=3 tokens, but grid_h=2 x grid_w=2 is 4",
     {"block", "--set", "pool=contextpool", "--set", "grid_h=2", "--set", "grid_w=2", "--in",
      "@x3.npy", "--out", "@o", NULL}},
    {2,
     "contextpool: s_min=-1 must be positive",
     {"contextpool1d", "--set", "s_min=-1", "--in", "@x3.npy", "--out", "@o", NULL}},
    {2,
     "contextpool2d: stride=3 must be 1 or 2",
     {"contextpool2d", "--set", "stride=3", "--in", "@x4.npy", "--out", "@o", NULL}},
    {1,
     "x3.npy: x has shape (2, 3, 4), but contextpool2d takes x (B, C, H, W)",
     {"contextpool2d", "--in", "@x3.npy", "--out", "@o", NULL}},
#ifndef CPOOL_DOUBLE
    {2,
     "--double: this program computes in float32",
     {"linear", "--double", "--set", "out=3", "--in", "@x3.npy", "--out", "@o", NULL}},
#endif
};

static void every_bad_input_is_one_line_with_the_right_status(void **state) {
    (void)state;
    make_bad_inputs();
    char paths[24][512];
    for (size_t c = 0; c < sizeof bad_runs / sizeof *bad_runs; c++) {
        const BadRun *bad = &bad_runs[c];
        char *argv[25] = {"lab"};
        int argc = 1;
        for (int i = 0; bad->argv[i]; i++) {
            if (bad->argv[i][0] == '@') {
                snprintf(paths[i], sizeof paths[i], "%s/%s", temp_dir, bad->argv[i] + 1);
                argv[argc++] = paths[i];
            } else {
                argv[argc++] = (char *)bad->argv[i];
            }
        }
        char err[1024] = "";
        int status = lab_run(argc, argv, NULL, err, sizeof err);
        if (status != bad->status)
            fail_msg("case %zu (%s): exit %d, expected %d; error: %s", c, bad->expected, status,
                     bad->status, err);
        if (!strstr(err, bad->expected))
            fail_msg("case %zu: error \"%s\" does not mention \"%s\"", c, err, bad->expected);
        if (strchr(err, '\n')) fail_msg("case %zu: error \"%s\" is not one line", c, err);
        /* Nothing is written when anything is wrong. */
        if (exists(temp_dir, "o")) fail_msg("case %zu: the output directory was created", c);
    }
}

int main(void) {
    (void)test_catch_error; /* lab_run catches cpool_fail itself: EXPECT_FAIL is not needed */
    (void)test_escape;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_output_and_gradients_match_the_layer),
        cmocka_unit_test(attention_writes_probabilities_that_match_the_layer),
        cmocka_unit_test(block_and_conv_match_their_layers),
        cmocka_unit_test(contextpool_layers_write_weights_and_support),
        cmocka_unit_test(block_writes_pool_outputs_only_with_a_pool),
        cmocka_unit_test(embedding_takes_ids_and_writes_no_grad_in),
        cmocka_unit_test(params_written_by_one_run_reproduce_it),
        cmocka_unit_test(a_pytorch_fixture_replayed_through_the_lab_matches),
        cmocka_unit_test(contextpool_fixtures_replayed_through_the_lab_match),
        cmocka_unit_test(help_lists_every_layer_and_key),
        cmocka_unit_test(every_bad_input_is_one_line_with_the_right_status),
    };
    return cmocka_run_group_tests_name("lab (" REAL_NAME ")", tests, make_temp_dir,
                                       remove_temp_dir);
}
