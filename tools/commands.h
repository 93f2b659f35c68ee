/* commands.h - the subcommands of build/cpool. Each takes argc/argv after the command name
 * (argv[0] is the command name) and returns the process exit status. */
#ifndef CPOOL_COMMANDS_H
#define CPOOL_COMMANDS_H

int cmd_gradcheck(int argc, char **argv);
int cmd_lab(int argc, char **argv);
int cmd_train(int argc, char **argv);  /* cmd_train.c */
int cmd_eval(int argc, char **argv);   /* cmd_eval.c */
int cmd_sample(int argc, char **argv); /* cmd_sample.c */
int cmd_plot(int argc, char **argv);   /* cmd_plot.c */
int cmd_synth(int argc, char **argv);  /* cmd_synth.c */
int cmd_bench(int argc, char **argv);  /* cmd_bench.c */

/* Re-run this command in the float64 build (build/cpool64 beside this program). Returns only if
 * that fails. Used by commands that only make sense in double. */
int exec_double_build(int argc, char **argv);

#endif
