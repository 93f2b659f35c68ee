/* arena.c - see arena.h. */
#include "arena.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif
#ifdef __linux__
#include <sys/mman.h> /* madvise */
#endif

#include "util.h"

struct ArenaBlock {
    ArenaBlock *previous;
    size_t capacity; /* bytes in data[] */
    size_t offset;   /* bytes of data[] in use */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

enum { ARENA_MIN_BLOCK = 1 << 20 }; /* 1 MiB: small steps never touch malloc twice */

static size_t round_up(size_t bytes) {
    return (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

/* A block of ARENA_HUGE_PAGE bytes or more is aligned to and sized in whole huge pages, and the
 * kernel is asked to back it with them (Linux's transparent huge pages; with THP set to
 * "madvise", as on Debian, only such memory gets them). A step walks ~150 MB of activations,
 * much of it by columns (a transposed operand's rows are 1-2 KB apart: one 4 KB page every few
 * rows), so with 4 KB pages it misses the TLB constantly; with 2 MB pages the benchmark char-LM's
 * step took 1-2% less time and the ViT's 2.5% less, for ~14 MB more peak RSS (docs/memory.md).
 * Where madvise is missing or refuses, the block is ordinary memory. */
#define ARENA_HUGE_PAGE ((size_t)2 << 20)

static ArenaBlock *block_new(size_t capacity, ArenaBlock *previous) {
    size_t bytes = round_up(sizeof(ArenaBlock) + capacity);
    ArenaBlock *block;
    if (bytes >= ARENA_HUGE_PAGE) {
        bytes = (bytes + ARENA_HUGE_PAGE - 1) / ARENA_HUGE_PAGE * ARENA_HUGE_PAGE;
        block = aligned_alloc(ARENA_HUGE_PAGE, bytes);
#ifdef MADV_HUGEPAGE
        if (block) (void)madvise(block, bytes, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    } else {
        block = aligned_alloc(ARENA_ALIGN, bytes);
    }
    if (!block) cpool_fail("arena: out of memory allocating a block of %zu bytes", capacity);
    block->previous = previous;
    block->capacity = capacity;
    block->offset = 0;
    return block;
}

void *arena_alloc(Arena *arena, size_t bytes) {
    size_t need = round_up(bytes ? bytes : 1);
    ArenaBlock *head = arena->head;
    if (!head || head->offset + need > head->capacity) {
        size_t capacity = head ? 2 * head->capacity : ARENA_MIN_BLOCK;
        if (capacity < need) capacity = round_up(need);
        head = arena->head = block_new(capacity, head);
    }
    void *p = head->data + head->offset;
    head->offset += need;
    arena->used_bytes += need;
    if (arena->used_bytes > arena->peak_bytes) arena->peak_bytes = arena->used_bytes;
    return p;
}

void *arena_calloc(Arena *arena, size_t bytes) {
    void *p = arena_alloc(arena, bytes);
    memset(p, 0, bytes);
    return p;
}

/* glibc keeps freed blocks below its mmap threshold (which rises to 32 MB as large blocks are
 * freed) in the heap, still resident. The chain just freed is never reused as such - the merged
 * block is new memory - so hand its pages back: without this the first steps' small blocks stay
 * in the peak RSS on top of the merged block (13 MB of 451 MB for the benchmark char-LM,
 * docs/memory.md). Runs only when a chain is merged, not every step. */
static void return_freed_pages(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

void arena_reset(Arena *arena) {
    ArenaBlock *head = arena->head;
    if (head && head->previous) {
        /* This step needed more than one block: replace the chain by a single block that holds
         * the peak, so the next step of the same size fits without growing. */
        arena_free(arena);
        return_freed_pages();
        arena->head = block_new(round_up(arena->peak_bytes), NULL);
    } else if (head) {
        head->offset = 0;
    }
    arena->used_bytes = 0;
}

void arena_free(Arena *arena) {
    size_t peak = arena->peak_bytes;
    for (ArenaBlock *block = arena->head; block;) {
        ArenaBlock *previous = block->previous;
        free(block);
        block = previous;
    }
    arena->head = NULL;
    arena->used_bytes = 0;
    arena->peak_bytes = peak;
}
