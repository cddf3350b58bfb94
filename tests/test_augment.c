/*
 * test_augment.c: data augmentation (runtime/augment.h), then `cnngen train`
 * with an augment line.
 *
 * The transforms are checked on images whose answer is known: a flipped
 * gradient, a marked pixel moved by the drawn shift or crop, a quarter turn
 * against transpose and flip (on 5x5 and 6x6: the centre (n-1)/2 maps whole
 * pixels to whole pixels at both parities, so the match is exact up to the
 * rounding of cos 90 degrees, checked to 1e-5), noise statistics, and a
 * multichannel image that must move as its channels would move one by one.
 * Draws come from the key alone. The command: a run with augmentation is
 * repeatable bit for bit and differs from one without, and test scoring
 * never sees augmented images.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "formats/idx.h"
#include "testutil.h"

#define MAXPIX 4096

static Augmenter make(int h, int w, int c) {
  return (Augmenter){.h = h, .w = w, .c = c};
}

/* Deterministic pseudo-random values in [0, 1). */
static float uniform(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return (float)((double)(*s >> 11) / 9007199254740992.0);
}

static void fill_random(float *x, long n, uint64_t seed) {
  for (long i = 0; i < n; i++)
    x[i] = uniform(&seed);
}

static void apply(const Augmenter *a, const AugmentDraw *d, float *x) {
  float tmp[MAXPIX];
  assert_true((long)a->h * a->w * a->c <= MAXPIX);
  augment_apply(a, d, x, tmp);
}

/* ---- flips ---- */

static void test_augment_hflip_mirrors_a_gradient(void **state) {
  (void)state;
  enum { H = 4, W = 7 };
  Augmenter a = make(H, W, 1);
  a.hflip = true;
  float x[H * W];
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++)
      x[y * W + i] = (float)i / (W - 1) + 0.01f * (float)y;
  apply(&a, &(AugmentDraw){.hflip = true}, x);
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++)
      assert_float_equal(x[y * W + i], (float)(W - 1 - i) / (W - 1) + 0.01f * (float)y, 0);
}

static void test_augment_vflip_mirrors_a_gradient(void **state) {
  (void)state;
  enum { H = 6, W = 3 };
  Augmenter a = make(H, W, 1);
  a.vflip = true;
  float x[H * W];
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++)
      x[y * W + i] = (float)y / (H - 1) + 0.01f * (float)i;
  apply(&a, &(AugmentDraw){.vflip = true}, x);
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++)
      assert_float_equal(x[y * W + i], (float)(H - 1 - y) / (H - 1) + 0.01f * (float)i, 0);
}

/* Each flip happens about half the time, and only the flips asked for. */
static void test_augment_flips_are_drawn_half_the_time(void **state) {
  (void)state;
  Augmenter a = make(8, 8, 1);
  a.hflip = true;
  int h = 0, v = 0, n = 4000;
  for (int i = 0; i < n; i++) {
    AugmentDraw d;
    augment_draw(&a, augment_key(1, 0, i), &d);
    h += d.hflip;
    v += d.vflip;
  }
  print_message("hflip drawn %d of %d times\n", h, n);
  assert_true(h > n / 2 - 150 && h < n / 2 + 150); /* 4.7 standard deviations */
  assert_int_equal(v, 0);
}

/* ---- rotation ---- */

/* A quarter turn counterclockwise is a transpose then a vertical flip:
   out[y][x] = in[x][n-1-y]; clockwise, a transpose then a horizontal flip;
   a half turn, both flips. */
