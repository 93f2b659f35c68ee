/* interrupt.c - see interrupt.h. */
#include "interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t requested; /* the signal number, 0 until one arrives */
static struct sigaction previous_int, previous_term;
static int installed;

/* Only async-signal-safe calls here: write, sigaction, raise. */
static void on_signal(int signal_number) {
    if (requested) {
        struct sigaction default_action;
        memset(&default_action, 0, sizeof default_action);
        default_action.sa_handler = SIG_DFL;
        sigaction(signal_number, &default_action, NULL);
        raise(signal_number);
        return;
    }
    requested = signal_number;
    static const char message[] =
        "\ninterrupted: stopping after this step; press Ctrl-C again to quit at once\n";
    ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
}

void interrupt_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    requested = 0;
    sigaction(SIGINT, &action, &previous_int);
    sigaction(SIGTERM, &action, &previous_term);
    installed = 1;
}

void interrupt_restore(void) {
    if (installed) {
        sigaction(SIGINT, &previous_int, NULL);
        sigaction(SIGTERM, &previous_term, NULL);
    }
    installed = 0;
    requested = 0;
}

int interrupt_requested(void) {
    return requested;
}
