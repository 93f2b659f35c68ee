/* test_temp_dir.h - one temporary directory per suite, removed with everything in it.
 *
 *     static int setup(void **state) { (void)state; return temp_dir_create("plot-test"); }
 *     static int teardown(void **state) { (void)state; return temp_dir_remove(); }
 *     ... fopen(temp_path("x.npy"), "wb") ...
 *
 * Header-only (static inline functions): each test program is one translation unit. */
#ifndef CPOOL_TEST_TEMP_DIR_H
#define CPOOL_TEST_TEMP_DIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char temp_dir[64];

/* rm -r path. */
static inline void remove_tree(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        unlink(path);
        return;
    }
    char child[1024];
    for (struct dirent *d; (d = readdir(dir));) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
        if (snprintf(child, sizeof child, "%s/%s", path, d->d_name) < (int)sizeof child)
            remove_tree(child);
    }
    closedir(dir);
    rmdir(path);
}

/* A fresh "/tmp/cpool-NAME-XXXXXX" in temp_dir: 0, or -1. */
static inline int temp_dir_create(const char *name) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/cpool-%.32s-XXXXXX", name);
    return mkdtemp(temp_dir) ? 0 : -1;
}

static inline int temp_dir_remove(void) {
    remove_tree(temp_dir);
    return 0;
}

/* A path in the temp directory; eight rotating buffers, so one call can use several. */
static inline const char *temp_path(const char *name) {
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, 512, "%s/%s", temp_dir, name);
    return path;
}

#endif
