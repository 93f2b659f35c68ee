/* test_plot.c - figures: gnuplot.c writes a PNG atomically or not at all, `cpool plot` draws
 * every kind from the right numbers, and every bad input is one line with the right exit status
 * (2 usage, 1 data).
 *
 * The command's core (plot_run) and gnuplot.c are compiled into this test from tools/. Each
 * test works in the suite's temporary directory; the checkpoints are tiny models written here
 * (initialised, not trained: the figures must show whatever the model computes). */
#include "test_temp_dir.h"
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tools/cmd_plot.c"
#include "../tools/gnuplot.c"
#include "../tools/plot_attention.c"
#include "../tools/plot_cost.c"
#include "../tools/plot_curves.c"
#include "../tools/plot_hist.c"
#include "../tools/plot_image.c"
#include "../tools/plot_job.c"
#include "../tools/plot_model.c"
#include "../tools/plot_run.c"
#include "../tools/plot_text.c"

#include "checkpoint.h"
#include "ops.h"

static int make_temp_dir(void **state) {
    (void)state;
    return temp_dir_create("plot-test");
}

static int remove_temp_dir(void **state) {
    (void)state;
    return temp_dir_remove();
}

static int exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* The whole file as a string (malloc'd), or NULL. */
static char *read_text(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    char *text = malloc((size_t)n + 1);
    text[fread(text, 1, (size_t)n, fp)] = '\0';
    fclose(fp);
    return text;
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A PNG: exists and starts with the PNG signature. */
static void assert_png(const char *path) {
    unsigned char magic[8] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("%s was not written", path);
    size_t got = fread(magic, 1, 8, fp);
    fclose(fp);
    assert_int_equal(got, 8);
    assert_memory_equal(magic, "\x89PNG\r\n\x1a\n", 8);
}

/* No file of the temp directory has ".tmp." in its name (a PNG drawn but not renamed). */
static void assert_no_temp_files(void) {
    DIR *dir = opendir(temp_dir);
    for (struct dirent *d; (d = readdir(dir));)
        if (strstr(d->d_name, ".tmp.")) fail_msg("left behind: %s", d->d_name);
    closedir(dir);
}

/* Run `cpool plot ARGS...` (NULL-terminated); err receives the error line. */
static int run_plot(char *err, size_t err_len, ...) {
    char *argv[64] = {"plot"};
    int argc = 1;
    va_list args;
    va_start(args, err_len);
    for (const char *a; (a = va_arg(args, const char *));) argv[argc++] = (char *)a;
    va_end(args);
    return plot_run(argc, argv, NULL, err, err_len);
}

/* Standard output (ours and gnuplot's) into a file while capturing; returns the saved fd. */
static int capture_stdout(const char *path) {
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    return saved;
}

static void restore_stdout(int saved) {
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
}

/* ------------------------------------------------------------------------------------------ */
/* gnuplot.c                                                                                  */

/* A line plot of three points, with the given script line after the data. */
static int draw_line(const char *out, FigureTerm term, const char *extra, char *err,
                     size_t err_len) {
    Figure fig;
    if (figure_open(&fig, out, term, err, err_len) != 0) return -1;
    FILE *data = figure_data(&fig, "line");
    fprintf(data, "0 1\n1 3\n2 2\n");
    assert_ptr_equal(figure_data(&fig, "line"), data); /* the same stream, once opened */
    figure_script(&fig, "set title 'three points'\n%s", extra);
    figure_script(&fig, "plot '%s' using 1:2 with lines\n", figure_data_path(&fig, "line"));
    return figure_close(&fig, err, err_len);
}

static void figure_writes_png_script_and_data_beside_it(void **state) {
    (void)state;
    char err[512];
    assert_int_equal(draw_line(temp_path("line.png"), FIGURE_PNG, "", err, sizeof err), 0);
    assert_png(temp_path("line.png"));
    char *script = read_text(temp_path("line.gp"));
    assert_non_null(script);
    assert_non_null(strstr(script, "if (!exists(\"outfile\")) outfile = '"));
    assert_non_null(strstr(script, "line.line.dat"));
    free(script);
    char *data = read_text(temp_path("line.line.dat"));
    assert_string_equal(data, "0 1\n1 3\n2 2\n");
    free(data);
    assert_no_temp_files();
}

static void script_error_leaves_no_png_and_gives_one_line(void **state) {
    (void)state;
    char err[512];
    const char *out = temp_path("broken.png");
    assert_int_equal(draw_line(out, FIGURE_PNG, "set nonsense_option 3\n", err, sizeof err), -1);
    assert_false(exists(out));
    assert_no_temp_files();
    assert_non_null(strstr(err, "gnuplot: "));
    assert_non_null(strstr(err, "broken.gp\" line")); /* names the script and the line */
    assert_null(strchr(err, '\n'));
}

static void failed_redraw_keeps_the_old_png(void **state) {
    (void)state;
    char err[512];
    const char *out = temp_path("kept.png");
    assert_int_equal(draw_line(out, FIGURE_PNG, "", err, sizeof err), 0);
    char *before = read_text(out);
    struct stat info_before, info_after;
    stat(out, &info_before);
    assert_int_equal(draw_line(out, FIGURE_PNG, "plot undefined_name_xyz\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "undefined_name_xyz"));
    stat(out, &info_after);
    assert_int_equal(info_before.st_size, info_after.st_size);
    char *after = read_text(out);
    assert_memory_equal(before, after, (size_t)info_before.st_size);
    free(before);
    free(after);
}

static void dumb_terminal_prints_text_and_writes_no_png(void **state) {
    (void)state;
    char err[512];
    const char *out = temp_path("preview.png"), *text_path = temp_path("preview.txt");
    int saved = capture_stdout(text_path);
    int status = draw_line(out, FIGURE_DUMB, "", err, sizeof err);
    restore_stdout(saved);
    assert_int_equal(status, 0);
    assert_false(exists(out));
    char *text = read_text(text_path);
    assert_non_null(strstr(text, "three points"));
    assert_non_null(strstr(text, "+----")); /* the frame, drawn with characters */
    assert_null(strchr(text, '\033'));      /* no colour codes when not on a terminal */
    free(text);
}

static void missing_gnuplot_is_one_line_naming_the_program(void **state) {
    (void)state;
    char err[512];
    setenv("CPOOL_GNUPLOT", "/nonexistent/gnuplot", 1);
    int status = draw_line(temp_path("nognuplot.png"), FIGURE_PNG, "", err, sizeof err);
    unsetenv("CPOOL_GNUPLOT");
    assert_int_equal(status, -1);
    assert_non_null(strstr(err, "cannot run '/nonexistent/gnuplot'"));
    assert_non_null(strstr(err, "gnuplot-nox"));
    assert_false(exists(temp_path("nognuplot.png")));
}

static void unwritable_directory_is_one_line(void **state) {
    (void)state;
    char err[512];
    Figure fig;
    assert_int_equal(figure_open(&fig, temp_path("no/such/dir/a.png"), FIGURE_PNG, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "no/such/dir/a.gp: cannot write"));
}

static void abort_removes_script_and_data(void **state) {
    (void)state;
    char err[512];
    Figure fig;
    assert_int_equal(figure_open(&fig, temp_path("aborted.png"), FIGURE_PNG, err, sizeof err), 0);
    fprintf(figure_data(&fig, "points"), "1 2\n");
    figure_abort(&fig);
    assert_false(exists(temp_path("aborted.gp")));
    assert_false(exists(temp_path("aborted.points.dat")));
}

static void quotes_in_paths_reach_gnuplot_intact(void **state) {
    (void)state;
    char err[512];
    const char *out = temp_path("it's.png");
    assert_int_equal(draw_line(out, FIGURE_PNG, "", err, sizeof err), 0);
    assert_png(out);
}

static void bad_data_names_are_refused(void **state) {
    (void)state;
    char err[512];
    Figure fig;
    assert_int_equal(figure_open(&fig, temp_path("names.png"), FIGURE_PNG, err, sizeof err), 0);
    EXPECT_FAIL(figure_data(&fig, "a b"), "figure_data: name 'a b'");
    EXPECT_FAIL(figure_data_path(&fig, "never"), "no data file 'never'");
    figure_abort(&fig);
}

/* ------------------------------------------------------------------------------------------ */
/* curves                                                                                     */

#define CSV_HEADER "step,tokens,lr,train_loss,valid_loss,valid_bpc,elapsed_s\n"

/* dir/loss.csv with 4 rows: train loss ln 2 * (4, 3, 2, 1) bits, valid at rows 2 and 4. */
static const char *write_run_csv(const char *dir) {
    static char path[512];
    mkdir(temp_path(dir), 0777);
    snprintf(path, sizeof path, "%s/%s/loss.csv", temp_dir, dir);
    char text[1024];
    snprintf(text, sizeof text,
             CSV_HEADER "10,100,0.001,%.9g,,,1\n20,200,0.001,%.9g,1.5,2.5,2\n"
                        "30,300,0.001,%.9g,,,3\n40,400,0.001,%.9g,1.2,1.75,4\n",
             4 * M_LN2, 3 * M_LN2, 2 * M_LN2, 1 * M_LN2);
    write_text(path, text);
    return path;
}

static void curves_draw_train_and_valid_bpc_of_each_run(void **state) {
    (void)state;
    char err[512], labelled[600];
    char a[512];
    snprintf(a, sizeof a, "%s", write_run_csv("baseline")); /* (a static buffer) */
    snprintf(labelled, sizeof labelled, "%s:with pool", write_run_csv("cp"));
    const char *out = temp_path("curves.png");
    assert_int_equal(
        run_plot(err, sizeof err, "curves", "--csv", a, "--csv", labelled, "--out", out, NULL), 0);
    assert_png(out);
    /* block 0: training loss in bits at every row; block 1: validation bpc where measured */
    char *data = read_text(temp_path("curves.run0.dat"));
    assert_non_null(strstr(data, "train_bpc\n100 4\n200 3\n300 2\n400 1\n\n\n"));
    assert_non_null(strstr(data, "valid_bpc\n200 2.5\n400 1.75\n\n\n"));
    free(data);
    char *script = read_text(temp_path("curves.gp"));
    assert_non_null(strstr(script, "title 'baseline: train'"));  /* the run's directory */
    assert_non_null(strstr(script, "title 'with pool: valid'")); /* the label given */
    assert_non_null(strstr(script, "bits per character"));
    free(script);
}

static void curves_metric_and_x_axis_can_be_chosen(void **state) {
    (void)state;
    char err[512];
    const char *a = write_run_csv("steps");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", a, "--metric", "valid_loss",
                              "--x", "step", "--out", temp_path("steps.png"), NULL),
                     0);
    char *data = read_text(temp_path("steps.run0.dat"));
    assert_non_null(strstr(data, "valid_loss\n20 1.5\n40 1.2\n"));
    free(data);
}

static void curves_bad_inputs_are_one_line_with_status(void **state) {
    (void)state;
    char err[512];
    const char *out = temp_path("bad.png");
    assert_int_equal(
        run_plot(err, sizeof err, "curves", "--csv", temp_path("nope.csv"), "--out", out, NULL), 1);
    assert_non_null(strstr(err, "nope.csv: cannot open"));

    const char *wrong = temp_path("wrong.csv");
    write_text(wrong, "step,tokens,lr,loss,valid_loss,valid_bpc,elapsed_s\n1,2,3,4,5,6,7\n");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", wrong, "--out", out, NULL), 1);
    assert_non_null(strstr(err, "wrong.csv: not a loss.csv: column 4 of the header is 'loss'"));

    const char *cell = temp_path("cell.csv");
    write_text(cell, CSV_HEADER "1,10,0.1,2.0,,,1\n2,20,0.1,abc,,,2\n");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", cell, "--out", out, NULL), 1);
    assert_non_null(strstr(err, "cell.csv:3: column train_loss: expected a number, got 'abc'"));

    const char *short_row = temp_path("short.csv");
    write_text(short_row, CSV_HEADER "1,10,0.1\n");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", short_row, "--out", out, NULL),
                     1);
    assert_non_null(strstr(err, "short.csv:2: expected 7 comma-separated cells"));

    const char *empty = temp_path("empty.csv");
    write_text(empty, CSV_HEADER);
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", empty, "--out", out, NULL), 1);
    assert_non_null(strstr(err, "empty.csv: no rows yet"));

    const char *images = temp_path("images.csv");
    write_text(images, "step,tokens,lr,train_loss,valid_loss,valid_accuracy,elapsed_s\n"
                       "1,64,0.1,2.0,1.9,0.5,1\n");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", images, "--metric", "valid_bpc",
                              "--out", out, NULL),
                     1);
    assert_non_null(strstr(err, "images.csv: no valid_bpc column (its sixth column is "
                                "valid_accuracy)"));
    assert_int_equal(
        run_plot(err, sizeof err, "curves", "--csv", images, "--metric", "bpc", "--out", out, NULL),
        2);
    assert_non_null(strstr(err, "--metric 'bpc': expected"));
    assert_false(exists(out));
    assert_no_temp_files();
}

