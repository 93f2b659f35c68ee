/* arena.h - a bump allocator for memory that lives for one training step.
 *
 * Activations, their gradients, saved values and tape records all die together at the end of a
 * step, so they are carved out of one arena and released with a single arena_reset() instead of
 * being freed node by node. The arena grows by chaining blocks; arena_reset() merges them into one
 * block large enough for the busiest step so far, so a steady training loop allocates nothing from
 * the system after its first step (and hands the freed chain's pages back to the system, so they
 * do not add to the peak RSS; docs/memory.md counts a step's memory).
 *
 *     Arena arena = {0};
 *     float *buffer = arena_alloc(&arena, 1024 * sizeof(float));   // 64-byte aligned
 *     arena_reset(&arena);                                         // everything above is gone
 *     arena_free(&arena);
 */
#ifndef CPOOL_ARENA_H
#define CPOOL_ARENA_H

#include <stddef.h>

#define ARENA_ALIGN 64 /* one cache line; also enough for any SIMD load */

typedef struct ArenaBlock ArenaBlock;

typedef struct Arena {
    ArenaBlock *head;  /* newest block; older blocks hang off head->previous */
    size_t used_bytes; /* bytes handed out since the last reset (including padding) */
    size_t peak_bytes; /* the largest used_bytes ever seen */
} Arena;

void *arena_alloc(Arena *arena, size_t bytes);  /* uninitialised, ARENA_ALIGN-aligned */
void *arena_calloc(Arena *arena, size_t bytes); /* zeroed */
void arena_reset(Arena *arena);
void arena_free(Arena *arena);

#endif
