/* run_config.c - see run_config.h.
 *
 * One table, run_keys[], says everything about every key: the type and place (offsetof) of the
 * field it sets, the values it accepts, the models it applies to and its help line. Setting,
 * parsing, formatting and --help all walk that table; no key has code of its own. The one key
 * that does more than store a value is `model` (type KEY_MODEL): it resets every other key to
 * its model's defaults, which is why it must come first.
 *
 * A value is parsed in full before anything is stored, so a rejected assignment leaves the run
 * as it was. */
#include "run_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_data.h"
#include "util.h"

typedef enum KeyType {
    KEY_INT,           /* int field: an integer in min..max */
    KEY_LONG,          /* long field: an integer in min..max */
    KEY_SEED,          /* unsigned long long field: any unsigned 64-bit integer */
    KEY_REAL_POSITIVE, /* double field: a finite number > 0 */
    KEY_REAL_NONNEG,   /* double field: a finite number >= 0 */
    KEY_CHOICE,        /* int or enum field: the index of the value among choices "a|b|c" */
    KEY_MODEL,         /* the model kind: a choice that also resets every other key */
    KEY_PATH           /* char[RUN_PATH_MAX] field: a non-empty path */
} KeyType;

typedef struct RunKey {
    const char *name;
    KeyType type;
    size_t offset;       /* of the field in RunConfig */
    long long min, max;  /* KEY_INT, KEY_LONG: the accepted range */
    const char *choices; /* KEY_CHOICE, KEY_MODEL: the names, '|'-separated; value = index */
    const char *models;  /* the models it applies to (others accept and ignore it) */
    const char *help;    /* one line: what it does, its unit, what 0 means */
} RunKey;

/* Choices are stored through an int lvalue: the enums must be ints. */
_Static_assert(sizeof(ModelKind) == sizeof(int), "ModelKind is stored as an int");
_Static_assert(sizeof(ModelPool) == sizeof(int), "ModelPool is stored as an int");
_Static_assert(sizeof(BlockPoolFeeds) == sizeof(int), "BlockPoolFeeds is stored as an int");

#define MODEL(field) offsetof(RunConfig, model.field)
#define CP(field)    offsetof(RunConfig, model.variant.cp.field)
#define ATTN(field)  offsetof(RunConfig, model.variant.attn.field)
#define TRAIN(field) offsetof(RunConfig, train.field)

