/* test_arena.c - the step arena (autograd/arena.h): alignment, zeroing, the peak it records, and
 * the merge that makes a steady training loop allocate nothing after its first step. */
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "test_util.h"

enum { MIB = 1 << 20 };

static int is_aligned(const void *p) {
    return (uintptr_t)p % ARENA_ALIGN == 0;
}

static void allocations_are_aligned_and_padding_counts(void **state) {
    (void)state;
    Arena arena = {0};
    unsigned char *first = arena_alloc(&arena, 1);
    unsigned char *second = arena_alloc(&arena, 65);
    unsigned char *third = arena_alloc(&arena, 0); /* a zero-byte request still gets a slot */
    assert_true(is_aligned(first) && is_aligned(second) && is_aligned(third));
    /* 1 byte takes one 64-byte slot, 65 bytes two: the bump pointer moves by whole slots. */
    assert_ptr_equal(second, first + 64);
    assert_ptr_equal(third, second + 128);
    assert_int_equal(arena.used_bytes, 64 + 128 + 64);
    assert_int_equal(arena.peak_bytes, arena.used_bytes);
    arena_free(&arena);
}

/* A block of 2 MiB or more starts on a 2 MiB boundary (a huge page; arena.c), and everything in
 * it is usable: an allocation of 5 MiB gets a block of its own, and its last byte can be
 * written. Smaller blocks keep the 64-byte alignment. */
static void large_blocks_start_on_a_huge_page(void **state) {
    (void)state;
    Arena arena = {0};
    unsigned char *small = arena_alloc(&arena, 100); /* the first, 1 MiB block */
    unsigned char *large = arena_alloc(&arena, 5 * MIB);
    assert_true(is_aligned(small));
    assert_int_equal((uintptr_t)arena.head % (2 * MIB), 0);
    assert_true(large >= (unsigned char *)arena.head && is_aligned(large));
    memset(large, 1, 5 * MIB);
    assert_int_equal(large[5 * MIB - 1], 1);
    arena_free(&arena);
}

static void calloc_zeroes_reused_memory(void **state) {
    (void)state;
    Arena arena = {0};
    unsigned char *dirty = arena_alloc(&arena, 4096);
    memset(dirty, 0xAB, 4096);
    arena_reset(&arena); /* one block: it is reused from its start */
    unsigned char *clean = arena_calloc(&arena, 4096);
    assert_ptr_equal(clean, dirty);
    for (int i = 0; i < 4096; i++) assert_int_equal(clean[i], 0);
    arena_free(&arena);
}

/* Ten 1 MiB pieces: they do not fit the first 1 MiB block, so the arena chains 1, 2, 4, 8 MiB
 * blocks (each piece takes a block's whole capacity or none of it). */
static void one_step(Arena *arena, unsigned char *pieces[10]) {
    for (int i = 0; i < 10; i++) {
        pieces[i] = arena_alloc(arena, MIB);
        memset(pieces[i], i, MIB); /* the memory is ours to write */
    }
}

static void peak_is_the_busiest_step(void **state) {
    (void)state;
    Arena arena = {0};
    unsigned char *pieces[10];
    one_step(&arena, pieces);
    arena_reset(&arena);
    assert_int_equal(arena.used_bytes, 0);
    assert_int_equal(arena.peak_bytes, 10 * (size_t)MIB);
    arena_alloc(&arena, 3 * MIB); /* a smaller step leaves the peak alone */
    arena_reset(&arena);
    assert_int_equal(arena.peak_bytes, 10 * (size_t)MIB);
    arena_free(&arena); /* freeing keeps the record (the bench and the docs read it after) */
    assert_int_equal(arena.peak_bytes, 10 * (size_t)MIB);
    assert_null(arena.head);
    arena_free(&arena);
}

static void a_merged_chain_serves_every_later_step(void **state) {
    (void)state;
    Arena arena = {0};
    unsigned char *first[10], *second[10], *third[10];
    one_step(&arena, first);
    int block_starts = 0; /* pieces that begin a new block of the chain: 2, 4 and 8 MiB */
    for (int i = 1; i < 10; i++) block_starts += first[i] != first[i - 1] + MIB;
    assert_int_equal(block_starts, 3);
    arena_reset(&arena); /* merges the chain into one block of the peak */
    one_step(&arena, second);
    arena_reset(&arena);
    one_step(&arena, third);
    for (int i = 0; i < 10; i++) {
        /* One block: the pieces are contiguous, and every later step gets the same addresses,
         * i.e. the loop allocates nothing from the system after its first step. */
        if (i > 0) assert_ptr_equal(second[i], second[i - 1] + MIB);
        assert_ptr_equal(third[i], second[i]);
        assert_int_equal(third[i][MIB - 1], i); /* and the memory holds what was written */
    }
    arena_free(&arena);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allocations_are_aligned_and_padding_counts),
        cmocka_unit_test(large_blocks_start_on_a_huge_page),
        cmocka_unit_test(calloc_zeroes_reused_memory),
        cmocka_unit_test(peak_is_the_busiest_step),
        cmocka_unit_test(a_merged_chain_serves_every_later_step),
    };
    return cmocka_run_group_tests_name("arena (" REAL_NAME ")", tests, NULL, NULL);
}
