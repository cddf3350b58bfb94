/*
 * test_folder.c: image folders and --data (runtime/formats/folder.c and
 * dataset.c): the listing (sorted classes, hidden entries skipped), images
 * of any format, size and channel count fitted to the network, the errors
 * that name the file or folder (an undecodable or truncated image, an empty
 * class folder, a test class that train lacks), classes.txt, and training on
 * a folder against training on the same images as IDX files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/dataset.h"
#include "formats/folder.h"
#include "formats/idx.h"
#include "formats/image.h"
#include "formats/safetensors.h"
#include "testutil.h"

static void mkdirs(const char *dir) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tu_path(dir));
  assert_int_equal(system(cmd), 0);
}

/* A w x h image of c channels whose every byte is v, as PNG. */
static void write_png(const char *name, int h, int w, int c, unsigned char v) {
  Image img = {h, w, c, malloc((size_t)(h * w * c))};
  memset(img.data, v, (size_t)(h * w * c));
  Err e = {0};
  assert_int_equal(image_write_png(tu_path(name), &img, &e), 0);
  image_free(&img);
}

static void check_msg(const Err *e, const char *path, const char *what) {
  if (path && strncmp(e->msg, tu_path(path), strlen(tu_path(path))))
    fail_msg("message does not start with '%s': %s", tu_path(path), e->msg);
  if (!strstr(e->msg, what))
    fail_msg("message lacks '%s': %s", what, e->msg);
}

/* Classes in byte order whatever the directory's order, hidden entries and
   stray files skipped; PNG, JPEG and PGM of other sizes and channel counts
   fitted to 6x6x1; images by file name, then class. */
static void test_folder_lists_sorted_and_fits_images(void **state) {
  (void)state;
  mkdirs("f1/train/b");
  mkdirs("f1/train/a");
  mkdirs("f1/train/C");
  mkdirs("f1/train/.hidden");
  mkdirs("f1/test/a");
  tu_write_text("f1/train/notes.txt", "not a class\n");
  write_png("f1/train/b/2.png", 6, 6, 1, 200);
  write_png("f1/train/b/1.png", 12, 3, 3, 100); /* RGB, 12x3: gray 100, resized */
  tu_write_text("f1/train/b/.DS_Store", "hidden");
  unsigned char px[8 * 8];
  memset(px, 50, sizeof px);
  tu_write_jpeg("f1/train/a/x.jpg", px, 8, 8, 1, 100);
  tu_write_text("f1/train/C/p.pgm", "P2 2 2 255\n7 7 7 7\n");
  write_png("f1/test/a/t.png", 6, 6, 3, 30);
  ImageFolder f;
  Err e = {0};
  assert_true(folder_is(tu_path("f1")));
  assert_false(folder_is(tu_path("f1/train/a")));
  assert_int_equal(folder_open(&f, tu_path("f1"), &e), 0);
  assert_int_equal(f.nclasses, 3);
  assert_string_equal(f.classes[0], "C");
  assert_string_equal(f.classes[1], "a");
  assert_string_equal(f.classes[2], "b");
  IdxImages im;
  IdxLabels lb;
  for (int threads = 1; threads <= 3; threads += 2) {
    assert_int_equal(folder_load(&f, "train", 6, 6, 1, threads, &im, &lb, &e), 0);
    assert_int_equal(im.n, 4);
    assert_int_equal(lb.n, 4);
    assert_int_equal(lb.k, 0);
    /* 1.png (b), 2.png (b), p.pgm (C), x.jpg (a) */
    static const unsigned char label[4] = {2, 2, 0, 1}, value[4] = {100, 200, 7, 50};
    for (int i = 0; i < 4; i++) {
      assert_int_equal(lb.data[i], label[i]);
      for (int p = 0; p < 36; p++)
        assert_int_equal(im.data[i * 36 + p], value[i]);
    }
    idx_images_free(&im);
    idx_labels_free(&lb);
  }
  assert_int_equal(folder_load(&f, "test", 6, 6, 1, 2, &im, &lb, &e), 0);
  assert_int_equal(im.n, 1);
  assert_int_equal(lb.data[0], 1);
  assert_int_equal(im.data[0], 30);
  idx_images_free(&im);
  idx_labels_free(&lb);
  folder_close(&f);
}