static void test_augment_rotate_90_is_transpose_and_flip(void **state) {
  (void)state;
  for (int n = 5; n <= 6; n++) {
    Augmenter a = make(n, n, 1);
    a.rotate = 90;
    float in[36], x[36];
    fill_random(in, n * n, 7 + (uint64_t)n);
    double worst = 0;
    for (int turn = 0; turn < 3; turn++) {
      double angle = turn == 0 ? 90 : turn == 1 ? -90 : 180;
      memcpy(x, in, sizeof in);
      apply(&a, &(AugmentDraw){.angle = angle}, x);
      for (int y = 0; y < n; y++)
        for (int i = 0; i < n; i++) {
          float want = turn == 0   ? in[i * n + (n - 1 - y)]
                       : turn == 1 ? in[(n - 1 - i) * n + y]
                                   : in[(n - 1 - y) * n + (n - 1 - i)];
          worst = fmax(worst, fabs(x[y * n + i] - want));
        }
    }
    print_message("%dx%d: quarter and half turns differ from flips by at most %.3g\n", n, n, worst);
    assert_true(worst <= 1e-5);
  }
}

/* A turn keeps the centre pixel (odd size) and fills what comes from
   outside the image with zeros: at 45 degrees the corners of a white image
   turn black, the middle of each edge stays white. */
static void test_augment_rotate_zero_fills_the_corners(void **state) {
  (void)state;
  enum { N = 9 };
  Augmenter a = make(N, N, 1);
  a.rotate = 45;
  float x[N * N];
  for (int i = 0; i < N * N; i++)
    x[i] = 1;
  x[(N / 2) * N + N / 2] = 0.25f;
  apply(&a, &(AugmentDraw){.angle = 45}, x);
  assert_float_equal(x[(N / 2) * N + N / 2], 0.25f, 1e-6);
  assert_float_equal(x[0], 0, 0);
  assert_float_equal(x[N - 1], 0, 0);
  assert_float_equal(x[(N - 1) * N], 0, 0);
  assert_float_equal(x[N * N - 1], 0, 0);
  assert_float_equal(x[N / 2], 1, 1e-6);     /* top middle */
  assert_float_equal(x[N / 2 * N], 1, 1e-6); /* left middle */
}

/* Bilinear: a small turn of a horizontal ramp gives values between its
   neighbours', and the angles drawn cover [-rotate, rotate]. */
static void test_augment_rotate_draws_angles_in_range(void **state) {
  (void)state;
  Augmenter a = make(28, 28, 1);
  a.rotate = 15;
  double lo = 0, hi = 0;
  for (int i = 0; i < 2000; i++) {
    AugmentDraw d;
    augment_draw(&a, augment_key(3, 1, i), &d);
    assert_true(d.angle >= -15 && d.angle <= 15);
    lo = fmin(lo, d.angle);
    hi = fmax(hi, d.angle);
  }
  assert_true(lo < -14.5 && hi > 14.5);
  float x[28 * 28];
  for (int y = 0; y < 28; y++)
    for (int i = 0; i < 28; i++)
      x[y * 28 + i] = (float)i / 27;
  apply(&a, &(AugmentDraw){.angle = 10}, x);
  /* Along the middle row, the ramp turns into a slope of cos(10 deg)/27. */
  float d = x[14 * 28 + 15] - x[14 * 28 + 14];
  assert_float_equal(d, cosf(10 * 3.14159265f / 180) / 27, 1e-5);
}

/* ---- shift and crop ---- */

/* A marked pixel moves by the drawn amount and nothing else is lit; a white
   image keeps (H - |dy|) x (W - |dx|) white pixels, the rest zero. Every
   amount in [-2, 2] is drawn. */
