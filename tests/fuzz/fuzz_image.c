/*
 * fuzz_image.c: a libFuzzer harness over the image decoders that image
 * folders, `predict` and `explain` use (runtime/formats/image.c): each input
 * is a file's bytes, PNG (libpng), JPEG (libjpeg-turbo) or PGM/PPM (by
 * hand), decoded from memory as image_read decodes a file, without a
 * terminating NUL so that a read past the end shows; a decoded image is then
 * fitted (converted and resized) to a size taken from its first bytes, as
 * an image folder fits it to a network. Nothing may crash, leak, read out of
 * bounds or hit undefined behaviour.
 *
 * tests/fuzz/check runs it on tests/fuzz/images (small valid and broken
 * files of each format) with the dictionary tests/fuzz/image.dict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: no NUL after them */
  if (!copy)
    abort();
  memcpy(copy, data, size);
  Image img;
  Err e = {0};
  if (image_decode("fuzz", copy, size, &img, &e) == 0) {
    if (img.h < 1 || img.w < 1 || (img.c != 1 && img.c != 3) || !img.data)
      abort();
    int h = 1 + (size > 0 ? data[0] % 40 : 0), w = 1 + (size > 1 ? data[1] % 40 : 0);
    int c = size > 2 && data[2] & 1 ? 3 : 1;
    if (image_fit(&img, h, w, c) < 0 || img.h != h || img.w != w || img.c != c)
      abort();
    image_free(&img);
  } else if (!e.msg[0] || strncmp(e.msg, "fuzz: ", 6) != 0) {
    abort(); /* an error always says what, naming the file */
  }
  free(copy);
  return 0;
}
