/* plot_run.c - plot_run_figures(): the figures a training run leaves in its directory (plots.h).
 *
 * Each figure is the `cpool plot` command one would type, run through plot_run():
 *
 *     cpool plot support --ckpt CKPT --out RUN/support.png      charlm with ContextPool
 *     cpool plot weights --ckpt CKPT --out RUN/weights.png      charlm with ContextPool
 *     cpool plot image-support --ckpt CKPT --out RUN/image-support.png    vit, cnn with it
 *     cpool plot curves --csv RUN/loss.csv --out RUN/curves.png
 *     cpool plot hist --ckpt CKPT --out RUN/hist.png            any model with ContextPool
 *
 * Every one is attempted; the first failure is the one reported. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "plots.h"
#include "run_config.h"

/* One figure: `cpool plot KIND OPTION VALUE --out RUN/NAME.png`. 0, or -1 with err. */
static int draw(const char *run_dir, const char *kind, const char *option, const char *value,
                char *err, size_t err_len) {
    char out[4200], why[1024];
    snprintf(out, sizeof out, "%s/%s.png", run_dir, kind);
    char *argv[] = {"plot", (char *)kind, (char *)option, (char *)value, "--out", out, NULL};
    if (plot_run(6, argv, NULL, why, sizeof why) == 0) return 0;
    snprintf(err, err_len, "%.200s: %.800s", out, why);
    return -1;
}

int plot_run_figures(const char *run_dir, const char *ckpt_path, char *err, size_t err_len) {
    char *text = NULL;
    RunConfig run;
    if (checkpoint_read_config(ckpt_path, &text, err, err_len) != 0) return -1;
    int status = run_config_parse(&run, text, ckpt_path, err, err_len);
    free(text);
    if (status != 0) return -1;
    int pool = run.model.pool == MODEL_POOL_CONTEXTPOOL, charlm = run.model.kind == MODEL_CHARLM;
    const char *kinds[4];
    int n = 0;
    if (pool && charlm) kinds[n++] = "support", kinds[n++] = "weights";
    if (pool && !charlm) kinds[n++] = "image-support";
    if (pool) kinds[n++] = "hist";
    char csv[4200], first_err[1024] = "";
    snprintf(csv, sizeof csv, "%s/loss.csv", run_dir);
    status = draw(run_dir, "curves", "--csv", csv, first_err, sizeof first_err);
    for (int k = 0; k < n; k++) {
        char why[1024];
        if (draw(run_dir, kinds[k], "--ckpt", ckpt_path, why, sizeof why) != 0 && status == 0) {
            status = -1;
            strcpy(first_err, why);
        }
    }
    if (status != 0) snprintf(err, err_len, "%s", first_err);
    return status;
}
