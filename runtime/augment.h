/*
 * augment.h: data augmentation, the train block's `augment` line.
 *
 * Each training image is transformed on the fly, before the forward pass,
 * in training only (test scoring, eval and predict see the images as they
 * are). The transforms run in this fixed order, each only when the line
 * names it:
 *
 *   1. hflip      mirror left-right, probability 1/2
 *   2. vflip      mirror top-bottom, probability 1/2
 *   3. crop=P     pad P zeros on every side, take an HxW window at a uniform
 *                 offset in [0, 2P] on each axis
 *   4. shift=P    move the image by a uniform integer in [-P, P] on each
 *                 axis (positive: down and right), zero fill
 *   5. rotate=D   turn by a uniform angle in [-D, D] degrees (positive:
 *                 counterclockwise as displayed) about the image centre
 *                 ((H-1)/2, (W-1)/2), bilinear, zero fill outside
 *   6. noise=S    add Gaussian noise of standard deviation S to every value
 *                 (each channel its own draw), then clamp to [0, 1]
 *
 * Steps 1-5 move whole pixels, so the channels of a pixel stay together.
 * What an image draws depends only on its key, and augment_key() derives
 * the key from the seed, the epoch and the sample's index in the training
 * set: a run is repeatable bit for bit whatever the thread count or the
 * batch split, and a resumed run draws what the uninterrupted one would.
 * The random numbers are trainer.h's xoshiro256** (TrainRng).
 */
#ifndef CNNGEN_AUGMENT_H
#define CNNGEN_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../compiler/ir.h"

/* The transforms in the order they apply (for messages). */
extern const Augment augment_order[AUG_COUNT];

/* The transforms of one network's train block, for images of h x w x c. */
typedef struct Augmenter {
  int h, w, c;
  bool hflip, vflip;
  long crop, shift; /* pixels; 0: off */
  double rotate;    /* degrees; 0: off */
  double noise;     /* standard deviation; 0: off */
} Augmenter;

/* What one image drew: the parameters of each transform. Fields of the
   transforms that are off stay 0 (no flip, offset crop, no move). */
typedef struct AugmentDraw {
  bool hflip, vflip;
  long crop_y, crop_x;   /* window offset in the padded image, in [0, 2*crop] */
  long shift_y, shift_x; /* in [-shift, shift] */
  double angle;          /* degrees, in [-rotate, rotate] */
  uint64_t noise_key;    /* seeds the noise of this image */
} AugmentDraw;

/* Fills a from the train block for input shape `in`; returns whether any
   transform is on. */
bool augment_init(Augmenter *a, const TrainConfig *tc, Shape in);

/* The key of training sample `sample` (its index in the training set, not
   its place in a batch) in epoch `epoch` (0-based) of a run seeded `seed`. */
uint64_t augment_key(uint64_t seed, int epoch, long sample);

/* Draws one image's parameters from its key. */
void augment_draw(const Augmenter *a, uint64_t key, AugmentDraw *d);

/* Applies d to x [h][w][c] in place; tmp is scratch of h*w*c floats. The
   Augmenter is only read, so threads share one, each with its own tmp. */
void augment_apply(const Augmenter *a, const AugmentDraw *d, float *x, float *tmp);

/* augment_draw then augment_apply. */
void augment_image(const Augmenter *a, uint64_t key, float *x, float *tmp);

#endif