static void an_unfinished_last_row_is_skipped(void **state) {
    (void)state;
    char err[512];
    const char *csv = temp_path("crashed.csv");
    write_text(csv, CSV_HEADER "1,10,0.1,2.0,,,1\n2,20,0.1,1.9,,,2\n3,30,0.");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", csv, "--metric", "train_loss",
                              "--out", temp_path("crashed.png"), NULL),
                     0);
    char *data = read_text(temp_path("crashed.run0.dat"));
    assert_non_null(strstr(data, "train_loss\n10 2\n20 1.9\n\n\n"));
    free(data);
}

/* ------------------------------------------------------------------------------------------ */
/* The command line                                                                           */

static void usage_errors_exit_2_with_one_line(void **state) {
    (void)state;
    char err[512];
    assert_int_equal(run_plot(err, sizeof err, "pie", "--out", temp_path("x.png"), NULL), 2);
    assert_non_null(strstr(err, "unknown figure 'pie' (kinds: support weights image-support"));
    assert_int_equal(run_plot(err, sizeof err, NULL), 2);
    assert_non_null(strstr(err, "which figure?"));
    assert_int_equal(run_plot(err, sizeof err, "curves", "--csv", "a.csv", NULL), 2);
    assert_string_equal(err, "--out FILE.png is required (or --term dumb)");
    assert_int_equal(run_plot(err, sizeof err, "curves", "--out", "x.png", NULL), 2);
    assert_string_equal(err, "--csv FILE[:label] is required");
    assert_int_equal(run_plot(err, sizeof err, "support", "--out", "x.png", NULL), 2);
    assert_string_equal(err, "--ckpt C is required");
    assert_int_equal(run_plot(err, sizeof err, "support", "--csv", "a.csv", NULL), 2);
    assert_string_equal(err, "--csv does not apply to `cpool plot support`");
    assert_int_equal(run_plot(err, sizeof err, "cost", "--colour", "red", NULL), 2);
    assert_non_null(strstr(err, "unknown option '--colour'"));
    assert_int_equal(run_plot(err, sizeof err, "cost", "--max-n", "1000", NULL), 2);
    assert_string_equal(err, "--max-n 1000: expected a power of 2");
    assert_int_equal(run_plot(err, sizeof err, "cost", "--dim", "x", NULL), 2);
    assert_non_null(strstr(err, "--dim 'x': expected an integer in 1..4096"));
    assert_int_equal(run_plot(err, sizeof err, "cost", "--term", "svg", NULL), 2);
    assert_string_equal(err, "--term 'svg': expected png or dumb");
    assert_int_equal(run_plot(err, sizeof err, "cost", "--out", NULL), 2);
    assert_non_null(strstr(err, "--out needs a value"));
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", "c", "--text", "a", "--data",
                              "f", "--term", "dumb", NULL),
                     2);
    assert_non_null(strstr(err, "--text excludes --data"));
}