static void test_augment_shift_moves_a_marked_pixel(void **state) {
  (void)state;
  enum { H = 8, W = 9, P = 2 };
  Augmenter a = make(H, W, 1);
  a.shift = P;
  int seen[2 * P + 1][2 * P + 1] = {{0}};
  for (int i = 0; i < 400; i++) {
    AugmentDraw d;
    augment_draw(&a, augment_key(9, 2, i), &d);
    assert_true(d.shift_y >= -P && d.shift_y <= P && d.shift_x >= -P && d.shift_x <= P);
    seen[d.shift_y + P][d.shift_x + P]++;
    float x[H * W] = {0};
    x[3 * W + 4] = 0.75f;
    apply(&a, &d, x);
    for (int p = 0; p < H * W; p++)
      assert_float_equal(x[p], p == (3 + d.shift_y) * W + 4 + d.shift_x ? 0.75f : 0.0f, 0);
    float white[H * W];
    for (int p = 0; p < H * W; p++)
      white[p] = 1;
    apply(&a, &d, white);
    int lit = 0;
    for (int y = 0; y < H; y++)
      for (int c = 0; c < W; c++) {
        int inside =
            y - d.shift_y >= 0 && y - d.shift_y < H && c - d.shift_x >= 0 && c - d.shift_x < W;
        assert_float_equal(white[y * W + c], inside ? 1.0f : 0.0f, 0);
        lit += inside;
      }
    assert_int_equal(lit, (H - labs(d.shift_y)) * (W - labs(d.shift_x)));
  }
  for (int y = 0; y <= 2 * P; y++)
    for (int c = 0; c <= 2 * P; c++)
      assert_true(seen[y][c] > 0);
}

/* A crop pads 3 zeros and takes a window at offset (oy, ox) in [0, 6]: the
   mark moves by (3 - oy, 3 - ox), every offset is drawn, none is outside. */
static void test_augment_crop_stays_within_the_padding(void **state) {
  (void)state;
  enum { H = 10, W = 10, P = 3 };
  Augmenter a = make(H, W, 1);
  a.crop = P;
  int seen[2 * P + 1] = {0};
  for (int i = 0; i < 300; i++) {
    AugmentDraw d;
    augment_draw(&a, augment_key(4, 0, i), &d);
    assert_true(d.crop_y >= 0 && d.crop_y <= 2 * P && d.crop_x >= 0 && d.crop_x <= 2 * P);
    seen[d.crop_y]++;
    seen[d.crop_x]++;
    float x[H * W] = {0};
    x[0] = 1; /* the top left corner */
    x[H * W - 1] = 0.5f;
    apply(&a, &d, x);
    int ty = (int)(P - d.crop_y), tx = (int)(P - d.crop_x), lit = 0;
    for (int p = 0; p < H * W; p++)
      lit += x[p] != 0;
    /* The corners survive when the window keeps them. */
    int keep0 = ty >= 0 && tx >= 0, keep1 = ty <= 0 && tx <= 0;
    assert_int_equal(lit, keep0 + keep1);
    if (keep0)
      assert_float_equal(x[ty * W + tx], 1, 0);
    if (keep1)
      assert_float_equal(x[(H - 1 + ty) * W + W - 1 + tx], 0.5f, 0);
  }
  for (int o = 0; o <= 2 * P; o++)
    assert_true(seen[o] > 0);
}

/* The steps apply one after another: a crop that moves the image left by
   2 then a shift right by 2 gives back the middle with zeros in both
   fill regions (columns 0-1 from the shift), not the identity. */
static void test_augment_crop_then_shift_keep_both_zero_fills(void **state) {
  (void)state;
  enum { H = 3, W = 8 };
  Augmenter a = make(H, W, 1);
  a.crop = 2;
  a.shift = 2;
  float x[H * W];
  for (int p = 0; p < H * W; p++)
    x[p] = 1;
  apply(&a, &(AugmentDraw){.crop_y = 2, .crop_x = 4, .shift_x = 2}, x);
  for (int y = 0; y < H; y++)
    for (int c = 0; c < W; c++)
      assert_float_equal(x[y * W + c], c < 2 ? 0.0f : 1.0f, 0);
  /* hflip comes before the crop: a mark at column 0 flips to 7, the crop
     (offset 0: right by 2) pushes it out. */
  a.hflip = true;
  float m[H * W] = {0};
  m[W] = 1; /* row 1, column 0 */
  apply(&a, &(AugmentDraw){.hflip = true, .crop_y = 2, .crop_x = 0}, m);
  for (int p = 0; p < H * W; p++)
    assert_float_equal(m[p], 0, 0);
  memset(m, 0, sizeof m);
  m[W + 2] = 1; /* column 2 flips to 5, then moves to 7 */
  apply(&a, &(AugmentDraw){.hflip = true, .crop_y = 2, .crop_x = 0}, m);
  assert_float_equal(m[W + 7], 1, 0);
}

