/* 07-contextpool-convnet.c - ContextPool as the downsampling layer of a small ConvNet: trained
 * for a few Fashion-MNIST batches next to the same network with 2x2 average pooling, then taken
 * apart on one image. Float32. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "image_data.h"
#include "lesson.h"
#include "model.h"
#include "ops.h"
#include "optim.h"

enum { BATCH = 32, STEPS = 200, LOG_EVERY = 25, TEST_IMAGES = 1000, N_MODELS = 2 };
static const char *const CLASS_NAMES[IMAGE_CLASSES] = {
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};

/* Accuracy on the first TEST_IMAGES test images (no_grad). */
static double test_accuracy(const Model *model, const ImageData *images, Tape *tape) {
    ImageBatch batch;
    image_batch_init(&batch, 100);
    long cursor = 0, correct = 0;
    tape->no_grad = 1;
    while (cursor < TEST_IMAGES && image_data_next(images, SPLIT_TEST, &cursor, &batch) > 0) {
        ModelInput in = {.images = batch.images, .batch = batch.batch_size};
        Tensor *logits = model_forward(tape, model, &in, NULL); /* (B, 10) */
        for (int b = 0; b < batch.batch_size; b++) {
            const real *row = logits->data + b * IMAGE_CLASSES;
            int best = 0;
            for (int k = 1; k < IMAGE_CLASSES; k++)
                if (row[k] > row[best]) best = k;
            correct += best == batch.labels[b];
        }
        tape_reset(tape);
    }
    tape->no_grad = 0;
    image_batch_free(&batch);
    return (double)correct / TEST_IMAGES;
}

/* A (rows, cols) map into a data block of fig, "x y value" lines, row 0 at the top. */
static void write_map(FILE *out, const real *values, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) fprintf(out, "%d %d %g\n", c, r, values[r * cols + c]);
    fprintf(out, "\n\n");
}