static void help_describes_every_kind_and_each_kind_its_options(void **state) {
    (void)state;
    char err[512], *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    char *general[] = {"plot", "--help"};
    assert_int_equal(plot_run(2, general, out, err, sizeof err), 0);
    fflush(out);
    for (int k = 0; k < N_PLOT_KINDS; k++) assert_non_null(strstr(text, plot_kinds[k].name));
    fclose(out);
    free(text);
    out = open_memstream(&text, &length);
    char *attention[] = {"plot", "attention", "--help"};
    assert_int_equal(plot_run(3, attention, out, err, sizeof err), 0);
    fclose(out);
    assert_non_null(strstr(text, "cpool plot attention --ckpt C [--compare C2]"));
    assert_non_null(strstr(text, "--head"));
    assert_null(strstr(text, "--csv"));
    free(text);
}

/* ------------------------------------------------------------------------------------------ */
/* cost                                                                                       */

static void cost_measures_every_size_and_prints_the_table(void **state) {
    (void)state;
    char err[512], *text = NULL;
    size_t length = 0;
    FILE *report = open_memstream(&text, &length);
    char *argv[] = {"plot",  "cost", "--max-n", "256",
                    "--dim", "16",   "--out",   (char *)temp_path("cost.png")};
    assert_int_equal(plot_run(8, argv, report, err, sizeof err), 0);
    fclose(report);
    assert_png(temp_path("cost.png"));
    assert_non_null(strstr(text, "contextpool ms"));
    char *data = read_text(temp_path("cost.cost.dat"));
    int n = 0, lines = 0;
    double pool_ms, pool_mb, attn_ms, attn_mb;
    for (char *line = strchr(data, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        assert_int_equal(
            sscanf(line + 1, "%d %lf %lf %lf %lf", &n, &pool_ms, &pool_mb, &attn_ms, &attn_mb), 5);
        assert_int_equal(n, 128 << lines++);
        assert_true(pool_ms > 0 && attn_ms > 0);
        assert_true(attn_mb > pool_mb); /* attention keeps (heads, N, N) buffers */
    }
    assert_int_equal(lines, 2);
    free(data);
    free(text);
}

/* ------------------------------------------------------------------------------------------ */
/* The checkpoint kinds on tiny models                                                        */

/* A checkpoint of a freshly initialised model with the given keys ("model=..." first). */
static const char *write_checkpoint(const char *name, const char *const *keys) {
    RunConfig run;
    char err[512];
    run_config_defaults(&run, MODEL_CHARLM);
    for (int k = 0; keys[k]; k++)
        if (run_config_set(&run, keys[k], "test", err, sizeof err) != 0) fail_msg("%s", err);
    Model model;
    Rng rng;
    rng_seed(&rng, 3);
    model_init(&model, &run.model, &rng);
    char *config = run_config_format(&run);
    TrainState train_state = {.step = 7, .config = config};
    const char *path = temp_path(name);
    if (checkpoint_save(path, &model.params, NULL, &train_state, err, sizeof err) != 0)
        fail_msg("%s", err);
    free(config);
    model_free(&model);
    return path;
}

static const char *const charlm_keys[] = {"model=charlm", "dim=16",           "heads=2", "layers=2",
                                          "seq_len=32",   "pool=contextpool", NULL};

/* The support sizes (layer, i) the model computes for text, straight from model_forward. */
static void direct_support(const char *ckpt, const char *text, int support, double *out) {
    RunConfig run;
    Model model;
    char err[512];
    if (run_load_checkpoint(ckpt, &run, &model, err, sizeof err) != 0) fail_msg("%s", err);
    int n = (int)strlen(text), tokens[64];
    for (int i = 0; i < n; i++) tokens[i] = (unsigned char)text[i];
    Tape *tape = tape_create();
    tape->no_grad = 1;
    ModelAux aux;
    model_forward(tape, &model, &(ModelInput){.tokens = tokens, .batch = 1, .len = n}, &aux);
    for (int l = 0; l < aux.count; l++)
        for (int i = 0; i < n; i++)
            out[l * n + i] =
                (support ? aux.layers[l].pool.support : aux.layers[l].pool.weights)->data[i];
    tape_free(tape);
    model_free(&model);
}

/* The heatmap's data file: (i, layer, value) rows; checks the cells, fills values. */
static void read_heatmap(const char *path, int n, int layers, double *values) {
    char *data = read_text(path);
    assert_non_null(data);
    int rows = 0;
    for (char *line = data; *line; line = strchr(line, '\n') + 1) {
        int i, l;
        double v;
        if (*line != '\n' && sscanf(line, "%d %d %lf", &i, &l, &v) == 3) {
            assert_true(i >= 0 && i < n && l >= 0 && l < layers);
            values[l * n + i] = v;
            rows++;
        }
        if (!strchr(line, '\n')) break;
    }
    assert_int_equal(rows, n * layers);
    free(data);
}

static void support_and_weights_show_what_the_model_computes(void **state) {
    (void)state;
    const char *ckpt = write_checkpoint("charlm.safetensors", charlm_keys);
    const char *text = "Let there be light: and th"; /* 26 of seq_len 32 */
    int n = (int)strlen(text);
    for (int support = 1; support >= 0; support--) {
        char err[512];
        const char *out = temp_path(support ? "support.png" : "weights.png");
        assert_int_equal(run_plot(err, sizeof err, support ? "support" : "weights", "--ckpt", ckpt,
                                  "--text", text, "--out", out, NULL),
                         0);
        assert_png(out);
        double expected[2 * 64], drawn[2 * 64];
        direct_support(ckpt, text, support, expected);
        read_heatmap(temp_path(support ? "support.values.dat" : "weights.values.dat"), n, 2, drawn);
        for (int k = 0; k < 2 * n; k++) assert_true(fabs(drawn[k] - expected[k]) < 1e-5);
        char *script = read_text(temp_path(support ? "support.gp" : "weights.gp"));
        assert_non_null(strstr(script, support ? "set cbrange [0.5:8]" : "set cbrange [0:1]"));
        assert_non_null(strstr(script, "'L' 0, 'e' 1, 't' 2, '␣' 3")); /* characters along x */
        assert_non_null(strstr(script, "step 7"));
        free(script);
    }
}

static void text_kinds_refuse_what_does_not_fit(void **state) {
    (void)state;
    char err[512];
    const char *ckpt = write_checkpoint("charlm2.safetensors", charlm_keys);
    const char *const no_pool_keys[] = {"model=charlm", "dim=16",    "heads=2", "layers=1",
                                        "seq_len=32",   "pool=none", NULL};
    const char *plain = write_checkpoint("plain.safetensors", no_pool_keys);
    const char *out = temp_path("refused.png");
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", plain, "--out", out, NULL), 1);
    assert_non_null(strstr(err, "plain.safetensors: the model has pool=none: no support sizes to "
                                "plot"));
    assert_int_equal(run_plot(err, sizeof err, "hist", "--ckpt", plain, "--out", out, NULL), 1);
    assert_non_null(strstr(err, "pool=none"));
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", ckpt, "--text",
                              "a passage of more than thirty-two bytes", "--out", out, NULL),
                     2);
    assert_non_null(strstr(err, "the passage has 39 bytes but"));
    assert_non_null(strstr(err, "reads at most seq_len=32"));
    assert_int_equal(run_plot(err, sizeof err, "weights", "--ckpt", temp_path("none.safetensors"),
                              "--out", out, NULL),
                     1);
    assert_non_null(strstr(err, "none.safetensors"));
    assert_int_equal(run_plot(err, sizeof err, "image-support", "--ckpt", ckpt, "--out", out, NULL),
                     1);
    assert_non_null(strstr(err, "image-support needs a vit or cnn checkpoint"));
    assert_int_equal(
        run_plot(err, sizeof err, "attention", "--ckpt", ckpt, "--layer", "2", "--out", out, NULL),
        2);
    assert_non_null(strstr(err, "--layer 2: "));
    assert_non_null(strstr(err, "has 2 layers (0..1)"));
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", ckpt, "--data",
                              temp_path("missing.txt"), "--out", out, NULL),
                     1);
    assert_non_null(strstr(err, "missing.txt: cannot open"));
    assert_false(exists(out));
    assert_no_temp_files();
}

