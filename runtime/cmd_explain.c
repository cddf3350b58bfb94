/*
 * cmd_explain.c: `cnngen explain NET.cnn --weights W IMAGE --out MAP.png`.
 *
 * Why did the network choose a class? The network is compiled with its
 * training code, whose NAME_explain runs the image forward and takes the
 * gradient of one class score (the logit, before softmax) back through the
 * same backward passes training uses. From what it returns:
 *   saliency  the largest |d score / d pixel| over the channels, per pixel;
 *   gradcam   the channels of Grad-CAM's layer (net_cam_layer: the last
 *             convolution, or the sum of the residual block it is in)
 *             weighted by their mean gradient, summed, clipped at 0 and
 *             resized to the image; the messages name that layer.
 * Either is normalised to [0, 1] and drawn in colour over the image, scaled
 * up, next to the plain image, into a PNG written atomically. Every check
 * (options, image size, class, a convolution for Grad-CAM) happens before
 * anything is written, so bad input leaves no file.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "explain.h"
#include "formats/idx.h"
#include "formats/image.h"
#include "io.h"
#include "plot.h"

static const char help[] =
    "usage: cnngen explain NET.cnn --weights W [options] IMAGE --out MAP.png\n"
    "\n"
    "Shows why the network chose a class: a heat map of what in the image made\n"
    "that class's score rise, drawn over the image (scaled up) next to the plain\n"
    "image, in a PNG.\n"
    "\n"
    "The class score is the output layer's value before its activation (the\n"
    "logit before softmax or sigmoid); its gradient is computed by the network's\n"
    "generated training code (NAME_explain in the generated C).\n"
    "\n"
    "IMAGE is a PNG, JPEG or PGM/PPM (P2, P3, P5, P6) image of exactly the\n"
    "network's input size (gray and RGB are converted to the network's\n"
    "channels), or an IDX image file such as t10k-images-idx3-ubyte.gz with --index.\n"
    "\n"
    "Options:\n"
    "  --weights W       the trained weights (safetensors, or a raw .f32 file of\n"
    "                    the floats NAME_store writes); required\n"
    "  --out MAP.png     the picture to write; required\n"
    "  --method M        saliency (default): the largest |d score / d pixel| over\n"
    "                    the channels (Simonyan et al. 2014); or gradcam: the last\n"
    "                    convolution's channels (the sum of its residual block, if\n"
    "                    it is in one) weighted by the mean gradient of the score,\n"
    "                    summed and clipped at 0 (Selvaraju et al. 2017), resized\n"
    "                    bilinearly to the image\n"
    "  --class K         the class to explain (default: the top class)\n"
    "  --index N         the image to take from an IDX file (default 0)\n"
    "  --backend B       auto, tcc, cc or cc-kernels (default auto)\n"
    "  --threads N       accepted as by the other commands (one image: one thread)\n"
    "\n"
    "Examples:\n"
    "  cnngen explain examples/fashion.cnn --weights fashion.safetensors shirt.png \\\n"
    "      --out shirt-saliency.png\n"
    "  cnngen explain examples/fashion.cnn --weights fashion.safetensors --method gradcam \\\n"
    "      --index 12 /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --out 12.png\n"
    "\n"
    "Exit status: 0 success; 1 a bad network, weights file, option, image or\n"
    "class (nothing is written); 2 internal error.\n";

/* ---- the command ---- */

/* A white strip under the picture with "class K NAME (p=0.987)" in it:
   where the class has a name, the picture says which class it explains. */
static int caption(Image *pic, int cls, const char *name, const char *what, float v) {
  enum { SCALE = 2, PAD = 6, STRIP = 8 * SCALE + 2 * PAD };
  char text[320];
  snprintf(text, sizeof text, "class %d %s (%s=%.3f)", cls, name, what, (double)v);
  size_t row = (size_t)pic->w * (size_t)pic->c;
  uint8_t *data = realloc(pic->data, row * (size_t)(pic->h + STRIP));
  if (!data)
    return -1;
  memset(data + row * (size_t)pic->h, 255, row * STRIP);
  pic->data = data;
  pic->h += STRIP;
  plot_image_text(pic, PAD, pic->h - STRIP + PAD, SCALE, text);
  return 0;
}

/* Grad-CAM's layer in words: "conv3 (line 7, 7x7x64)", or for a block's
   sum "the sum of the residual block at line 18 (7x7x64)". */
