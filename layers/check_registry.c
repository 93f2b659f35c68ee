/* check_registry.c - every name `cpool gradcheck` knows, gathered from the per-group tables.
 * Each check_*.c file (autograd/ for ops, layers/ for layers) defines one table, terminated by an
 * entry with a NULL name. */
#include <string.h>

#include "gradcheck.h"

extern const OpCheck check_table_binary[], check_table_unary[], check_table_matmul[],
    check_table_attention[], check_table_reduce[], check_table_nn[], check_table_shape[],
    check_table_conv[], check_table_layers[], check_table_contextpool_op[],
    check_table_contextpool[], check_table_block_pool[], check_table_model[];

static const OpCheck *const tables[] = {
    check_table_binary,         check_table_unary,       check_table_matmul,
    check_table_attention,      check_table_reduce,      check_table_nn,
    check_table_shape,          check_table_conv,        check_table_layers,
    check_table_contextpool_op, check_table_contextpool, check_table_block_pool,
    check_table_model,
};
enum { N_TABLES = sizeof tables / sizeof tables[0] };

int opcheck_count(void) {
    int count = 0;
    for (int t = 0; t < N_TABLES; t++)
        for (const OpCheck *c = tables[t]; c->name; c++) count++;
    return count;
}

const OpCheck *opcheck_at(int index) {
    for (int t = 0; t < N_TABLES; t++)
        for (const OpCheck *c = tables[t]; c->name; c++)
            if (index-- == 0) return c;
    return NULL;
}

const OpCheck *opcheck_find(const char *name) {
    for (int t = 0; t < N_TABLES; t++)
        for (const OpCheck *c = tables[t]; c->name; c++)
            if (strcmp(c->name, name) == 0) return c;
    return NULL;
}