static void heatmap_preview_draws_shades_and_ascii_characters(void **state) {
    (void)state;
    char err[512];
    const char *ckpt = write_checkpoint("charlm6.safetensors", charlm_keys);
    const char *text_path = temp_path("heatmap.txt");
    int saved = capture_stdout(text_path);
    int status = run_plot(err, sizeof err, "support", "--ckpt", ckpt, "--text", "a b", "--term",
                          "dumb", "--out", temp_path("heatmap.png"), NULL);
    restore_stdout(saved);
    assert_int_equal(status, 0);
    assert_false(exists(temp_path("heatmap.png")));
    char *text = read_text(text_path);
    assert_non_null(strstr(text, "shades from 0.5 to 8: \" .:-=+*#%@\""));
    assert_non_null(strstr(text, "(_ is a space)")); /* ASCII, not the open box */
    assert_null(strstr(text, "{/*0.8"));             /* no enhanced-text markup */
    free(text);
    char *script = read_text(temp_path("heatmap.gp"));
    assert_non_null(strstr(script, "with labels"));
    assert_non_null(strstr(script, "('a' 0, '_' 1, 'b' 2)"));
    free(script);
}

static void passage_comes_from_a_file_at_an_offset(void **state) {
    (void)state;
    char err[512];
    const char *ckpt = write_checkpoint("charlm3.safetensors", charlm_keys);
    const char *file = temp_path("passage.txt");
    write_text(file, "0123456789abcdefghij");
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", ckpt, "--data", file,
                              "--offset", "10", "--length", "5", "--out", temp_path("offset.png"),
                              NULL),
                     0);
    char *script = read_text(temp_path("offset.gp"));
    assert_non_null(strstr(script, "('a' 0, 'b' 1, 'c' 2, 'd' 3, 'e' 4)"));
    assert_non_null(strstr(script, "bytes 10..14"));
    free(script);
    assert_int_equal(run_plot(err, sizeof err, "support", "--ckpt", ckpt, "--data", file,
                              "--offset", "18", "--length", "5", "--out", temp_path("offset.png"),
                              NULL),
                     1);
    assert_non_null(strstr(err, "--offset 18 --length 5 reaches past the end of the file"));
}