/* Shifts larger than the image leave zeros and do not crash. */
static void test_augment_huge_shift_and_crop_give_zeros(void **state) {
  (void)state;
  Augmenter a = make(4, 4, 2);
  a.shift = 1L << 24;
  a.crop = 1L << 24;
  float x[32];
  for (int i = 0; i < 100; i++) {
    AugmentDraw d;
    augment_draw(&a, augment_key(1, 0, i), &d);
    for (int p = 0; p < 32; p++)
      x[p] = 1;
    apply(&a, &d, x);
    int lit = 0;
    for (int p = 0; p < 32; p++)
      lit += x[p] != 0;
    if (labs(d.shift_y) >= 4 || labs(d.shift_x) >= 4 || labs(d.crop_y - a.crop) >= 4 ||
        labs(d.crop_x - a.crop) >= 4)
      assert_int_equal(lit, 0);
  }
}

/* ---- noise ---- */

static void test_augment_noise_has_the_asked_std_and_stays_in_range(void **state) {
  (void)state;
  enum { N = 64 };
  Augmenter a = make(N, N, 1);
  a.noise = 0.1;
  float x[N * N];
  double sum = 0, sq = 0;
  int images = 0;
  for (int k = 0; k < 8; k++, images++) {
    for (int p = 0; p < N * N; p++)
      x[p] = 0.5f;
    AugmentDraw d;
    augment_draw(&a, augment_key(5, 0, k), &d);
    apply(&a, &d, x);
    for (int p = 0; p < N * N; p++) {
      sum += x[p] - 0.5;
      sq += (x[p] - 0.5) * (x[p] - 0.5);
    }
  }
  double n = (double)images * N * N, mean = sum / n, sd = sqrt(sq / n - mean * mean);
  print_message("noise=0.1 on 0.5: mean %+.4f, std %.4f over %.0f values\n", mean, sd, n);
  assert_true(fabs(mean) < 0.005);
  assert_true(fabs(sd - 0.1) < 0.003);
  /* At black and white with a large std, values clamp to [0, 1], and about
     half move off the edge. */
  a.noise = 0.5;
  int moved = 0;
  for (int p = 0; p < N * N; p++)
    x[p] = p & 1 ? 1.0f : 0.0f;
  AugmentDraw d;
  augment_draw(&a, augment_key(5, 1, 0), &d);
  apply(&a, &d, x);
  for (int p = 0; p < N * N; p++) {
    assert_true(x[p] >= 0 && x[p] <= 1);
    moved += x[p] != (p & 1 ? 1.0f : 0.0f);
  }
  assert_true(moved > N * N / 2 - 200 && moved < N * N / 2 + 200);
}

/* ---- keys ---- */

static Augmenter everything(int h, int w, int c) {
  Augmenter a = make(h, w, c);
  a.hflip = a.vflip = true;
  a.crop = 2;
  a.shift = 2;
  a.rotate = 20;
  a.noise = 0.05;
  return a;
}