/* The choices' order is the enums' (model.h, block.h); learned|... store 0, the ablation 1. */
static const RunKey run_keys[] = {
    /* name, type, field, min, max, choices, models, help */
    {"model", KEY_MODEL, MODEL(kind), 0, 0, "charlm|vit|cnn", "all",
     "charlm, vit or cnn; comes first: it sets the other keys' defaults"},
    {"dim", KEY_INT, MODEL(dim), 1, 4096, NULL, "charlm vit", "width of every token vector"},
    {"heads", KEY_INT, MODEL(heads), 1, 256, NULL, "charlm vit",
     "attention heads per block (must divide dim)"},
    {"layers", KEY_INT, MODEL(layers), 1, MODEL_MAX_LAYERS, NULL, "charlm vit",
     "transformer blocks"},
    {"ffn_hidden", KEY_INT, MODEL(ffn_hidden), 0, 65536, NULL, "charlm vit",
     "hidden width of each block's feed-forward net; 0: 4 * dim"},
    {"seq_len", KEY_INT, MODEL(seq_len), 1, 65536, NULL, "charlm",
     "longest context in bytes (rows of pos.weight)"},
    {"tie", KEY_INT, MODEL(tie), 0, 1, NULL, "charlm",
     "1: the output head is the token table; 0: a head of its own"},
    {"patch", KEY_INT, MODEL(patch), 1, 28, NULL, "vit", "patch side in pixels, dividing 28"},
    {"channels", KEY_INT, MODEL(channels), 1, 1024, NULL, "cnn",
     "channels of the first stage (then 2x, 4x)"},
    {"pool", KEY_CHOICE, MODEL(pool), 0, 0, "none|avg|contextpool", "all",
     "none (transformers), avg (cnn: 2x2 mean) or contextpool"},
    {"pool_feeds", KEY_CHOICE, MODEL(variant.pool_feeds), 0, 0, "kv|qkv|stream", "charlm vit",
     "the pool feeds: kv attention's keys, values; qkv all three; stream"},
    {"weights", KEY_CHOICE, CP(weights_uniform), 0, 0, "learned|uniform", "all",
     "learned: contextpool predicts weights w; uniform: all 1 (ablation)"},
    {"size", KEY_CHOICE, CP(size_fixed), 0, 0, "learned|fixed", "all",
     "learned: contextpool predicts sizes s; fixed: all s_fixed (ablation)"},
    {"s_fixed", KEY_REAL_POSITIVE, CP(s_fixed), 0, 0, NULL, "all",
     "support size with size=fixed, in tokens (pixels)"},
    {"s_min", KEY_REAL_POSITIVE, CP(s_min), 0, 0, NULL, "all",
     "smallest support size (the Gaussian's std), in tokens (pixels)"},
    {"s_max", KEY_REAL_POSITIVE, CP(s_max), 0, 0, NULL, "all",
     "largest support size, in tokens (pixels)"},
    {"radius", KEY_INT, CP(radius), 0, 4096, NULL, "all",
     "contextpool's reach in tokens (pixels); 0: ceil(3 s_max)"},
    {"pred_hidden", KEY_INT, CP(hidden), 0, 4096, NULL, "all",
     "width of contextpool's predictor; 0: max(8, dim/4)"},
    {"pred_kernel", KEY_INT, CP(kernel), 0, 63, NULL, "all",
     "predictor's first kernel, in tokens (2-d: always 3x3); 0: 3"},
    {"window", KEY_INT, ATTN(window), 0, 65536, NULL, "charlm vit",
     "local attention: keys within this many tokens; 0: full attention"},
    {"span", KEY_INT, ATTN(span), 0, 1, NULL, "charlm vit",
     "1: adaptive attention span (Sukhbaatar et al. 2019); 0: off"},
    {"span_max", KEY_INT, ATTN(span_max), 0, 65536, NULL, "charlm vit",
     "longest adaptive span, in tokens; 0: 256"},
    {"span_ramp", KEY_INT, ATTN(span_ramp), 0, 65536, NULL, "charlm vit",
     "width of the adaptive span's soft edge, in tokens; 0: 32"},
    {"span_coef", KEY_REAL_NONNEG, ATTN(span_coef), 0, 0, NULL, "charlm vit",
     "weight of the span penalty in the loss; 0: 2e-6"},

    {"data", KEY_PATH, TRAIN(data), 0, 0, NULL, "all",
     "charlm: the text file; vit, cnn: the Fashion-MNIST directory"},
    {"batch", KEY_INT, TRAIN(batch), 1, 65536, NULL, "all",
     "examples per step (sequences of seq_len bytes, or images)"},
    {"steps", KEY_LONG, TRAIN(steps), 1, 1000000000, NULL, "all", "optimizer steps in the run"},
    {"lr", KEY_REAL_POSITIVE, TRAIN(lr), 0, 0, NULL, "all", "peak learning rate (after warm-up)"},
    {"min_lr", KEY_REAL_NONNEG, TRAIN(min_lr), 0, 0, NULL, "all",
     "learning rate at the end of the cosine decay"},
    {"warmup", KEY_LONG, TRAIN(warmup), 0, LONG_MAX, NULL, "all",
     "steps of linear learning-rate warm-up; 0: none"},
    {"weight_decay", KEY_REAL_NONNEG, TRAIN(weight_decay), 0, 0, NULL, "all",
     "AdamW's decoupled decay of matrices and kernels; 0: none"},
    {"clip", KEY_REAL_NONNEG, TRAIN(clip), 0, 0, NULL, "all",
     "largest gradient norm (larger ones are scaled down); 0: none"},
    {"eval_every", KEY_LONG, TRAIN(eval_every), 0, LONG_MAX, NULL, "all",
     "validate every this many steps and at the end; 0: at the end only"},
    {"eval_batches", KEY_INT, TRAIN(eval_batches), 0, INT_MAX, NULL, "all",
     "validation batches per evaluation; 0: the whole validation split"},
    {"checkpoint_every", KEY_LONG, TRAIN(checkpoint_every), 1, LONG_MAX, NULL, "all",
     "write a checkpoint every this many steps and at the end"},
    {"seed", KEY_SEED, TRAIN(seed), 0, 0, NULL, "all",
     "seed of the initialisation and the batches (unsigned 64-bit)"},
    {"n_valid", KEY_INT, TRAIN(n_valid), 1, 59999, NULL, "vit cnn",
     "training images held out for validation"},
};