static void attention_rows_are_distributions_side_by_side(void **state) {
    (void)state;
    char err[512];
    const char *ckpt = write_checkpoint("charlm4.safetensors", charlm_keys);
    const char *const no_pool_keys[] = {"model=charlm", "dim=16",    "heads=2", "layers=2",
                                        "seq_len=32",   "pool=none", NULL};
    const char *plain = write_checkpoint("plain2.safetensors", no_pool_keys);
    const char *out = temp_path("attention.png");
    assert_int_equal(run_plot(err, sizeof err, "attention", "--ckpt", ckpt, "--compare", plain,
                              "--layer", "1", "--head", "1", "--text", "In the beginning", "--out",
                              out, NULL),
                     0);
    assert_png(out);
    const char *names[] = {"attention.attention.dat", "attention.compare.dat"};
    for (int p = 0; p < 2; p++) {
        char *data = read_text(temp_path(names[p]));
        double row_sum[16] = {0};
        int masked = 0;
        for (char *line = data; line; line = strchr(line, '\n')) {
            line += *line == '\n';
            int j, i;
            char value[32];
            if (*line == '\n' || sscanf(line, "%d %d %31s", &j, &i, value) != 3) continue;
            if (strcmp(value, "NaN") == 0) {
                assert_true(j > i); /* causal: only the future is masked */
                masked++;
            } else {
                row_sum[i] += atof(value);
            }
        }
        assert_int_equal(masked, 16 * 15 / 2);
        for (int i = 0; i < 16; i++)
            if (fabs(row_sum[i] - 1.0) > 1e-4)
                fail_msg("%s: row %d sums to %g", names[p], i, row_sum[i]);
        free(data);
    }
}