/* An empty class folder (in train or test), a test class train lacks, and
   a folder without train/test: errors naming the folder. */
static void test_folder_errors_name_the_folder(void **state) {
  (void)state;
  mkdirs("f2/train/cat");
  mkdirs("f2/train/dog");
  mkdirs("f2/test/cat");
  write_png("f2/train/cat/1.png", 4, 4, 1, 1);
  write_png("f2/test/cat/1.png", 4, 4, 1, 1);
  ImageFolder f;
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  assert_int_equal(folder_open(&f, tu_path("f2"), &e), 0);
  assert_int_equal(folder_load(&f, "train", 4, 4, 1, 2, &im, &lb, &e), -1);
  check_msg(&e, "f2/train/dog", "empty class folder");
  assert_null(im.data);
  write_png("f2/train/dog/1.png", 4, 4, 1, 1);
  assert_int_equal(folder_load(&f, "train", 4, 4, 1, 2, &im, &lb, &e), 0);
  idx_images_free(&im);
  idx_labels_free(&lb);
  mkdirs("f2/test/bird");
  write_png("f2/test/bird/1.png", 4, 4, 1, 1);
  assert_int_equal(folder_load(&f, "test", 4, 4, 1, 2, &im, &lb, &e), -1);
  check_msg(&e, "f2/test", "class 'bird' is not among the training classes");
  assert_non_null(strstr(e.msg, "has cat, dog"));
  folder_close(&f);
  mkdirs("f3/train");
  assert_int_equal(folder_open(&f, tu_path("f3"), &e), -1);
  check_msg(&e, "f3/train", "no class folders");
  mkdirs("f3/train/x");
  write_png("f3/train/x/1.png", 4, 4, 1, 1);
  assert_int_equal(folder_open(&f, tu_path("f3"), &e), 0);
  assert_int_equal(folder_load(&f, "test", 4, 4, 1, 2, &im, &lb, &e), -1);
  check_msg(&e, "f3/test", "no such folder");
  folder_close(&f);
}

/* A truncated PNG, a truncated JPEG and a text file named .png: each is
   refused naming the file; with several bad files the first in the listing
   is named, whatever the thread count. */
static void test_folder_bad_image_names_the_first_bad_file(void **state) {
  (void)state;
  mkdirs("f4/train/a");
  mkdirs("f4/train/b");
  for (int i = 0; i < 40; i++) {
    char name[64];
    snprintf(name, sizeof name, "f4/train/%c/%02d.png", i % 2 ? 'b' : 'a', i);
    write_png(name, 5, 5, 1, (unsigned char)i);
  }
  ImageFolder f;
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  assert_int_equal(folder_open(&f, tu_path("f4"), &e), 0);
  /* a text file named .png in b, a cut PNG after it in b, a cut JPEG in a */
  tu_write_text("f4/train/b/31.png", "hello\n");
  char buf[4096];
  size_t n = tu_read_file(tu_path("f4/train/b/01.png"), buf, sizeof buf);
  FILE *cut = fopen(tu_path("f4/train/b/35.png"), "wb");
  assert_non_null(cut);
  fwrite(buf, 1, n / 2, cut);
  fclose(cut);
  unsigned char px[16 * 16];
  for (size_t i = 0; i < sizeof px; i++)
    px[i] = (unsigned char)(i * 3);
  tu_write_jpeg("f4/whole.jpg", px, 16, 16, 1, 90);
  n = tu_read_file(tu_path("f4/whole.jpg"), buf, sizeof buf);
  cut = fopen(tu_path("f4/train/a/38.jpg"), "wb");
  assert_non_null(cut);
  fwrite(buf, 1, n / 2, cut);
  fclose(cut);
  /* in the listing's order (file names): 31.png, 35.png, 38.jpg */
  for (int threads = 1; threads <= 4; threads++) {
    assert_int_equal(folder_load(&f, "train", 5, 5, 1, threads, &im, &lb, &e), -1);
    check_msg(&e, "f4/train/b/31.png", "not a PNG, JPEG or PGM/PPM image");
    assert_null(im.data);
  }
  remove(tu_path("f4/train/b/31.png"));
  for (int threads = 1; threads <= 4; threads++) {
    assert_int_equal(folder_load(&f, "train", 5, 5, 1, threads, &im, &lb, &e), -1);
    check_msg(&e, "f4/train/b/35.png", "bad PNG file: truncated PNG data");
  }
  remove(tu_path("f4/train/b/35.png"));
  assert_int_equal(folder_load(&f, "train", 5, 5, 1, 2, &im, &lb, &e), -1);
  check_msg(&e, "f4/train/a/38.jpg", "bad JPEG file: Premature end of JPEG file");
  folder_close(&f);
}