int main(void) {
    lesson_begin("07 ContextPool in a ConvNet");
    say("A ConvNet halves its feature maps a few times, usually with 2x2 average or max "
        "pooling: every output pixel summarises a fixed 2x2 block. ContextPool with stride 2 "
        "(contextpool2d) is a drop-in replacement: output (u, v) sits on input pixel (2u, 2v) and "
        "pools a Gaussian neighbourhood whose width s it predicts there, weighting each input "
        "pixel by a predicted w. Same output size, but a learned, per-position footprint.");

    // %%
    section("1. Two networks");
    say("The cnn model of train/model.h: three 3x3 convolutions of c, 2c and 4c channels, a "
        "pooling after the first two (28 -> 14 -> 7), then a mean over the pixels and a linear "
        "classifier. One network pools with 2x2 averages, the other with ContextPool. Both start "
        "from the same seed.");
    char err[512];
    ImageData images;
    if (image_data_load(&images, FASHION_MNIST_DIR, 5000, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const ModelPool pools[N_MODELS] = {MODEL_POOL_AVG, MODEL_POOL_CONTEXTPOOL};
    Model models[N_MODELS];
    AdamW opts[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) {
        ModelConfig config = model_default_config(MODEL_CNN);
        config.pool = pools[m];
        Rng init_rng;
        rng_seed(&init_rng, 7);
        model_init(&models[m], &config, &init_rng);
        adamw_init(&opts[m], &models[m].params, ADAMW_DEFAULTS);
        printf("pool = %-11s %6ld parameters, %5.2f MFLOP per image (forward)\n",
               model_pool_name(pools[m]), params_count_elements(&models[m].params),
               model_forward_flops(&config) / 1e6);
    }
    const ContextPoolConfig *pool0 = &models[1].pools[0].config;
    printf("c = %d channels; ContextPool: s in (%g, %g) pixels, window radius %d, stride %d\n",
           models[1].config.channels, pool0->s_min, pool0->s_max, pool0->radius, pool0->stride);

    // %%
    section("2. A few batches of training");
    say("%d steps of %d images each (the same images for both), AdamW with warm-up and cosine "
        "decay. That is %d images, a tenth of one pass over the training set: enough to see "
        "the two learn, not to rank them. Then the accuracy on %d test images.",
        STEPS, BATCH, STEPS * BATCH, TEST_IMAGES);
    LrSchedule schedule = {
        .peak_lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 10, .total_steps = STEPS};
    ImageBatch batch;
    image_batch_init(&batch, BATCH);
    Tape *tape = tape_create();
    Rng data_rng;
    rng_seed(&data_rng, 70);
    double seconds[N_MODELS] = {0}, curve[STEPS][N_MODELS];
    printf("%5s %14s %14s\n", "step", "loss avg", "loss cpool");
    for (int step = 0; step < STEPS; step++) {
        image_data_sample(&images, SPLIT_TRAIN, &data_rng, &batch);
        ModelInput in = {.images = batch.images, .batch = BATCH};
        for (int m = 0; m < N_MODELS; m++) {
            double start = lesson_seconds();
            Tensor *loss = model_loss(tape, &models[m], model_forward(tape, &models[m], &in, NULL),
                                      batch.labels);
            curve[step][m] = loss->data[0];
            tape_backward(tape, loss);
            clip_grad_norm(&models[m].params, 1.0);
            adamw_step(&opts[m], lr_schedule_at(&schedule, step));
            params_zero_grad(&models[m].params);
            tape_reset(tape);
            seconds[m] += lesson_seconds() - start;
        }
        if (step % LOG_EVERY == 0 || step == STEPS - 1)
            printf("%5d %14.4f %14.4f\n", step, curve[step][0], curve[step][1]);
    }
    double accuracy[N_MODELS];
    for (int m = 0; m < N_MODELS; m++) {
        accuracy[m] = test_accuracy(&models[m], &images, tape);
        printf("pool = %-11s test accuracy %.1f%%, %.1f ms per training step\n",
               model_pool_name(pools[m]), 100 * accuracy[m], 1e3 * seconds[m] / STEPS);
    }
    Figure fig;
    lesson_figure_open(&fig, "07-contextpool-convnet-loss");
    FILE *losses = figure_data(&fig, "loss");
    for (int step = 0; step < STEPS; step++) {
        fprintf(losses, "%d", step);
        for (int m = 0; m < N_MODELS; m++) { /* each loss, and its mean over the last 20 steps */
            double mean = 0;
            int first = step < 19 ? 0 : step - 19;
            for (int k = first; k <= step; k++) mean += curve[k][m] / (step - first + 1);
            fprintf(losses, " %g %g", curve[step][m], mean);
        }
        fprintf(losses, "\n");
    }
    figure_script(
        &fig,
        "set terminal @terminal size 1100,600\n"
        "set title 'Fashion-MNIST, batches of %d: the same ConvNet with two poolings'\n"
        "set xlabel 'training step'\n"
        "set ylabel 'cross-entropy (nats): each batch, and the mean of the last 20'\n"
        "set grid\n"
        "set key top right\n"
        "plot '%s' using 1:2 with lines lw 0.5 lc 1 notitle, "
        "'' using 1:3 with lines lw 2.5 lc 1 title '2x2 average pooling (test %.1f%%)', "
        "'' using 1:4 with lines lw 0.5 lc 2 notitle, "
        "'' using 1:5 with lines lw 2.5 lc 2 title 'ContextPool, stride 2 (test %.1f%%)'\n",
        BATCH, figure_data_path(&fig, "loss"), 100 * accuracy[0], 100 * accuracy[1]);
    lesson_figure_show(&fig, "Training loss of both networks on the same batches");

    // %%
    section("3. What the pool does to one image");
    say("Now one test image through the ContextPool network's first stage: conv.0 and ReLU "
        "give c feature maps of 28 x 28; pool.0 predicts w at every pixel and s at each of the "
        "14 x 14 centres, and pools. Next to it, what 2x2 averaging makes of the same maps.");
    const Model *cp = &models[1];
    long cursor = 0;
    image_data_next(&images, SPLIT_TEST, &cursor, &batch); /* test images 0..BATCH-1 */
    Tensor *image = tensor_create(4, (int[]){1, 1, IMAGE_SIZE, IMAGE_SIZE}, 0);
    memcpy(image->data, batch.images->data, IMAGE_PIXELS * sizeof(real));
    tape->no_grad = 1;
    Tensor *features = op_relu(tape, conv2d_forward(tape, &cp->conv[0], image)); /* (1,16,28,28) */
    ContextPoolAux aux;
    Tensor *pooled = contextpool2d_forward(tape, &cp->pools[0], features, &aux); /* (1,16,14,14) */
    Tensor *averaged = op_avgpool2d(tape, features, 2, 2);                       /* (1,16,14,14) */
    int channel = 0; /* the most active feature map, to show; its largest value for the scale */
    double best_mean = -1;
    for (int c = 0; c < features->shape[1]; c++) {
        double mean = 0;
        for (int p = 0; p < IMAGE_PIXELS; p++) mean += features->data[c * IMAGE_PIXELS + p];
        if (mean > best_mean) best_mean = mean, channel = c;
    }
    double feature_max = 0;
    for (int p = 0; p < IMAGE_PIXELS; p++)
        feature_max = fmax(feature_max, features->data[channel * IMAGE_PIXELS + p]);
    /* w and s on the object (pixel > 0.1) and on the background. */
    const int half = IMAGE_SIZE / 2;
    double w_sum[2] = {0}, w_count[2] = {0}, s_sum[2] = {0}, s_count[2] = {0};
    for (int p = 0; p < IMAGE_PIXELS; p++) {
        int on = image->data[p] > 0.1;
        w_sum[on] += aux.weights->data[p], w_count[on]++;
    }
    for (int u = 0; u < half; u++)
        for (int v = 0; v < half; v++) {
            int on = image->data[2 * u * IMAGE_SIZE + 2 * v] > 0.1;
            s_sum[on] += aux.support->data[u * half + v], s_count[on]++;
        }
    printf("test image 0, class %s\n", CLASS_NAMES[batch.labels[0]]);
    printf("w: %.3f on the object, %.3f on the background (%g and %g pixels)\n",
           w_sum[1] / w_count[1], w_sum[0] / w_count[0], w_count[1], w_count[0]);
    printf("s: %.3f pixels on the object, %.3f on the background (%g and %g centres)\n",
           s_sum[1] / s_count[1], s_sum[0] / s_count[0], s_count[1], s_count[0]);
    double w_object = w_sum[1] / w_count[1], w_background = w_sum[0] / w_count[0];
    double s_object = s_sum[1] / s_count[1], s_background = s_sum[0] / s_count[0];
    say("After %d steps this pool gives %s weight to the object's pixels than to the background "
        "(w %.2f against %.2f), and pools %s around centres on the object (s %.2f against %.2f "
        "pixels): it has learned a footprint that depends on what it sees, which 2x2 averaging "
        "cannot. Whether that pays off is a question for longer runs than a lesson's.",
        STEPS, w_object < w_background ? "less" : "more", w_object, w_background,
        s_object > s_background ? "wider" : "narrower", s_object, s_background);
    say("The figure: the image, the predicted w and s, then feature map %d (the most active) "
        "before pooling, after ContextPool, and after 2x2 averaging.",
        channel);
    lesson_figure_open(&fig, "07-contextpool-convnet-image");
    FILE *maps = figure_data(&fig, "maps");
    write_map(maps, image->data, IMAGE_SIZE, IMAGE_SIZE);
    write_map(maps, aux.weights->data, IMAGE_SIZE, IMAGE_SIZE);
    write_map(maps, aux.support->data, half, half);
    write_map(maps, features->data + channel * IMAGE_PIXELS, IMAGE_SIZE, IMAGE_SIZE);
    write_map(maps, pooled->data + channel * half * half, half, half);
    write_map(maps, averaged->data + channel * half * half, half, half);
    const char *titles[6] = {"the image",
                             "pooling weight w (28 x 28)",
                             "support size s, pixels (14 x 14)",
                             "feature map, before pooling",
                             "after ContextPool (14 x 14)",
                             "after 2x2 average (14 x 14)"};
    figure_script(&fig,
                  "set terminal @terminal size 1500,1000\n"
                  "set multiplot layout 2,3 title 'Test image 0 (%s) through conv.0 and pool.0 "
                  "of the ContextPool network'\n"
                  "set size ratio -1\nunset xtics\nunset ytics\nset colorbox\n",
                  CLASS_NAMES[batch.labels[0]]);
    for (int k = 0; k < 6; k++) {
        int side = k == 2 || k >= 4 ? half : IMAGE_SIZE;
        /* Colour scales: the image and w in [0, 1], s its own range, the three feature maps
         * one common range, so that they can be compared. */
        char range[64] = "*:*";
        if (k <= 1) snprintf(range, sizeof range, "0:1");
        if (k >= 3) snprintf(range, sizeof range, "0:%g", feature_max);
        figure_script(&fig,
                      "set title '%s'\nset xrange [-0.5:%g]\nset yrange [%g:-0.5]\n"
                      "set palette %s\nset cbrange [%s]\n"
                      "plot '%s' index %d using 1:2:3 with image notitle\n",
                      titles[k], side - 0.5, side - 0.5,
                      k == 0   ? "gray negative"
                      : k <= 2 ? "rgb 21,22,23"
                               : "rgb 7,5,15",
                      range, figure_data_path(&fig, "maps"), k);
    }
    figure_script(&fig, "unset multiplot\n");
    lesson_figure_show(&fig, "One image, the pool's predicted w and s, and a feature map before "
                             "and after each pooling");

    tape_reset(tape);
    tensor_free(image);
    for (int m = 0; m < N_MODELS; m++) adamw_free(&opts[m]), model_free(&models[m]);
    tape_free(tape);
    image_batch_free(&batch);
    image_data_free(&images);
    return 0;
}