#define RUN_KEY_COUNT ((int)(sizeof run_keys / sizeof run_keys[0]))

/* --- Defaults ----------------------------------------------------------------------------------
 */

static const TrainConfig charlm_train = {
    .data = "data/kjv.txt",
    .batch = 16,
    .steps = 2000,
    .lr = 2e-3,
    .min_lr = 2e-4,
    .warmup = 100,
    .weight_decay = 0.1,
    .clip = 1.0,
    .eval_every = 250,
    .eval_batches = 16,
    .checkpoint_every = 500,
    .seed = 1,
    .n_valid = 5000,
};

static const TrainConfig image_train = {
    .data = FASHION_MNIST_DIR,
    .batch = 64,
    .steps = 2000,
    .lr = 1e-3,
    .min_lr = 1e-4,
    .warmup = 100,
    .weight_decay = 0.05,
    .clip = 1.0,
    .eval_every = 250,
    .eval_batches = 20,
    .checkpoint_every = 500,
    .seed = 1,
    .n_valid = 5000,
};

void run_config_defaults(RunConfig *run, ModelKind kind) {
    if (kind != MODEL_CHARLM && kind != MODEL_VIT && kind != MODEL_CNN)
        cpool_fail("run_config_defaults: unknown model kind %d", (int)kind);
    memset(run, 0, sizeof *run);
    run->model = model_default_config(kind);
    run->train = kind == MODEL_CHARLM ? charlm_train : image_train;
}

/* --- Reading one value ---------------------------------------------------------------------------
 */

/* A piece of a longer string (not NUL-terminated). */
typedef struct Text {
    const char *start;
    size_t len;
} Text;

static Text trim(Text text) {
    while (text.len > 0 && isspace((unsigned char)text.start[0])) text.start++, text.len--;
    while (text.len > 0 && isspace((unsigned char)text.start[text.len - 1])) text.len--;
    return text;
}

static int text_is(Text text, const char *word) {
    return strlen(word) == text.len && strncmp(text.start, word, text.len) == 0;
}

static const RunKey *find_key(Text name) {
    for (int k = 0; k < RUN_KEY_COUNT; k++)
        if (text_is(name, run_keys[k].name)) return &run_keys[k];
    return NULL;
}

/* The index of value among the '|'-separated names of choices, or -1. */
static int choice_index(const char *choices, const char *value) {
    size_t value_len = strlen(value);
    int index = 0;
    for (const char *name = choices;; index++) {
        size_t len = strcspn(name, "|");
        if (len == value_len && strncmp(name, value, len) == 0) return index;
        if (name[len] == '\0') return -1;
        name += len + 1;
    }
}

/* What a key accepts, for messages: "an integer in 1..16", "a number > 0", ... */
static void describe_expected(const RunKey *key, char *out, size_t out_len) {
    long long type_max = key->type == KEY_INT ? INT_MAX : LONG_MAX;
    switch (key->type) {
    case KEY_INT:
    case KEY_LONG:
        if (key->max == type_max)
            snprintf(out, out_len, "an integer >= %lld", key->min);
        else
            snprintf(out, out_len, "an integer in %lld..%lld", key->min, key->max);
        break;
    case KEY_SEED:
        snprintf(out, out_len, "an integer in 0..%llu", ULLONG_MAX);
        break;
    case KEY_REAL_POSITIVE:
        snprintf(out, out_len, "a number > 0");
        break;
    case KEY_REAL_NONNEG:
        snprintf(out, out_len, "a number >= 0");
        break;
    case KEY_CHOICE:
    case KEY_MODEL:
        snprintf(out, out_len, "one of %s", key->choices);
        break;
    case KEY_PATH:
        snprintf(out, out_len, "a path of at most %d bytes", RUN_PATH_MAX - 1);
        break;
    }
}