static void test_classes_txt(void **state) {
  (void)state;
  char **names;
  int n;
  Err e = {0};
  tu_write_text("c1.txt", "T-shirt/top\r\nAnkle boot\n");
  assert_int_equal(classes_read(tu_path("c1.txt"), &names, &n, &e), 0);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "T-shirt/top");
  assert_string_equal(names[1], "Ankle boot");
  classes_free(names, n);
  tu_write_text("c2.txt", "a\nb");
  assert_int_equal(classes_read(tu_path("c2.txt"), &names, &n, &e), 0);
  assert_int_equal(n, 2);
  classes_free(names, n);
  tu_write_text("c3.txt", "a\n\nb\n");
  assert_int_equal(classes_read(tu_path("c3.txt"), &names, &n, &e), -1);
  check_msg(&e, "c3.txt", "line 2 is empty");
  tu_write_text("c4.txt", "");
  assert_int_equal(classes_read(tu_path("c4.txt"), &names, &n, &e), -1);
  check_msg(&e, "c4.txt", "holds no class names");
}

/* The quadrant data as an image folder (PNG files named by their index in
   the IDX files, class folders 0..3): training on it gives the same lines as
   training on the IDX files, bit for bit the same weights, and eval the same
   report. */
static void test_folder_trains_as_idx(void **state) {
  (void)state;
  tu_quadrant_data("quad", 96, 24);
  static const char *const split[2][2] = {{"train", "train"}, {"t10k", "test"}};
  for (int s = 0; s < 2; s++) {
    char ip[600], lp[600];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", tu_path("quad"), split[s][0]);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", tu_path("quad"), split[s][0]);
    IdxImages im;
    IdxLabels lb;
    Err e = {0};
    assert_int_equal(idx_read_images(ip, &im, &e), 0);
    assert_int_equal(idx_read_labels(lp, &lb, &e), 0);
    for (int i = 0; i < im.n; i++) {
      char dir[64], name[96];
      snprintf(dir, sizeof dir, "folder/%s/%d", split[s][1], lb.data[i]);
      mkdirs(dir);
      snprintf(name, sizeof name, "%s/%03d.png", dir, i);
      Image img = {12, 12, 1, im.data + i * 144};
      assert_int_equal(image_write_png(tu_path(name), &img, &e), 0);
    }
    idx_images_free(&im);
    idx_labels_free(&lb);
  }
  tu_write_text("q.cnn", "network q\ninput 12x12x1\nconv2d 4 3x3 relu\nmaxpool 2x2\nflatten\n"
                         "dense 4 softmax\ntrain {\n  batch 8\n  epochs 2\n}\n");
  static char out_idx[8192];
  assert_int_equal(tu_run("train q.cnn --data quad --backend tcc --threads 2 --out i.st"), 0);
  snprintf(out_idx, sizeof out_idx, "%s", strstr(tu_out, "epoch 1/2"));
  assert_int_equal(tu_run("train q.cnn --data folder --backend tcc --threads 2 --out f.st"), 0);
  assert_contains(tu_out, "decoded 120 images (24 test) from folder in ");
  /* the lines up to their seconds */
  for (int epoch = 1; epoch <= 2; epoch++) {
    char head[32];
    snprintf(head, sizeof head, "epoch %d/2", epoch);
    const char *a = strstr(out_idx, head), *b = strstr(tu_out, head);
    assert_non_null(a);
    assert_non_null(b);
    size_t n = (size_t)(strstr(a, " lr ") - a);
    assert_memory_equal(a, b, n);
  }
  assert_true(tu_same_tensors("i.st", "f.st"));
  assert_int_equal(tu_run("eval q.cnn --data quad --weights f.st --backend tcc"), 0);
  static char eval_idx[8192];
  snprintf(eval_idx, sizeof eval_idx, "%s", strstr(tu_out, "accuracy"));
  assert_int_equal(tu_run("eval q.cnn --data folder --weights f.st --backend tcc"), 0);
  assert_contains(tu_out, "q on folder (test): 24 images, 4 classes");
  assert_memory_equal(eval_idx, strstr(tu_out, "accuracy"), 100);
}

