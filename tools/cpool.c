/* cpool.c - the command-line program: `cpool COMMAND [ARGS]`.
 *
 * Exit status, for every command: 0 done; 1 an error in the data or the run (a file, a checkpoint,
 * a write that failed); 2 a usage error (the command line); 130 training interrupted by Ctrl-C.
 * Every error is one line on stderr, "cpool COMMAND: <what, where, expected, got>". Each command
 * catches the library's failures itself (cpool_try, util.h) and cleans up what it made; the try
 * around the whole command here is the last net, so that even a failure a command did not expect
 * is one line and status 1, never a crash. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "tensor.h"
#include "util.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"gradcheck", cmd_gradcheck, "check every op's backward against finite differences"},
    {"lab", cmd_lab, "run one layer on a .npy input; write its output, parameters and gradients"},
    {"train", cmd_train, "train a model (charlm, vit, cnn); checkpoints, CSV log, --resume"},
    {"eval", cmd_eval, "bits per character or accuracy of a checkpoint on a data split"},
    {"sample", cmd_sample, "generate text from a char-LM checkpoint"},
    {"plot", cmd_plot, "draw a figure with gnuplot: support sizes, weights, curves, cost"},
    {"synth", cmd_synth, "the synthetic task whose right support sizes are known"},
    {"bench", cmd_bench, "time matmul, training steps and the pooling ops; GFLOP/s, peak RSS"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *out) {
    fprintf(out, "usage: cpool COMMAND [ARGS]   (this build computes in %s)\n\ncommands:\n",
            REAL_NAME);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`cpool COMMAND --help` describes each command.\n");
}

int exec_double_build(int argc, char **argv) {
    /* argv here starts at the command name; rebuild "cpool64 COMMAND ARGS...". */
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 8);
    if (n <= 0) {
        fprintf(stderr, "cpool: cannot locate this program to find cpool64 beside it\n");
        return 1;
    }
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "cpool64");
    char *args[256];
    if (argc > 250) argc = 250;
    args[0] = path;
    for (int i = 0; i < argc; i++) args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    execv(path, args);
    fprintf(stderr, "cpool: cannot run %s (build it with `make`)\n", path);
    return 1;
}

/* One command's run, for cpool_try. */
typedef struct CommandRun {
    int (*run)(int argc, char **argv);
    int argc;
    char **argv;
    int status;
} CommandRun;

static void run_command(void *arg) {
    CommandRun *command = arg;
    command->status = command->run(command->argc, command->argv);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "cpool: which command? (cpool COMMAND [ARGS]; try `cpool --help`)\n");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        CommandRun command = {.run = commands[i].run, .argc = argc - 1, .argv = argv + 1};
        char err[1024];
        if (cpool_try(run_command, &command, err, sizeof err) == 0) return command.status;
        fprintf(stderr, "cpool %s: %s\n", commands[i].name, err);
        return 1;
    }
    fprintf(stderr, "cpool: unknown command '%s' (try `cpool --help`)\n", argv[1]);
    return 2;
}