/* A parsed value, before it is stored. */
typedef union KeyValue {
    long long integer; /* KEY_INT, KEY_LONG, KEY_CHOICE, KEY_MODEL */
    unsigned long long seed;
    double real;
} KeyValue;

/* value (NUL-terminated, trimmed, non-empty) as an integer in the key's range. */
static int parse_integer(const RunKey *key, const char *value, KeyValue *out, char *why,
                         size_t why_len) {
    char expected[64];
    describe_expected(key, expected, sizeof expected);
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end != '\0') {
        snprintf(why, why_len, "expected an integer, got '%s'", value);
        return -1;
    }
    if (errno == ERANGE || v < key->min || v > key->max) {
        snprintf(why, why_len, "expected %s", expected);
        return -1;
    }
    out->integer = v;
    return 0;
}

/* strtoull would take "-1" as 2^64 - 1: a seed starts with a digit. */
static int parse_seed(const RunKey *key, const char *value, KeyValue *out, char *why,
                      size_t why_len) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (!isdigit((unsigned char)value[0]) || *end != '\0') {
        snprintf(why, why_len, "expected an integer, got '%s'", value);
        return -1;
    }
    if (errno == ERANGE) {
        char expected[64];
        describe_expected(key, expected, sizeof expected);
        snprintf(why, why_len, "expected %s", expected);
        return -1;
    }
    out->seed = v;
    return 0;
}

static int parse_real(const RunKey *key, const char *value, KeyValue *out, char *why,
                      size_t why_len) {
    char expected[64];
    describe_expected(key, expected, sizeof expected);
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0') {
        snprintf(why, why_len, "expected a number, got '%s'", value);
        return -1;
    }
    if (errno == ERANGE || !isfinite(v)) {
        snprintf(why, why_len, "expected %s, got '%s' (%s)", expected, value,
                 isnan(v) ? "not a number" : "beyond a double's range");
        return -1;
    }
    if (key->type == KEY_REAL_POSITIVE ? !(v > 0) : !(v >= 0)) {
        snprintf(why, why_len, "expected %s", expected);
        return -1;
    }
    out->real = v;
    return 0;
}

/* A path is written back into config files, where '#' starts a comment and a line ends at a
 * newline: neither may be part of it. */
static int check_path(const char *value, char *why, size_t why_len) {
    for (const char *c = value; *c; c++)
        if (*c == '#' || iscntrl((unsigned char)*c)) {
            snprintf(why, why_len, "a path cannot hold '#' or control characters");
            return -1;
        }
    return 0;
}

/* value (NUL-terminated, trimmed) as the key's type: 0, or -1 with the reason in why. */
static int parse_value(const RunKey *key, const char *value, KeyValue *out, char *why,
                       size_t why_len) {
    if (value[0] == '\0') {
        char expected[64];
        describe_expected(key, expected, sizeof expected);
        snprintf(why, why_len, "expected %s, got nothing", expected);
        return -1;
    }
    switch (key->type) {
    case KEY_INT:
    case KEY_LONG:
        return parse_integer(key, value, out, why, why_len);
    case KEY_SEED:
        return parse_seed(key, value, out, why, why_len);
    case KEY_REAL_POSITIVE:
    case KEY_REAL_NONNEG:
        return parse_real(key, value, out, why, why_len);
    case KEY_CHOICE:
    case KEY_MODEL:
        out->integer = choice_index(key->choices, value);
        if (out->integer >= 0) return 0;
        snprintf(why, why_len, "expected one of %s, got '%s'", key->choices, value);
        return -1;
    case KEY_PATH:
        return check_path(value, why, why_len);
    }
    return -1;
}

/* --- Storing and comparing values ------------------------------------------------------------- */

static void *field_of(RunConfig *run, const RunKey *key) {
    return (char *)run + key->offset;
}

static const void *const_field_of(const RunConfig *run, const RunKey *key) {
    return (const char *)run + key->offset;
}

