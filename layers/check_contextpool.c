/* check_contextpool.c - gradient checks (filled in by the ContextPool work). */
#include "gradcheck.h"

const OpCheck check_table_contextpool[] = {
    {0},
};
