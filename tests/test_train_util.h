/* test_train_util.h - helpers shared by the training suites (tests/test_train_*.c): a temporary
 * directory per suite, removed with its files by the group teardown, and small file writers.
 *
 *     return cmocka_run_group_tests_name("...", tests, train_temp_dir_create,
 *                                        train_temp_dir_remove);
 *     const char *path = train_temp_path("a.txt");     // TEMP/a.txt (one static buffer)
 *     train_write_file(path, "hello", 5);
 */
#ifndef CPOOL_TEST_TRAIN_UTIL_H
#define CPOOL_TEST_TRAIN_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

static char train_temp_dir[64];

__attribute__((unused)) static int train_temp_dir_create(void **state) {
    (void)state;
    strcpy(train_temp_dir, "/tmp/cpool-train-XXXXXX");
    return mkdtemp(train_temp_dir) ? 0 : -1;
}

/* Removes the directory, its files and its subdirectories' files (one level deep). */
static void train_remove_tree(const char *dir_path, int depth) {
    DIR *dir = opendir(dir_path);
    if (!dir) return;
    char path[1024];
    for (struct dirent *d; (d = readdir(dir));) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir_path, d->d_name);
        struct stat info;
        if (depth > 0 && stat(path, &info) == 0 && S_ISDIR(info.st_mode))
            train_remove_tree(path, depth - 1);
        else
            unlink(path);
    }
    closedir(dir);
    rmdir(dir_path);
}

__attribute__((unused)) static int train_temp_dir_remove(void **state) {
    (void)state;
    train_remove_tree(train_temp_dir, 1);
    return 0;
}

/* "TEMP/name" in a static buffer. */
__attribute__((unused)) static const char *train_temp_path(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", train_temp_dir, name);
    return path;
}

__attribute__((unused)) static void train_write_file(const char *path, const void *bytes,
                                                     size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* The whole file as a malloc'd, NUL-terminated string; its length in *n (if n). */
__attribute__((unused)) static char *train_read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    char *text = NULL;
    size_t used = 0, capacity = 0, got;
    do {
        if (used + 4096 > capacity) text = realloc(text, capacity = 2 * capacity + 4096);
        got = fread(text + used, 1, capacity - used - 1, fp);
        used += got;
    } while (got > 0);
    fclose(fp);
    text[used] = '\0';
    if (n) *n = used;
    return text;
}

#endif