static void cam_layer_words(const Layer *l, char *buf, size_t size) {
  if (l->op == OP_ADD)
    snprintf(buf, size, "the sum of the residual block at line %d (%dx%dx%d)", l->loc.line,
             l->out.h, l->out.w, l->out.c);
  else
    snprintf(buf, size, "%s (line %d, %dx%dx%d)", l->name, l->loc.line, l->out.h, l->out.w,
             l->out.c);
}

typedef float (*ExplainFn)(const void *m, void *w, void *g, const float *x, int cls, float *y,
                           float *dx, float *cam_act, float *cam_grad);

/* Reads IMAGE (or image --index of an IDX file) into x [INPUT_SIZE]. */
static int read_input(const CliArgs *a, const Net *net, const char *path, float *x, Err *e) {
  const Shape in = net->input;
  if (image_is_picture(path)) {
    if (a->value[CLI_INDEX])
      return err_set(e, path, "--index picks an image of an IDX file; this is a picture");
    Image img;
    if (image_read_input(path, in.h, in.w, in.c, net->file, &img, e) < 0)
      return -1;
    image_bytes_to_floats(img.data, shape_size(in), x);
    image_free(&img);
    return 0;
  }
  IdxImages im;
  if (idx_read_images(path, &im, e) < 0)
    return -1;
  long index = a->num[CLI_INDEX];
  int rc = -1;
  if (im.h != in.h || im.w != in.w || im.c != in.c)
    err_set(e, path, "images are %dx%dx%d, the network %s takes %dx%dx%d", im.h, im.w, im.c,
            net->file, in.h, in.w, in.c);
  else if (index >= im.n)
    err_set(e, path, "--index %ld is out of range: the file holds %d images (0 to %d)", index, im.n,
            im.n - 1);
  else {
    image_bytes_to_floats(im.data + index * shape_size(in), shape_size(in), x);
    rc = 0;
  }
  idx_images_free(&im);
  return rc;
}

static void *zalloc(size_t bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (p)
    memset(p, 0, rounded ? rounded : 64);
  return p;
}