static void test_augment_same_key_same_image_other_key_other_image(void **state) {
  (void)state;
  Augmenter a = everything(28, 28, 1);
  float in[784], x1[784], x2[784], tmp[784];
  fill_random(in, 784, 1);
  memcpy(x1, in, sizeof in);
  memcpy(x2, in, sizeof in);
  augment_image(&a, augment_key(1, 0, 5), x1, tmp);
  augment_image(&a, augment_key(1, 0, 5), x2, tmp);
  assert_memory_equal(x1, x2, sizeof x1);
  assert_memory_not_equal(x1, in, sizeof x1);
  /* Another sample, epoch or seed draws another image. */
  uint64_t keys[3] = {augment_key(1, 0, 6), augment_key(1, 1, 5), augment_key(2, 0, 5)};
  for (int k = 0; k < 3; k++) {
    memcpy(x2, in, sizeof in);
    augment_image(&a, keys[k], x2, tmp);
    assert_memory_not_equal(x1, x2, sizeof x1);
  }
  /* The keys themselves are distinct over a grid of seeds, epochs, samples. */
  uint64_t seen[2 * 3 * 50];
  int n = 0;
  for (uint64_t s = 0; s < 2; s++)
    for (int e = 0; e < 3; e++)
      for (long i = 0; i < 50; i++) {
        uint64_t k = augment_key(s, e, i);
        for (int j = 0; j < n; j++)
          assert_true(seen[j] != k);
        seen[n++] = k;
      }
}

/* A 3-channel image moves as each of its channels would alone: the channels
   of a pixel stay together through flips, crop, shift and rotation. */
static void test_augment_channels_move_together(void **state) {
  (void)state;
  enum { H = 11, W = 13, C = 3 };
  Augmenter a3 = everything(H, W, C), a1 = everything(H, W, 1);
  a3.noise = a1.noise = 0;
  float rgb[H * W * C], plane[C][H * W];
  for (int i = 0; i < 50; i++) {
    fill_random(rgb, H * W * C, 100 + (uint64_t)i);
    for (int p = 0; p < H * W; p++)
      for (int c = 0; c < C; c++)
        plane[c][p] = rgb[p * C + c];
    AugmentDraw d;
    augment_draw(&a3, augment_key(8, 0, i), &d);
    apply(&a3, &d, rgb);
    for (int c = 0; c < C; c++) {
      apply(&a1, &d, plane[c]);
      for (int p = 0; p < H * W; p++)
        assert_float_equal(rgb[p * C + c], plane[c][p], 0);
    }
  }
}

static void test_augment_init_reads_the_train_block(void **state) {
  (void)state;
  TrainConfig tc = {0};
  Augmenter a;
  assert_false(augment_init(&a, &tc, (Shape){28, 28, 1, false}));
  tc.augment[AUG_HFLIP].on = true;
  tc.augment[AUG_SHIFT] = (AugmentSetting){.on = true, .value = 2};
  tc.augment[AUG_ROTATE] = (AugmentSetting){.on = true, .value = 12.5};
  assert_true(augment_init(&a, &tc, (Shape){32, 30, 3, false}));
  assert_true(a.hflip);
  assert_false(a.vflip);
  assert_int_equal(a.shift, 2);
  assert_int_equal(a.crop, 0);
  assert_float_equal(a.rotate, 12.5, 0);
  assert_float_equal(a.noise, 0, 0);
  assert_int_equal(a.h, 32);
  assert_int_equal(a.w, 30);
  assert_int_equal(a.c, 3);
}

/* ---- the command ---- */

static const char quad_net[] = "network quad\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\n"
                               "flatten\ndense 4 softmax\ntrain {\n  batch 16\n  seed 3\n%s}\n";

static void write_net(const char *file, const char *augment_line) {
  char text[1024];
  snprintf(text, sizeof text, quad_net, augment_line);
  tu_write_text(file, text);
}