/* The quadrant data (12x12 gray, 4 classes) as an image folder with
   classes named north, east, south, west (sorted: east, north, south, west). */
static void quadrant_folder(const char *dir) {
  static const char *const names[4] = {"east", "north", "south", "west"};
  tu_quadrant_data("q4", 48, 16);
  static const char *const split[2][2] = {{"train", "train"}, {"t10k", "test"}};
  for (int s = 0; s < 2; s++) {
    char ip[600], lp[600];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", tu_path("q4"), split[s][0]);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", tu_path("q4"), split[s][0]);
    IdxImages im;
    IdxLabels lb;
    Err e = {0};
    assert_int_equal(idx_read_images(ip, &im, &e), 0);
    assert_int_equal(idx_read_labels(lp, &lb, &e), 0);
    for (int k = 0; k < 4; k++) {
      char sub[128];
      snprintf(sub, sizeof sub, "%s/%s/%s", dir, split[s][1], names[k]);
      mkdirs(sub);
    }
    for (int i = 0; i < im.n; i++) {
      char name[160];
      snprintf(name, sizeof name, "%s/%s/%s/%03d.png", dir, split[s][1], names[lb.data[i]], i);
      Image img = {12, 12, 1, im.data + i * 144};
      assert_int_equal(image_write_png(tu_path(name), &img, &e), 0);
    }
    idx_images_free(&im);
    idx_labels_free(&lb);
  }
}

static const char named_net[] = "network n\ninput 12x12x1\nclasses east north south west\n"
                                "flatten\ndense 4 softmax\ntrain {\n  batch 8\n  epochs 1\n}\n";
static const char plain_net[] = "network n\ninput 12x12x1\nflatten\ndense 4 softmax\n"
                                "train {\n  batch 8\n  epochs 1\n}\n";

/* Names from the folders reach the weights' and the checkpoint's metadata,
   eval's table and --json, predict's lines and "name", explain's line; the
   same with the network's classes statement, which agrees. */
