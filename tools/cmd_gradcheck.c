/* cmd_gradcheck.c - `cpool gradcheck [NAME ...|all] [--seed S] [--list]`.
 *
 * Runs the registered checks (gradcheck.h) and prints one row per name:
 *     name  checks  max_abs_err  max_rel_err  PASS|FAIL
 * Exit status 1 if any row fails, 2 on a usage error. Finite differences need double precision,
 * so the float32 program hands the whole command to build/cpool64. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gradcheck.h"
#include "util.h"

static void usage(FILE *out) {
    fprintf(out, "usage: cpool gradcheck [NAME ...|all] [--seed S] [--list]\n"
                 "  Compare each op's (and layer's) tape gradient with central finite differences\n"
                 "  in float64, on random shapes and values drawn from seed S (default 1).\n"
                 "  Prints: name checks max_abs_err max_rel_err PASS|FAIL; exits 1 on any FAIL.\n"
                 "  --list   print the names that can be checked\n");
}

/* text as a decimal integer without a sign: 0, or -1 (junk, a sign, out of range). */
static int parse_seed(const char *text, unsigned long long *seed) {
    char *end = NULL;
    errno = 0;
    *seed = strtoull(text, &end, 10);
    return end == text || *end != '\0' || errno == ERANGE || text[0] < '0' || text[0] > '9' ? -1
                                                                                            : 0;
}

/* One check, for cpool_try: a check whose op fails (cpool_fail) is a failed row, not the end of
 * the run. What the op had allocated on the check's own tape is lost: a test-only leak. */
typedef struct CheckRun {
    const OpCheck *check;
    Rng rng;
    GradcheckStats stats;
} CheckRun;

static void run_check(void *arg) {
    CheckRun *run = arg;
    run->check->run(&run->rng, &run->stats);
}

static int run_one(const OpCheck *check, unsigned long long seed) {
    CheckRun run = {.check = check};
    rng_seed(&run.rng, seed);
    char err[512];
    if (cpool_try(run_check, &run, err, sizeof err) != 0) {
        printf("%-30s FAIL: %s\n", check->name, err);
        fflush(stdout);
        return 0;
    }
    const GradcheckStats *stats = &run.stats;
    /* A NaN error is a failure too: !(x <= tol) is true for NaN. */
    int pass = stats->checks > 0 && stats->max_rel_err <= check->tolerance;
    printf("%-30s %6d %12.3e %12.3e  %s\n", check->name, stats->checks, stats->max_abs_err,
           stats->max_rel_err, pass ? "PASS" : "FAIL");
    fflush(stdout);
    return pass;
}

int cmd_gradcheck(int argc, char **argv) {
#ifndef CPOOL_DOUBLE
    return exec_double_build(argc, argv);
#endif
    unsigned long long seed = 1;
    int n_names = 0, list = 0;
    const char **names = xcalloc((size_t)argc, sizeof *names);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            free(names);
            return 0;
        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;
        } else if (strcmp(argv[i], "--seed") == 0) {
            if (i + 1 >= argc || parse_seed(argv[i + 1], &seed) != 0) {
                fprintf(stderr, "cpool gradcheck: --seed %s: expected an integer in 0..%llu\n",
                        i + 1 < argc ? argv[i + 1] : "(missing)", ~0ULL);
                free(names);
                return 2;
            }
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "cpool gradcheck: unknown option '%s' (see --help)\n", argv[i]);
            free(names);
            return 2;
        } else {
            names[n_names++] = argv[i];
        }
    }
    if (list) {
        for (int i = 0; i < opcheck_count(); i++) printf("%s\n", opcheck_at(i)->name);
        free(names);
        return 0;
    }
    for (int i = 0; i < n_names; i++)
        if (strcmp(names[i], "all") != 0 && !opcheck_find(names[i])) {
            fprintf(stderr, "cpool gradcheck: unknown name '%s' (see --list)\n", names[i]);
            free(names);
            return 2;
        }
    int all = n_names == 0;
    for (int i = 0; i < n_names; i++) all |= strcmp(names[i], "all") == 0;

    printf("%-30s %6s %12s %12s  %s\n", "name", "checks", "max_abs_err", "max_rel_err", "result");
    int failures = 0;
    if (all) {
        for (int i = 0; i < opcheck_count(); i++) failures += !run_one(opcheck_at(i), seed);
    } else {
        for (int i = 0; i < n_names; i++) failures += !run_one(opcheck_find(names[i]), seed);
    }
    printf("%s: %d failed (float64, seed %llu)\n", failures ? "FAIL" : "PASS", failures, seed);
    free(names);
    return failures ? 1 : 0;
}
