/*
 * cmd_predict.c: `cnngen predict NET.cnn --weights W INPUT...`. Images from
 * every input are gathered into one batch buffer (a slot per image, with
 * the name to print it under); a full batch runs through engine_infer on
 * all threads and its results are printed in order. A bad input is
 * reported and skipped; the exit status is then 1.
 *
 * A multi-label network (loss binary_crossentropy, sigmoid outputs) gets
 * every label whose output is above --threshold instead of the top classes,
 * the same rule `cnngen eval` scores it by.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "formats/idx.h"
#include "formats/image.h"

static const char help[] =
    "usage: cnngen predict NET.cnn --weights W.safetensors [options] INPUT...\n"
    "\n"
    "Runs the network on images and prints the top classes of each.\n"
    "\n"
    "Each INPUT is a PNG, JPEG or PGM/PPM (P2, P3, P5, P6) image whose height and\n"
    "width are exactly the network's input size (gray and RGB are converted to\n"
    "the network's channels), or an IDX image file such as MNIST's\n"
    "t10k-images-idx3-ubyte (optionally .gz), of which every image is run.\n"
    "Pixels are fed as byte / 255 in height, width, channel order.\n"
    "\n"
    "Plain output is one line per image: its number, the file (with the image's\n"
    "position in brackets for IDX files), then the classes with the largest\n"
    "outputs, for example\n"
    "  0 shirt.png: class 6 (p=0.931), next 2 (0.041), 4 (0.012)\n"
    "\n"
    "For a multi-label network (loss binary_crossentropy) it lists instead every\n"
    "label whose output is above the threshold, in label order, for example\n"
    "  0 pair.png: labels 3 (0.970), 7 (0.880)\n"
    "  1 other.png: no label above 0.5\n"
    "\n"
    "Options:\n"
    "  --weights W   the trained weights (safetensors, PyTorch layout, or a\n"
    "                raw .f32 file of the floats NAME_store writes); required\n"
    "  --json        print one JSON object per image and line instead:\n"
    "                  {\"index\": I, \"file\": F, \"class\": K, \"outputs\": [...]}\n"
    "                F is the INPUT the image came from, as given, I the image's\n"
    "                position in that file from 0 (always 0 for a PGM/PNG image),\n"
    "                K the first largest output; outputs are the final layer's\n"
    "                values printed with enough digits to read back the same\n"
    "                float32; a multi-label network adds \"labels\": [...], the\n"
    "                labels above the threshold in increasing order\n"
    "  --top K       single-label networks: classes shown per image in plain\n"
    "                output (default 3)\n"
    "  --threshold T multi-label networks: the output value above which a label\n"
    "                is listed (default 0.5); single-label networks ignore it\n"
    "  --backend B   auto, tcc, cc or cc-kernels (default auto: as train)\n"
    "  --threads N   threads running the network, 1 to 256 (default: the number\n"
    "                of CPUs); results do not depend on it\n"
    "\n"
    "Examples:\n"
    "  cnngen predict examples/fashion.cnn --weights fashion.safetensors shirt.png\n"
    "  cnngen predict net.cnn --weights net.safetensors --json t10k-images-idx3-ubyte.gz\n"
    "  cnngen predict pairs.cnn --weights pairs.safetensors --threshold 0.3 pair.pgm\n"
    "\n"
    "Exit status: 0 success; 1 a bad network, weights file, option or input\n"
    "(inputs that can be read are still run); 2 internal error.\n";

enum { BATCH = 1024 };

typedef struct Batch {
  Engine *en;
  const CliArgs *a;
  long in_size, out_size;
  int n;                   /* images waiting */
  float *x, *y;            /* [BATCH][in_size], [BATCH][out_size] */
  const char *file[BATCH]; /* where each came from */
  int sub[BATCH];          /* its position in an IDX file, or -1 */
  long printed;            /* images printed so far: the next index */
  bool probabilities;      /* outputs are softmax or sigmoid */
  bool multilabel;         /* binary cross-entropy: list labels above threshold */
  int *order;              /* [out_size]: classes to print, best first */
  ClassNames names;        /* of the network or the weights */
} Batch;

/* " Shirt" after class i's number, where it has a name. */
static void print_name(const Batch *b, long i) {
  const char *name = cli_class_name(&b->names, (int)i);
  if (name)
    printf(" %s", name);
}

/* The indices of the k largest outputs, largest first (ties: the first wins). */
static void top_classes(const float *y, int n, int *order, int k) {
  for (int i = 0; i < k; i++) {
    int best = -1;
    for (int j = 0; j < n; j++) {
      bool used = false;
      for (int u = 0; u < i; u++)
        used |= order[u] == j;
      if (!used && (best < 0 || y[j] > y[best]))
        best = j;
    }
    order[i] = best;
  }
}

/* Multi-label plain output: every label above the threshold, in order. */
static void print_labels(Batch *b, const float *y) {
  double threshold = b->a->real[CLI_THRESHOLD];
  int on = 0;
  for (long j = 0; j < b->out_size; j++)
    on += y[j] > threshold;
  if (!on) {
    printf(": no label above %g\n", threshold);
    return;
  }
  printf(on == 1 ? ": label" : ": labels");
  for (long j = 0, n = 0; j < b->out_size; j++)
    if (y[j] > threshold) {
      printf("%s %ld", n++ ? "," : "", j);
      print_name(b, j);
      printf(" (%.3f)", y[j]);
    }
  putchar('\n');
}