/* Store a value parse_value accepted (KEY_MODEL is handled by its caller). */
static void store_value(RunConfig *run, const RunKey *key, const KeyValue *value,
                        const char *text) {
    void *field = field_of(run, key);
    switch (key->type) {
    case KEY_INT:
    case KEY_CHOICE:
    case KEY_MODEL:
        *(int *)field = (int)value->integer;
        break;
    case KEY_LONG:
        *(long *)field = (long)value->integer;
        break;
    case KEY_SEED:
        *(unsigned long long *)field = value->seed;
        break;
    case KEY_REAL_POSITIVE:
    case KEY_REAL_NONNEG:
        *(double *)field = value->real;
        break;
    case KEY_PATH:
        snprintf((char *)field, RUN_PATH_MAX, "%s", text);
        break;
    }
}

static int same_value(const RunKey *key, const RunConfig *a, const RunConfig *b) {
    const void *x = const_field_of(a, key), *y = const_field_of(b, key);
    switch (key->type) {
    case KEY_INT:
    case KEY_CHOICE:
    case KEY_MODEL:
        return *(const int *)x == *(const int *)y;
    case KEY_LONG:
        return *(const long *)x == *(const long *)y;
    case KEY_SEED:
        return *(const unsigned long long *)x == *(const unsigned long long *)y;
    case KEY_REAL_POSITIVE:
    case KEY_REAL_NONNEG:
        return *(const double *)x == *(const double *)y;
    case KEY_PATH:
        return strcmp((const char *)x, (const char *)y) == 0;
    }
    return 0;
}

/* Whether every key of run still holds its model's default. run_config_set cannot see which
 * keys came before a model=, only whether one changed anything. */
static int is_default(const RunConfig *run) {
    RunConfig defaults;
    run_config_defaults(&defaults, run->model.kind);
    for (int k = 0; k < RUN_KEY_COUNT; k++)
        if (!same_value(&run_keys[k], run, &defaults)) return 0;
    return 1;
}

/* The value of key in run as text that parse_value reads back exactly: doubles with the fewest
 * digits (15 to 17) that give back the same double. */
static void format_value(const RunKey *key, const RunConfig *run, char *out, size_t out_len) {
    const void *field = const_field_of(run, key);
    switch (key->type) {
    case KEY_INT:
        snprintf(out, out_len, "%d", *(const int *)field);
        break;
    case KEY_LONG:
        snprintf(out, out_len, "%ld", *(const long *)field);
        break;
    case KEY_SEED:
        snprintf(out, out_len, "%llu", *(const unsigned long long *)field);
        break;
    case KEY_REAL_POSITIVE:
    case KEY_REAL_NONNEG: {
        double v = *(const double *)field;
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(out, out_len, "%.*g", digits, v);
            if (strtod(out, NULL) == v) break;
        }
        break;
    }
    case KEY_CHOICE:
    case KEY_MODEL: {
        int index = *(const int *)field;
        const char *name = key->choices;
        for (int i = 0; i < index && name; i++)
            if ((name = strchr(name, '|'))) name++;
        if (index >= 0 && name)
            snprintf(out, out_len, "%.*s", (int)strcspn(name, "|"), name);
        else
            snprintf(out, out_len, "%d", index); /* not a choice: parsing will say so */
        break;
    }
    case KEY_PATH:
        snprintf(out, out_len, "%s", (const char *)field);
        break;
    }
}

/* --- Assignments ------------------------------------------------------------------------------ */

/* "where: key=value: why", the value shortened to its first 60 bytes. */
static int assignment_error(char *err, size_t err_len, const char *where, Text key, Text value,
                            const char *why) {
    int shown = value.len > 60 ? 60 : (int)value.len;
    snprintf(err, err_len, "%s: %.*s=%.*s%s: %s", where, (int)key.len, key.start, shown,
             value.start, value.len > 60 ? "..." : "", why);
    return -1;
}