static void hist_counts_every_position_of_the_validation_text(void **state) {
    (void)state;
    char err[512];
    const char *ckpt = write_checkpoint("charlm5.safetensors", charlm_keys);
    const char *text_path = temp_path("corpus.txt");
    char corpus[20001];
    for (int i = 0; i < 20000; i++) corpus[i] = "in the beginning was the word\n"[i % 30];
    corpus[20000] = '\0';
    write_text(text_path, corpus);
    assert_int_equal(run_plot(err, sizeof err, "hist", "--ckpt", ckpt, "--data", text_path,
                              "--tokens", "500", "--out", temp_path("hist.png"), NULL),
                     0);
    assert_png(temp_path("hist.png"));
    char *data = read_text(temp_path("hist.counts.dat"));
    double total[2] = {0};
    int layer = -1;
    for (char *line = data; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        double centre, share;
        if (strncmp(line, "# pool", 6) == 0) layer++;
        if (*line != '\n' && sscanf(line, "%lf %lf", &centre, &share) == 2) {
            assert_true(centre > 0.5 && centre < 8);
            total[layer] += share;
        }
    }
    assert_int_equal(layer, 1);
    assert_true(fabs(total[0] - 100) < 1e-3 && fabs(total[1] - 100) < 1e-3);
    free(data);
    char *script = read_text(temp_path("hist.gp"));
    assert_non_null(strstr(script, "at 500 characters of the validation split"));
    free(script);
}