static void print_plain(Batch *b, int slot, const float *y) {
  int k = (int)(b->a->num[CLI_TOP] < b->out_size ? b->a->num[CLI_TOP] : b->out_size);
  int *order = b->order;
  top_classes(y, (int)b->out_size, order, k);
  printf("%ld %s", b->printed, b->file[slot]);
  if (b->sub[slot] >= 0)
    printf("[%d]", b->sub[slot]);
  if (b->multilabel) {
    print_labels(b, y);
    return;
  }
  for (int i = 0; i < k; i++) {
    float v = y[order[i]];
    printf(i == 0 ? ": class %d" : i == 1 ? ", next %d" : ", %d", order[i]);
    print_name(b, order[i]);
    if (i == 0)
      printf(b->probabilities ? " (p=%.3f)" : " (y=%.4g)", v);
    else
      printf(b->probabilities ? " (%.3f)" : " (%.4g)", v);
  }
  putchar('\n');
}

static void print_json(Batch *b, int slot, const float *y) {
  int cls = 0;
  top_classes(y, (int)b->out_size, &cls, 1);
  printf("{\"index\": %d, \"file\": ", b->sub[slot] >= 0 ? b->sub[slot] : 0);
  cli_print_json_string(stdout, b->file[slot]);
  printf(", \"class\": %d", cls);
  const char *name = cli_class_name(&b->names, cls);
  if (name) {
    fputs(", \"name\": ", stdout);
    cli_print_json_string(stdout, name);
  }
  fputs(", \"outputs\": [", stdout);
  for (long j = 0; j < b->out_size; j++) {
    if (j)
      fputs(", ", stdout);
    cli_print_float(stdout, y[j]);
  }
  fputs("]", stdout);
  if (b->multilabel) {
    fputs(", \"labels\": [", stdout);
    for (long j = 0, n = 0; j < b->out_size; j++)
      if (y[j] > b->a->real[CLI_THRESHOLD])
        printf("%s%ld", n++ ? ", " : "", j);
    fputs("]", stdout);
  }
  fputs("}\n", stdout);
}

static void flush(Batch *b) {
  engine_infer(b->en, b->x, b->n, b->y);
  for (int i = 0; i < b->n; i++, b->printed++) {
    const float *y = b->y + i * b->out_size;
    if (b->a->value[CLI_JSON])
      print_json(b, i, y);
    else
      print_plain(b, i, y);
  }
  b->n = 0;
}

/* Queues one image of u8 [h][w][c] matching the network's input. */
static void push(Batch *b, const char *file, int sub, const unsigned char *pixels) {
  if (b->n == BATCH)
    flush(b);
  image_bytes_to_floats(pixels, b->in_size, b->x + b->n * b->in_size);
  b->file[b->n] = file;
  b->sub[b->n] = sub;
  b->n++;
}

static int add_picture(Batch *b, const char *path, Err *e) {
  const Net *net = b->en->net;
  Shape in = net->input;
  Image img;
  if (image_read_input(path, in.h, in.w, in.c, net->file, &img, e) < 0)
    return -1;
  push(b, path, -1, img.data);
  image_free(&img);
  return 0;
}

static int add_idx(Batch *b, const char *path, Err *e) {
  const Net *net = b->en->net;
  Shape in = net->input;
  IdxImages im;
  if (idx_read_images(path, &im, e) < 0)
    return -1;
  int rc = 0;
  if (im.h != in.h || im.w != in.w || im.c != in.c)
    rc = err_set(e, path, "images are %dx%dx%d, the network %s takes %dx%dx%d", im.h, im.w, im.c,
                 net->file, in.h, in.w, in.c);
  else
    for (int i = 0; i < im.n; i++)
      push(b, path, i, im.data + (long)i * b->in_size);
  idx_images_free(&im);
  return rc;
}

static int run(const CliArgs *a) {
  Arena arena = {0};
  Engine en = {0};
  Batch b = {0};
  int status = 0;
  Net *net = cli_compile_net(&arena, a->net_path, NULL, &status);
  if (!net)
    goto done;
  if ((status = cli_open_engine(&en, net, a, false, a->ninputs, &b.names)))
    goto done;
  b.en = &en;
  b.a = a;
  b.in_size = shape_size(net->input);
  b.out_size = shape_size(net->output);
  Act act = net_output_act(net);
  b.probabilities = act == ACT_SOFTMAX || act == ACT_SIGMOID;
  b.multilabel = net->train.loss == LOSS_BCE;
  b.x = malloc(sizeof(float) * BATCH * (size_t)b.in_size);
  b.y = malloc(sizeof(float) * BATCH * (size_t)b.out_size);
  b.order = malloc(sizeof(int) * (size_t)b.out_size);
  if (!b.x || !b.y || !b.order) {
    status = cli_usage_error("out of memory for a batch of %d images", BATCH);
    goto done;
  }
  for (int i = 0; i < a->ninputs; i++) {
    Err e = {0};
    const char *path = a->inputs[i];
    if ((image_is_picture(path) ? add_picture(&b, path, &e) : add_idx(&b, path, &e)) < 0) {
      if (b.n) /* print what came before the bad input first */
        flush(&b);
      fflush(stdout);
      int s = cli_fail(&e);
      status = s > status ? s : status;
    }
  }
  if (b.n)
    flush(&b);
done:
  free(b.x);
  free(b.y);
  free(b.order);
  cli_class_names_free(&b.names);
  if (en.prog)
    engine_close(&en);
  arena_free(&arena);
  return status;
}

const Command cmd_predict = {
    .name = "predict",
    .summary = "run a network on images and print the top classes (or labels)",
    .help = help,
    .options = OPT(CLI_WEIGHTS) | OPT(CLI_JSON) | OPT(CLI_TOP) | OPT(CLI_THRESHOLD) |
               OPT(CLI_BACKEND) | OPT(CLI_THREADS),
    .required = OPT(CLI_WEIGHTS),
    .min_args = 2,
    .max_args = -1,
    .run = run,
};
