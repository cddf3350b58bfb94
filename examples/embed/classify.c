/*
 * classify.c: classifies PGM images with a network that cnngen compiled to C
 * with its trained weights baked in:
 *
 *   cnngen fashion.cnn --weights fashion.safetensors --inference-only -o fashion.c
 *   cc -std=c99 -O2 classify.c fashion.c -lm -o classify
 *   ./classify shirt.pgm              ->  shirt.pgm: class 6, score 0.912345 (Shirt)
 *
 * The generated C needs no allocator, no files and no global state: the
 * weights are the constant fashion_trained, and the only memory is
 * fashion_work, scratch of a size fixed in the header (static here, as it
 * would be in firmware). Everything else in this file is reading the image.
 *
 * Images are binary PGM (P5, gray) for one input channel or PPM (P6) for
 * three, exactly the network's input height and width, 8 bits a sample;
 * pixels go in as sample / maxval, as `cnngen predict` feeds them.
 * Exit status: 0 when every image was classified, 1 when one was unreadable
 * or of the wrong size (the others are still classified), 2 on bad usage.
 */
#include <stdio.h>
#include <string.h>

/* The network: NET is its name (the prefix of every generated symbol) and
   NET_HEADER its header. The Makefile passes both for the .cnn it compiles;
   by default they are the Fashion-MNIST network's. */
#ifndef NET
#define NET fashion
#define NET_HEADER "fashion.h"
#define NET_NAMED
#endif
#include NET_HEADER

#define GLUE(a, b) a##b
#define NET_SYMBOL(net, suffix) GLUE(net, suffix)
#define INPUT_H NET_SYMBOL(NET, _INPUT_H)
#define INPUT_W NET_SYMBOL(NET, _INPUT_W)
#define INPUT_C NET_SYMBOL(NET, _INPUT_C)
#define INPUT_SIZE NET_SYMBOL(NET, _INPUT_SIZE)
#define OUTPUT_SIZE NET_SYMBOL(NET, _OUTPUT_SIZE)
#define net_work NET_SYMBOL(NET, _work)       /* fashion_work */
#define net_infer NET_SYMBOL(NET, _infer)     /* fashion_infer */
#define net_trained NET_SYMBOL(NET, _trained) /* fashion_trained */

/* A network with a classes statement has NAME_CLASS_NAMES, the classes'
   names as an initializer; the Makefile defines NET_NAMED for those. */
#ifdef NET_NAMED
static const char *const class_names[OUTPUT_SIZE] = NET_SYMBOL(NET, _CLASS_NAMES);
#endif

/* Skips whitespace and '#' comments in a PNM header. */
static void skip_space(FILE *f) {
  int c;
  while ((c = getc(f)) != EOF) {
    if (c == '#')
      while ((c = getc(f)) != EOF && c != '\n')
        ;
    else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      ungetc(c, f);
      return;
    }
  }
}

/* A decimal number in 1..65535, or -1. */
static long read_number(FILE *f) {
  long v = 0;
  int c, digits = 0;
  skip_space(f);
  while ((c = getc(f)) >= '0' && c <= '9') {
    if (v <= 65535)
      v = v * 10 + (c - '0');
    digits++;
  }
  if (c != EOF)
    ungetc(c, f);
  return digits && v >= 1 && v <= 65535 ? v : -1;
}

/* Reads path into x as [H][W][C] floats in [0, 1]. Returns 0, or -1 after
   saying what is wrong. */
static int read_image(const char *path, float *x) {
  static unsigned char raster[INPUT_SIZE];
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "classify: %s: cannot open\n", path);
    return -1;
  }
  int magic = getc(f) == 'P' ? getc(f) : 0, channels = magic == '5' ? 1 : magic == '6' ? 3 : 0;
  long w = read_number(f), h = read_number(f), maxval = read_number(f);
  char wrong[128] = "";
  if (!channels || w < 0 || h < 0 || maxval < 0)
    strcpy(wrong, "not a binary PGM (P5) or PPM (P6) image");
  else if (maxval > 255)
    strcpy(wrong, "16-bit samples are not supported (save it with 8 bits)");
  else if (channels != INPUT_C)
    strcpy(wrong, INPUT_C == 1 ? "the network takes gray images (PGM, P5), not colour"
                               : "the network takes colour images (PPM, P6), not gray");
  else if (w != INPUT_W || h != INPUT_H)
    sprintf(wrong, "the image is %ldx%ld; the network takes %dx%d", w, h, INPUT_W, INPUT_H);
  /* One whitespace byte ends the header, then comes the raster. */
  else if (getc(f) == EOF || fread(raster, 1, INPUT_SIZE, f) != INPUT_SIZE)
    strcpy(wrong, "truncated: the pixel data is shorter than the header says");
  fclose(f);
  if (*wrong) {
    fprintf(stderr, "classify: %s: %s\n", path, wrong);
    return -1;
  }
  for (int i = 0; i < INPUT_SIZE; i++)
    x[i] = (float)raster[i] / (float)maxval;
  return 0;
}

int main(int argc, char **argv) {
  static net_work work; /* the network's scratch: a fixed size, no malloc */
  static float x[INPUT_SIZE];
  float y[OUTPUT_SIZE];
  if (argc < 2) {
    fprintf(stderr,
            "usage: classify IMAGE.pgm...\n"
            "Prints each image's top class (0 to %d) and its score.\n",
            OUTPUT_SIZE - 1);
    return 2;
  }
  int status = 0;
  for (int i = 1; i < argc; i++) {
    if (read_image(argv[i], x) < 0) {
      status = 1;
      continue;
    }
    net_infer(&net_trained, &work, x, 1, y);
    int top = 0;
    for (int k = 1; k < OUTPUT_SIZE; k++)
      if (y[k] > y[top])
        top = k;
#ifdef NET_NAMED
    printf("%s: class %d, score %.9g (%s)\n", argv[i], top, y[top], class_names[top]);
#else
    printf("%s: class %d, score %.9g\n", argv[i], top, y[top]);
#endif
  }
  return status;
}