static void image_kinds_draw_vit_and_cnn_maps(void **state) {
    (void)state;
    if (!exists(FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz")) skip();
    char err[512];
    const char *const vit_keys[] = {"model=vit", "dim=16",           "heads=2", "layers=1",
                                    "patch=7",   "pool=contextpool", NULL};
    const char *vit = write_checkpoint("vit.safetensors", vit_keys);
    assert_int_equal(run_plot(err, sizeof err, "image-support", "--ckpt", vit, "--images", "2",
                              "--out", temp_path("vit.png"), NULL),
                     0);
    assert_png(temp_path("vit.png"));
    char *script = read_text(temp_path("vit.gp"));
    assert_non_null(strstr(script, "set multiplot layout 2,3"));
    assert_non_null(strstr(script, "Ankle boot")); /* the first test image */
    free(script);
    const char *const cnn_keys[] = {"model=cnn", "channels=4", "pool=contextpool", NULL};
    const char *cnn = write_checkpoint("cnn.safetensors", cnn_keys);
    assert_int_equal(run_plot(err, sizeof err, "hist", "--ckpt", cnn, "--tokens", "300", "--out",
                              temp_path("cnn-hist.png"), NULL),
                     0);
    assert_png(temp_path("cnn-hist.png"));
}

static void run_figures_are_drawn_into_the_run_directory(void **state) {
    (void)state;
    char err[512];
    const char *run_dir = temp_path("run");
    mkdir(run_dir, 0777);
    const char *text_path = temp_path("run-corpus.txt");
    char corpus[8001];
    for (int i = 0; i < 8000; i++) corpus[i] = "and God saw the light, that it was good\n"[i % 40];
    corpus[8000] = '\0';
    write_text(text_path, corpus);
    char data_key[600];
    snprintf(data_key, sizeof data_key, "data=%s", text_path);
    const char *const keys[] = {"model=charlm", "dim=16",           "heads=2", "layers=1",
                                "seq_len=32",   "pool=contextpool", data_key,  NULL};
    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "%s", write_checkpoint("run/checkpoint.safetensors", keys));
    write_run_csv("run");
    assert_int_equal(plot_run_figures(run_dir, ckpt, err, sizeof err), 0);
    const char *figures[] = {"support.png", "weights.png", "curves.png", "hist.png"};
    for (int f = 0; f < 4; f++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", run_dir, figures[f]);
        assert_png(path);
    }
    unlink(temp_path("run/loss.csv"));
    assert_int_equal(plot_run_figures(run_dir, ckpt, err, sizeof err), -1);
    assert_non_null(strstr(err, "curves.png: "));
    assert_non_null(strstr(err, "loss.csv: cannot open"));
}

/* Directories /tmp/cpool-plot-XXXXXX (a preview's scratch space; not this suite's). */
static int count_preview_dirs(void) {
    DIR *dir = opendir("/tmp");
    int n = 0;
    for (struct dirent *d; (d = readdir(dir));)
        n += strncmp(d->d_name, "cpool-plot-", 11) == 0 && !strstr(d->d_name, "-test-");
    closedir(dir);
    return n;
}

static void dumb_preview_without_out_leaves_nothing_behind(void **state) {
    (void)state;
    char err[512];
    const char *text_path = temp_path("dumb.txt");
    const char *csv = write_run_csv("dumb");
    int before = count_preview_dirs();
    int saved = capture_stdout(text_path);
    int status = run_plot(err, sizeof err, "curves", "--csv", csv, "--term", "dumb", NULL);
    restore_stdout(saved);
    assert_int_equal(status, 0);
    assert_int_equal(count_preview_dirs(), before);
    char *text = read_text(text_path);
    assert_non_null(strstr(text, "Training curves"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(figure_writes_png_script_and_data_beside_it),
        cmocka_unit_test(script_error_leaves_no_png_and_gives_one_line),
        cmocka_unit_test(failed_redraw_keeps_the_old_png),
        cmocka_unit_test(dumb_terminal_prints_text_and_writes_no_png),
        cmocka_unit_test(missing_gnuplot_is_one_line_naming_the_program),
        cmocka_unit_test(unwritable_directory_is_one_line),
        cmocka_unit_test(abort_removes_script_and_data),
        cmocka_unit_test(quotes_in_paths_reach_gnuplot_intact),
        cmocka_unit_test(bad_data_names_are_refused),
        cmocka_unit_test(curves_draw_train_and_valid_bpc_of_each_run),
        cmocka_unit_test(curves_metric_and_x_axis_can_be_chosen),
        cmocka_unit_test(curves_bad_inputs_are_one_line_with_status),
        cmocka_unit_test(an_unfinished_last_row_is_skipped),
        cmocka_unit_test(usage_errors_exit_2_with_one_line),
        cmocka_unit_test(help_describes_every_kind_and_each_kind_its_options),
        cmocka_unit_test(cost_measures_every_size_and_prints_the_table),
        cmocka_unit_test(support_and_weights_show_what_the_model_computes),
        cmocka_unit_test(text_kinds_refuse_what_does_not_fit),
        cmocka_unit_test(heatmap_preview_draws_shades_and_ascii_characters),
        cmocka_unit_test(passage_comes_from_a_file_at_an_offset),
        cmocka_unit_test(attention_rows_are_distributions_side_by_side),
        cmocka_unit_test(hist_counts_every_position_of_the_validation_text),
        cmocka_unit_test(image_kinds_draw_vit_and_cnn_maps),
        cmocka_unit_test(run_figures_are_drawn_into_the_run_directory),
        cmocka_unit_test(dumb_preview_without_out_leaves_nothing_behind),
    };
    return cmocka_run_group_tests_name("plot", tests, make_temp_dir, remove_temp_dir);
}