/* key = value (both trimmed) into run. model_may_change: whether a model= is still allowed. */
static int assign(RunConfig *run, Text key_name, Text value_text, int model_may_change,
                  const char *where, char *err, size_t err_len) {
    const RunKey *key = find_key(key_name);
    if (!key) {
        snprintf(err, err_len, "%s: unknown key '%.*s' (`cpool train --help` lists the keys)",
                 where, (int)key_name.len, key_name.start);
        return -1;
    }
    char value[RUN_PATH_MAX], why[RUN_PATH_MAX + 128];
    if (value_text.len >= sizeof value) {
        char expected[64];
        describe_expected(key, expected, sizeof expected);
        snprintf(why, sizeof why, "expected %s, got %zu bytes", expected, value_text.len);
        return assignment_error(err, err_len, where, key_name, value_text, why);
    }
    memcpy(value, value_text.start, value_text.len);
    value[value_text.len] = '\0';
    KeyValue parsed = {0};
    if (parse_value(key, value, &parsed, why, sizeof why) != 0)
        return assignment_error(err, err_len, where, key_name, value_text, why);
    if (key->type == KEY_MODEL) {
        if (!model_may_change)
            return assignment_error(err, err_len, where, key_name, value_text,
                                    "model must be the first key (it sets the defaults of every "
                                    "other key)");
        run_config_defaults(run, (ModelKind)parsed.integer);
        return 0;
    }
    store_value(run, key, &parsed, value);
    return 0;
}

/* Split "key = value" at its first '=': 0, or -1 when there is no '=' or no key. */
static int split_assignment(Text assignment, Text *key, Text *value) {
    const char *equals = memchr(assignment.start, '=', assignment.len);
    if (!equals) return -1;
    *key = trim((Text){assignment.start, (size_t)(equals - assignment.start)});
    *value = trim((Text){equals + 1, assignment.len - (size_t)(equals + 1 - assignment.start)});
    return key->len > 0 ? 0 : -1;
}

static int malformed_error(char *err, size_t err_len, const char *where, Text line) {
    snprintf(err, err_len, "%s: '%.*s': expected key = value", where, (int)line.len, line.start);
    return -1;
}

int run_config_set(RunConfig *run, const char *assignment, const char *where, char *err,
                   size_t err_len) {
    Text whole = trim((Text){assignment, strlen(assignment)}), key, value;
    if (split_assignment(whole, &key, &value) != 0)
        return malformed_error(err, err_len, where, whole);
    return assign(run, key, value, is_default(run), where, err, err_len);
}

int run_config_parse(RunConfig *run, const char *text, const char *source, char *err,
                     size_t err_len) {
    RunConfig parsed;
    run_config_defaults(&parsed, MODEL_CHARLM);
    int keys_seen = 0, line_number = 0;
    for (const char *line = text; *line != '\0';) {
        line_number++;
        size_t line_len = strcspn(line, "\n");
        /* The part before any '#' comment. */
        Text content = trim((Text){line, strcspn(line, "#\n")}), key, value;
        line += line_len + (line[line_len] == '\n');
        if (content.len == 0) continue;
        char where[256];
        snprintf(where, sizeof where, "%s:%d", source, line_number);
        if (split_assignment(content, &key, &value) != 0)
            return malformed_error(err, err_len, where, content);
        if (assign(&parsed, key, value, keys_seen == 0, where, err, err_len) != 0) return -1;
        keys_seen++;
    }
    *run = parsed;
    return 0;
}

char *run_config_format(const RunConfig *run) {
    char value[RUN_PATH_MAX + 32];
    size_t total = 1;
    for (int k = 0; k < RUN_KEY_COUNT; k++) {
        format_value(&run_keys[k], run, value, sizeof value);
        total += strlen(run_keys[k].name) + strlen(" = \n") + strlen(value);
    }
    char *text = xmalloc(total);
    size_t used = 0;
    text[0] = '\0';
    for (int k = 0; k < RUN_KEY_COUNT; k++) {
        format_value(&run_keys[k], run, value, sizeof value);
        used += (size_t)snprintf(text + used, total - used, "%s = %s\n", run_keys[k].name, value);
    }
    return text;
}

/* --- Help ------------------------------------------------------------------------------------- */

const RunKeyHelp *run_config_keys(int *count) {
    /* Filled from run_keys on every call (the same values each time), so the table stays the
     * one place where a key is described. */
    static RunKeyHelp help[RUN_KEY_COUNT];
    for (int k = 0; k < RUN_KEY_COUNT; k++)
        help[k] = (RunKeyHelp){run_keys[k].name, run_keys[k].models, run_keys[k].help};
    if (count) *count = RUN_KEY_COUNT;
    return help;
}
