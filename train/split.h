/* split.h - the three parts of a dataset: train, valid, test.
 *
 * Both datasets (text_data.h, image_data.h) are split three ways and take a DataSplit wherever a
 * batch is drawn, so a training loop reads the same for text and images:
 *
 *     text_data_sample(&text, SPLIT_TRAIN, &rng, &batch);       // learn on train
 *     image_data_next(&images, SPLIT_VALID, &cursor, &batch);   // choose on valid
 *     DataSplit split;
 *     if (split_parse("test", &split) != 0) ...                 // report on test, once
 */
#ifndef CPOOL_SPLIT_H
#define CPOOL_SPLIT_H

#include <string.h>

typedef enum DataSplit { SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST, SPLIT_COUNT } DataSplit;

/* "train", "valid", "test". */
static inline const char *split_name(DataSplit split) {
    static const char *const names[SPLIT_COUNT] = {"train", "valid", "test"};
    return split >= 0 && split < SPLIT_COUNT ? names[split] : "?";
}

/* The split called name ("train", "valid" or "test"): 0, or -1 for any other name. */
static inline int split_parse(const char *name, DataSplit *split) {
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (strcmp(name, split_name((DataSplit)s)) == 0) {
            *split = (DataSplit)s;
            return 0;
        }
    return -1;
}

#endif