static void test_augment_training_is_repeatable_and_differs_from_plain(void **state) {
  (void)state;
  tu_quadrant_data("quad", 256, 64);
  write_net("aug.cnn", "  augment hflip vflip shift=1 crop=1 rotate=10 noise=0.05\n");
  write_net("plain.cnn", "");
  const char *common = "--data quad --epochs 2 --backend tcc";
  assert_int_equal(tu_run("train aug.cnn %s --threads 1 --out a1.safetensors", common), 0);
  assert_true(strstr(tu_err, "not implemented") == NULL);
  assert_contains(tu_out,
                  "augmenting training images: hflip vflip crop=1 shift=1 rotate=10 noise=0.05\n");
  assert_int_equal(tu_run("train aug.cnn %s --threads 1 --out a2.safetensors", common), 0);
  assert_true(tu_same_tensors("a1.safetensors", "a2.safetensors"));
  assert_int_equal(tu_run("train plain.cnn %s --threads 1 --out p.safetensors", common), 0);
  assert_false(tu_same_tensors("a1.safetensors", "p.safetensors"));
  /* Two threads: repeatable too (draws do not depend on the batch split). */
  assert_int_equal(tu_run("train aug.cnn %s --threads 2 --out t1.safetensors", common), 0);
  assert_int_equal(tu_run("train aug.cnn %s --threads 2 --out t2.safetensors", common), 0);
  assert_true(tu_same_tensors("t1.safetensors", "t2.safetensors"));
  /* Resuming draws what the uninterrupted run drew. */
  assert_int_equal(tu_run("train aug.cnn --data quad --epochs 1 --backend tcc --threads 1 "
                          "--out h.safetensors --checkpoint h.ckpt"),
                   0);
  assert_int_equal(tu_run("train aug.cnn %s --threads 1 --resume h.ckpt --out r.safetensors "
                          "--checkpoint r.ckpt",
                          common),
                   0);
  assert_true(tu_same_tensors("a1.safetensors", "r.safetensors"));
}

/* The test loss that train prints after its last epoch is eval's on the
   saved weights: scoring uses the images as they are. */
static void test_augment_test_scoring_sees_plain_images(void **state) {
  (void)state;
  tu_quadrant_data("quad", 256, 64);
  write_net("noisy.cnn", "  augment noise=0.4 rotate=30\n");
  assert_int_equal(tu_run("train noisy.cnn --data quad --epochs 1 --backend tcc --threads 1 "
                          "--out n.safetensors"),
                   0);
  const char *tl = strstr(tu_out, "test loss ");
  assert_non_null(tl);
  double train_said = atof(tl + strlen("test loss "));
  assert_int_equal(tu_run("eval noisy.cnn --weights n.safetensors --data quad --json "
                          "--backend tcc --threads 1"),
                   0);
  const char *l = strstr(tu_out, "\"loss\":");
  assert_non_null(l);
  double eval_said = atof(l + strlen("\"loss\":"));
  print_message("test loss: train %.4f, eval %.6f\n", train_said, eval_said);
  assert_true(fabs(train_said - eval_said) <= 0.00005 + 1e-9);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_augment_hflip_mirrors_a_gradient),
      cmocka_unit_test(test_augment_vflip_mirrors_a_gradient),
      cmocka_unit_test(test_augment_flips_are_drawn_half_the_time),
      cmocka_unit_test(test_augment_rotate_90_is_transpose_and_flip),
      cmocka_unit_test(test_augment_rotate_zero_fills_the_corners),
      cmocka_unit_test(test_augment_rotate_draws_angles_in_range),
      cmocka_unit_test(test_augment_shift_moves_a_marked_pixel),
      cmocka_unit_test(test_augment_crop_stays_within_the_padding),
      cmocka_unit_test(test_augment_crop_then_shift_keep_both_zero_fills),
      cmocka_unit_test(test_augment_huge_shift_and_crop_give_zeros),
      cmocka_unit_test(test_augment_noise_has_the_asked_std_and_stays_in_range),
      cmocka_unit_test(test_augment_same_key_same_image_other_key_other_image),
      cmocka_unit_test(test_augment_channels_move_together),
      cmocka_unit_test(test_augment_init_reads_the_train_block),
      cmocka_unit_test(test_augment_training_is_repeatable_and_differs_from_plain),
      cmocka_unit_test(test_augment_test_scoring_sees_plain_images),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
