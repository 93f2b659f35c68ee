/* interrupt.h - Ctrl-C (SIGINT) and SIGTERM as a request to stop cleanly.
 *
 * A training loop should not die in the middle of a step: it should finish the step, save a
 * checkpoint and exit, so the run can be resumed. interrupt_install() replaces the handlers of
 * SIGINT and SIGTERM with one that only sets a flag (a volatile sig_atomic_t, the one thing a
 * signal handler may safely write); the loop polls it once a step:
 *
 *     interrupt_install();
 *     for (long step = first; step < total && !interrupt_requested(); step++) {
 *         ... one training step ...
 *     }
 *     if (interrupt_requested()) ... save a checkpoint, say how to resume ...
 *     interrupt_restore();
 *
 * The first signal also writes one line to stderr ("interrupted: stopping after this step; press
 * Ctrl-C again to quit at once"). A second signal while the flag is set restores the default
 * action and re-raises it, so a stuck program still dies at the second Ctrl-C. The handlers are
 * installed with SA_RESTART, so reads and writes in progress are not cut short with EINTR.
 */
#ifndef CPOOL_INTERRUPT_H
#define CPOOL_INTERRUPT_H

void interrupt_install(void);
void interrupt_restore(void);  /* the handlers in place before interrupt_install, flag cleared */
int interrupt_requested(void); /* the signal number that asked to stop (SIGINT, SIGTERM), or 0 */

#endif