static void test_class_names_shown_everywhere(void **state) {
  (void)state;
  quadrant_folder("named");
  tu_write_text("plain.cnn", plain_net);
  tu_write_text("named.cnn", named_net);
  const char *run = "--backend tcc --threads 2";
  assert_int_equal(tu_run("train plain.cnn --data named %s --out p.st", run), 0);
  StFile f;
  Err e = {0};
  assert_int_equal(st_read(tu_path("p.st"), &f, &e), 0);
  assert_string_equal(st_meta(&f, "classes"), "[\"east\",\"north\",\"south\",\"west\"]");
  st_free(&f);
  /* the checkpoint's metadata too, so that predict names them from it */
  assert_int_equal(st_read(tu_path("p.st.ckpt"), &f, &e), 0);
  assert_string_equal(st_meta(&f, "classes"), "[\"east\",\"north\",\"south\",\"west\"]");
  st_free(&f);
  assert_int_equal(tu_run("predict plain.cnn --weights p.st.ckpt %s named/test/west/*.png", run),
                   0);
  assert_contains(tu_out, ": class 3 west (p=");
  assert_int_equal(tu_run("eval plain.cnn --data named --weights p.st %s --json", run), 0);
  assert_contains(tu_out, ", \"name\": \"east\"}, {\"precision\": ");
  assert_int_equal(tu_count(tu_out, "\"name\": "), 4);
  assert_int_equal(tu_run("eval plain.cnn --data named --weights p.st %s", run), 0);
  assert_contains(tu_out, "  class  precision  recall      F1  support  name\n");
  assert_contains(tu_out, "  north\n");
  /* predict: the names come from the weights' metadata */
  assert_int_equal(tu_run("predict plain.cnn --weights p.st %s --top 2 named/test/west/*.png", run),
                   0);
  assert_contains(tu_out, ": class 3 west (p=");
  assert_int_equal(tu_run("predict plain.cnn --weights p.st %s --json named/test/west/*.png", run),
                   0);
  assert_contains(tu_out, "\"class\": 3, \"name\": \"west\", \"outputs\": [");
  /* the network's own names, which agree with the folders and the weights */
  assert_int_equal(tu_run("train named.cnn --data named %s --weights p.st --out n.st", run), 0);
  assert_int_equal(tu_run("explain named.cnn --weights n.st %s --class 3 "
                          "$(ls named/test/west/*.png | head -n 1) --out w.png",
                          run),
                   0);
  assert_contains(tu_out, ": class 3 west (p=");
  Image img;
  assert_int_equal(image_read(tu_path("w.png"), &img, &e), 0);
  assert_true(img.h > 12 * 16); /* the caption's strip under the panels */
  image_free(&img);
  /* predict and explain take JPEG: a bright square in the west (bottom right) quadrant */
  unsigned char px[144];
  for (int p = 0; p < 144; p++)
    px[p] = p / 12 >= 7 && p % 12 >= 7 && p / 12 < 11 && p % 12 < 11 ? 230 : 20;
  tu_write_jpeg("west.jpg", px, 12, 12, 1, 95);
  assert_int_equal(tu_run("predict named.cnn --weights n.st %s --json west.jpg", run), 0);
  assert_contains(tu_out, "{\"index\": 0, \"file\": \"west.jpg\", \"class\": ");
  assert_int_equal(tu_run("explain named.cnn --weights n.st %s west.jpg --out j.png", run), 0);
  assert_contains(tu_out, "west.jpg: class ");
  /* no names anywhere: the old output */
  tu_quadrant_data("idx", 48, 16);
  assert_int_equal(tu_run("train plain.cnn --data idx %s --out i.st", run), 0);
  assert_int_equal(tu_run("eval plain.cnn --data idx --weights i.st %s --json", run), 0);
  assert_null(strstr(tu_out, "\"name\""));
  /* classes.txt names IDX data */
  tu_write_text("idx/classes.txt", "east\nnorth\nsouth\nwest\n");
  assert_int_equal(tu_run("eval plain.cnn --data idx --weights i.st %s", run), 0);
  assert_contains(tu_out, "  south\n");
}

/* Two sources that disagree, or a count that is not the outputs': an error
   naming both, exit status 1, nothing trained or written. */
static void test_class_names_disagree(void **state) {
  (void)state;
  quadrant_folder("odd");
  tu_write_text("other.cnn", "network n\ninput 12x12x1\nclasses east north south wets\n"
                             "flatten\ndense 4 softmax\ntrain {\n  batch 8\n  epochs 1\n}\n");
  const char *run = "--backend tcc --threads 1";
  assert_int_equal(tu_run("train other.cnn --data odd %s --out o.st", run), 1);
  assert_contains(tu_err, "cnngen: error: odd/train: class 3 is 'west' in its class folders but "
                          "'wets' in other.cnn's classes statement");
  assert_false(tu_exists("o.st"));
  assert_false(tu_exists("o.ckpt.st"));
  assert_null(strstr(tu_out, "epoch"));
  tu_write_text("plain.cnn", plain_net);
  assert_int_equal(tu_run("train plain.cnn --data odd %s --out p.st", run), 0);
  assert_int_equal(tu_run("predict other.cnn --weights p.st %s odd/test/west/001.png", run), 1);
  assert_contains(tu_err, "p.st: class 3 is 'west' in its metadata but 'wets' in other.cnn's "
                          "classes statement");
  tu_quadrant_data("idx3", 48, 16);
  tu_write_text("idx3/classes.txt", "a\nb\nc\n");
  assert_int_equal(tu_run("eval plain.cnn --data idx3 --weights p.st %s", run), 1);
  assert_contains(tu_err, "idx3/classes.txt: its lines give 3 class names, but the network has 4 "
                          "outputs");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_folder_lists_sorted_and_fits_images),
      cmocka_unit_test(test_folder_errors_name_the_folder),
      cmocka_unit_test(test_folder_bad_image_names_the_first_bad_file),
      cmocka_unit_test(test_classes_txt),
      cmocka_unit_test(test_folder_trains_as_idx),
      cmocka_unit_test(test_class_names_shown_everywhere),
      cmocka_unit_test(test_class_names_disagree),
  };
  return cmocka_run_group_tests(tests, tu_setup, tu_teardown);
}