static int run(const CliArgs *a) {
  Arena arena = {0};
  Engine en = {0};
  Err e = {0};
  int status = 0;
  float *x = NULL, *y = NULL, *dx = NULL, *act = NULL, *grad = NULL, *map = NULL;
  void *g = NULL;
  ClassNames names = {0};
  Image pic = {0};
  const char *method = a->value[CLI_METHOD] ? a->value[CLI_METHOD] : "saliency";
  const char *image_path = a->inputs[0], *out_path = a->value[CLI_OUT];
  static const char *const methods[] = {"saliency", "gradcam"};
  const bool gradcam = strcmp(method, "gradcam") == 0;
  if (!gradcam && strcmp(method, "saliency") != 0) {
    const char *near = cli_suggest(method, methods, 2);
    return cli_usage_error("explain: --method needs saliency or gradcam, got '%s'%s%s%s", method,
                           near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
  }
  IoPath outputs[1] = {{"--out", out_path}};
  IoPath inputs[3] = {{"the network file", a->net_path},
                      {"the image", image_path},
                      {"--weights", a->value[CLI_WEIGHTS]}};
  if (io_check_outputs(outputs, 1, inputs, 3, &e) < 0)
    return cli_fail(&e);
  Net *net = cli_compile_net(&arena, a->net_path, NULL, &status);
  if (!net)
    goto done;
  const Shape in = net->input;
  const long in_size = shape_size(in), out_size = shape_size(net->output);
  const Layer *conv = net_cam_layer(net);
  if (gradcam && !conv) {
    err_set(&e, net->file,
            "the network has no conv2d layer, and Grad-CAM works on a convolution's "
            "output (use --method saliency)");
    goto fail;
  }
  if (a->value[CLI_CLASS] && a->num[CLI_CLASS] >= out_size) {
    status = cli_usage_error("explain: --class %ld is out of range: %s has %ld outputs (0 to %ld)",
                             a->num[CLI_CLASS], net->file, out_size, out_size - 1);
    goto done;
  }
  const long cam_size = conv ? shape_size(conv->out) : 1;
  x = malloc(sizeof(float) * (size_t)in_size);
  dx = malloc(sizeof(float) * (size_t)in_size);
  y = malloc(sizeof(float) * (size_t)out_size);
  act = malloc(sizeof(float) * (size_t)cam_size);
  grad = malloc(sizeof(float) * (size_t)cam_size);
  map = malloc(sizeof(float) * (size_t)in.h * in.w);
  if (!x || !dx || !y || !act || !grad || !map) {
    err_set(&e, image_path, "out of memory for the image's gradients");
    e.internal = 1;
    goto fail;
  }
  if (read_input(a, net, image_path, x, &e) < 0)
    goto fail;
  if ((status = cli_open_engine(&en, net, a, true, 1, &names)))
    goto done;

  char name[128];
  snprintf(name, sizeof name, "%s_explain", net->name);
  void *p = program_symbol(en.prog, name);
  snprintf(name, sizeof name, "%s_grads_bytes", net->name);
  void *q = program_symbol(en.prog, name);
  if (!p || !q) {
    err_set(&e, net->file, "generated code lacks %s (a bug in cnngen)", name);
    e.internal = 1;
    goto fail;
  }
  ExplainFn explain;
  size_t (*grads_bytes)(void);
  memcpy(&explain, &p, sizeof p);
  memcpy(&grads_bytes, &q, sizeof q);
  if (!(g = zalloc(grads_bytes()))) {
    err_set(&e, net->file, "out of memory for the gradients (%zu bytes)", grads_bytes());
    e.internal = 1;
    goto fail;
  }

  int cls = (int)a->num[CLI_CLASS];
  if (!a->value[CLI_CLASS]) { /* the top class: the first largest output */
    engine_infer(&en, x, 1, y);
    cls = 0;
    for (long j = 1; j < out_size; j++)
      if (y[j] > y[cls])
        cls = (int)j;
  }
  float score = explain(en.model, en.works[0], g, x, cls, y, dx, act, grad);
  if (!isfinite(score)) {
    err_set(&e, image_path, "the class score is %g: the weights give no finite gradient",
            (double)score);
    goto fail;
  }
  float top;
  if (gradcam)
    top = explain_gradcam(act, grad, conv->out.h, conv->out.w, conv->out.c, in.h, in.w, map);
  else
    top = explain_saliency(dx, in.h, in.w, in.c, map);
  int scale = explain_scale(in.h, in.w);
  if (explain_render(x, in.h, in.w, in.c, map, scale, &pic) < 0) {
    err_set(&e, out_path, "out of memory for a %dx%d picture", in.h * scale, in.w * scale);
    e.internal = 1;
    goto fail;
  }
  Act oact = net_output_act(net);
  bool prob = oact == ACT_SOFTMAX || oact == ACT_SIGMOID;
  const char *cname = cli_class_name(&names, cls);
  if (cname && caption(&pic, cls, cname, prob ? "p" : "y", y[cls]) < 0) {
    err_set(&e, out_path, "out of memory for the picture's caption");
    e.internal = 1;
    goto fail;
  }
  if (image_write_png(out_path, &pic, &e) < 0)
    goto fail;
  char where[64] = "";
  if (!image_is_picture(image_path))
    snprintf(where, sizeof where, "[%ld]", a->num[CLI_INDEX]);
  printf("%s%s: class %d%s%s (%s=%.3f, score %.4g)\n", image_path, where, cls, cname ? " " : "",
         cname ? cname : "", prob ? "p" : "y", (double)y[cls], (double)score);
  char layer[NAME_SIZE + 96] = "", how[NAME_SIZE + 128];
  if (gradcam)
    cam_layer_words(conv, layer, sizeof layer);
  if (top == 0.0f) {
    if (gradcam)
      printf("note: the gradcam map is zero everywhere: no position of %s raises the score\n",
             layer);
    else
      printf("note: the saliency map is zero everywhere: the score does not depend on the "
             "pixels here\n");
  }
  snprintf(how, sizeof how, "%s%s", gradcam ? "Grad-CAM on " : "max |gradient| over channels",
           layer);
  printf("wrote %s: %dx%d, the image and its %s map (%s, %dx scale)\n", out_path, pic.w, pic.h,
         method, how, scale);
  goto done;

fail:
  status = cli_fail(&e);
done:
  image_free(&pic);
  cli_class_names_free(&names);
  free(g);
  free(x), free(y), free(dx), free(act), free(grad), free(map);
  if (en.prog)
    engine_close(&en);
  arena_free(&arena);
  return status;
}

const Command cmd_explain = {
    .name = "explain",
    .summary = "why the network chose a class: a saliency or Grad-CAM heat map",
    .help = help,
    .options = OPT(CLI_WEIGHTS) | OPT(CLI_OUT) | OPT(CLI_METHOD) | OPT(CLI_CLASS) | OPT(CLI_INDEX) |
               OPT(CLI_BACKEND) | OPT(CLI_THREADS),
    .required = OPT(CLI_WEIGHTS) | OPT(CLI_OUT),
    .min_args = 2,
    .max_args = 2,
    .run = run,
};
