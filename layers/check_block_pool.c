/* check_block_pool.c - gradient checks (filled in by the ContextPool work). */
#include "gradcheck.h"

const OpCheck check_table_block_pool[] = {
    {0},
};
