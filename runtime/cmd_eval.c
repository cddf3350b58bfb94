/*
 * cmd_eval.c: `cnngen eval NET.cnn --weights W` scores a network on the
 * t10k split of a data directory, or the test folder of an image folder. The images run through the
 * engine in chunks; each chunk adds to running sums (loss, confusion matrix or per-label counts),
 * and the report is computed from the sums at the end.
 *
 * Two kinds of report:
 *   single-label (sparse CE, CE, mse): the class is the first largest
 *     output; accuracy, per-class precision/recall/F1, confusion matrix
 *     (rows = true class), macro recall and macro F1 over the classes that
 *     occur as a label or a prediction (as scikit-learn does).
 *   multi-label (binary CE): an output is on when it is above --threshold;
 *     per-label precision/recall/F1, micro and macro F1 (over all labels),
 *     exact match (every label of the image right).
 * Targets and labels come from trainset_make and the loss from train_loss
 * (trainer.c), so eval scores exactly what training optimizes: the mean
 * per image of the network's loss, without class weights.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "formats/dataset.h"
#include "formats/image.h"
#include "trainer.h"

static const char help[] =
    "usage: cnngen eval NET.cnn --weights W.safetensors [--data DIR] [options]\n"
    "\n"
    "Scores a trained network on the test set: DIR/t10k-images-idx3-ubyte and\n"
    "DIR/t10k-labels-idx1-ubyte (each optionally .gz). The images must have the\n"
    "network's input size; labels are class indices, or 0/1 rows with one\n"
    "column per output for multi-label data.\n"
    "\n"
    "For classifiers it prints the mean loss (the network's training loss,\n"
    "without class weights), the accuracy (the class is the first largest\n"
    "output), macro recall and macro F1 (averaged over the classes that occur\n"
    "as a label or a prediction), each class's precision, recall and F1, and the\n"
    "confusion matrix (rows: true class, columns: predicted class).\n"
    "\n"
    "For multi-label networks (loss binary_crossentropy) an output counts as on\n"
    "when it is above the threshold; it prints the loss, each label's precision,\n"
    "recall and F1, micro and macro F1, and the exact-match ratio (images with\n"
    "every label right).\n"
    "\n"
    "Options:\n"
    "  --weights W     the trained weights (safetensors, PyTorch layout, or a\n"
    "                  raw .f32 file of the floats NAME_store writes); required\n"
    "  --data DIR      the data: IDX files (t10k-...) or an image folder (its test\n"
    "                  folder), as for train (default " CNNGEN_DEFAULT_DATA ",\n"
    "                  Debian's dataset-fashion-mnist)\n"
    "  --json          print one JSON object instead of the report, with \"loss\",\n"
    "                  \"accuracy\", \"per_class\" (a list of {\"precision\", \"recall\",\n"
    "                  \"f1\", \"support\"}), \"confusion\" (a list of rows, one per\n"
    "                  true class), \"macro_recall\" and \"macro_f1\"; for multi-label\n"
    "                  networks \"loss\", \"per_label\", \"micro_f1\", \"macro_f1\" and\n"
    "                  \"exact_match\"\n"
    "  --threshold T   multi-label: the output value above which a label is on\n"
    "                  (default 0.5)\n"
    "  --backend B     auto, tcc, cc or cc-kernels (default auto: as train)\n"
    "  --threads N     threads running the network, 1 to 256 (default: the number\n"
    "                  of CPUs); results do not depend on it\n"
    "\n"
    "Examples:\n"
    "  cnngen eval examples/fashion.cnn --weights fashion.safetensors\n"
    "  cnngen eval net.cnn --weights net.safetensors --data data/ --json\n"
    "\n"
    "Exit status: 0 success; 1 a bad network, weights file, data directory or\n"
    "option, or data that does not fit the network; 2 internal error.\n";

enum { CHUNK = 4096 };

typedef struct Eval {
  const Net *net;
  const TrainSet *set; /* targets and labels, as training sees them */
  int k;               /* outputs */
  bool multilabel;     /* binary cross-entropy */
  double threshold;
  const char *split; /* "t10k" or "test": the data's test split, for the report */
  const ClassNames *names;
  double loss_sum;
  long n;
  long *confusion;              /* single-label: [k][k], rows = true class */
  long *tp, *fp, *fn, *support; /* multi-label: per label */
  long exact;
} Eval;

static int argmax(const float *v, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (v[j] > v[best])
      best = j;
  return best;
}

static void score(Eval *ev, long i, const float *y) {
  const float *t = ev->set->target + i * ev->k;
  ev->loss_sum += train_loss(ev->net->train.loss, y, t, ev->k);
  ev->n++;
  if (!ev->multilabel) {
    int truth = ev->set->label[i] >= 0 ? ev->set->label[i] : argmax(t, ev->k);
    ev->confusion[(long)truth * ev->k + argmax(y, ev->k)]++;
    return;
  }
  bool all = true;
  for (int j = 0; j < ev->k; j++) {
    bool on = y[j] > ev->threshold, want = t[j] >= 0.5f;
    ev->tp[j] += on && want;
    ev->fp[j] += on && !want;
    ev->fn[j] += !on && want;
    ev->support[j] += want;
    all &= on == want;
  }
  ev->exact += all;
}

static double ratio(long a, long b) {
  return b ? (double)a / (double)b : 0.0;
}
static double f1(double p, double r) {
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

static void json_num(double v) {
  if (isfinite(v))
    printf("%.10g", v);
  else
    fputs("null", stdout);
}

/* , "name": "Shirt" in a JSON entry, where class i has a name. */
static void json_name(const Eval *ev, int i) {
  const char *name = cli_class_name(ev->names, i);
  if (name) {
    fputs(", \"name\": ", stdout);
    cli_print_json_string(stdout, name);
  }
}

/* "  Shirt" after a table row, where class i has a name. */
static void row_name(const Eval *ev, int i) {
  const char *name = cli_class_name(ev->names, i);
  if (name)
    printf("  %s", name);
  putchar('\n');
}

static int report_single(const Eval *ev, const CliArgs *a, const char *dir) {
  int k = ev->k;
  long correct = 0, *pred = calloc((size_t)k, sizeof *pred),
       *truth = calloc((size_t)k, sizeof *truth);
  if (!pred || !truth) {
    free(pred);
    free(truth);
    return cli_usage_error("out of memory for the report");
  }
  for (int t = 0; t < k; t++)
    for (int p = 0; p < k; p++) {
      long c = ev->confusion[(long)t * k + p];
      truth[t] += c;
      pred[p] += c;
      correct += t == p ? c : 0;
    }
  double macro_recall = 0, macro_f1 = 0;
  int present = 0;
  for (int c = 0; c < k; c++) {
    if (!truth[c] && !pred[c])
      continue;
    long tp = ev->confusion[(long)c * k + c];
    double p = ratio(tp, pred[c]), r = ratio(tp, truth[c]);
    macro_recall += r;
    macro_f1 += f1(p, r);
    present++;
  }
  macro_recall = present ? macro_recall / present : 0;
  macro_f1 = present ? macro_f1 / present : 0;
  double loss = ev->loss_sum / (double)ev->n, accuracy = ratio(correct, ev->n);

  if (a->value[CLI_JSON]) {
    printf("{\"images\": %ld, \"loss\": ", ev->n);
    json_num(loss);
    printf(", \"accuracy\": ");
    json_num(accuracy);
    printf(", \"macro_recall\": ");
    json_num(macro_recall);
    printf(", \"macro_f1\": ");
    json_num(macro_f1);
    printf(", \"per_class\": [");
    for (int c = 0; c < k; c++) {
      long tp = ev->confusion[(long)c * k + c];
      double p = ratio(tp, pred[c]), r = ratio(tp, truth[c]);
      printf("%s{\"precision\": ", c ? ", " : "");
      json_num(p);
      printf(", \"recall\": ");
      json_num(r);
      printf(", \"f1\": ");
      json_num(f1(p, r));
      printf(", \"support\": %ld", truth[c]);
      json_name(ev, c);
      putchar('}');
    }
    printf("], \"confusion\": [");
    for (int t = 0; t < k; t++) {
      printf("%s[", t ? ", " : "");
      for (int p = 0; p < k; p++)
        printf("%s%ld", p ? ", " : "", ev->confusion[(long)t * k + p]);
      putchar(']');
    }
    printf("]}\n");
  } else {
    printf("%s on %s (%s): %ld images, %d classes\n", ev->net->name, dir, ev->split, ev->n, k);
    printf("  accuracy      %.4f  (%ld of %ld)\n", accuracy, correct, ev->n);
    printf("  loss          %.6f  (%s, mean per image)\n", loss, loss_words[ev->net->train.loss]);
    printf("  macro recall  %.4f\n", macro_recall);
    printf("  macro F1      %.4f\n\n", macro_f1);
    printf("  class  precision  recall      F1  support%s\n", ev->names->n ? "  name" : "");
    for (int c = 0; c < k; c++) {
      long tp = ev->confusion[(long)c * k + c];
      double p = ratio(tp, pred[c]), r = ratio(tp, truth[c]);
      printf("  %5d  %9.4f  %6.4f  %6.4f  %7ld", c, p, r, f1(p, r), truth[c]);
      row_name(ev, c);
    }
    long widest = 1;
    for (long i = 0; i < (long)k * k; i++)
      widest = ev->confusion[i] > widest ? ev->confusion[i] : widest;
    int w = snprintf(NULL, 0, "%ld", widest);
    int cw = snprintf(NULL, 0, "%d", k - 1);
    w = (w > cw ? w : cw) + 1;
    printf("\n  confusion matrix (rows: true class, columns: predicted class)\n  %*s", cw + 1, "");
    for (int p = 0; p < k; p++)
      printf("%*d", w, p);
    putchar('\n');
    for (int t = 0; t < k; t++) {
      printf("  %*d:", cw, t);
      for (int p = 0; p < k; p++)
        printf("%*ld", w, ev->confusion[(long)t * k + p]);
      putchar('\n');
    }
  }
  free(pred);
  free(truth);
  return 0;
}

static void report_multi(const Eval *ev, const CliArgs *a, const char *dir) {
  int k = ev->k;
  long tp = 0, fp = 0, fn = 0;
  double macro_f1 = 0;
  for (int j = 0; j < k; j++) {
    tp += ev->tp[j];
    fp += ev->fp[j];
    fn += ev->fn[j];
    macro_f1 +=
        f1(ratio(ev->tp[j], ev->tp[j] + ev->fp[j]), ratio(ev->tp[j], ev->tp[j] + ev->fn[j]));
  }
  macro_f1 /= k;
  double micro_f1 = ratio(2 * tp, 2 * tp + fp + fn);
  double loss = ev->loss_sum / (double)ev->n, exact = ratio(ev->exact, ev->n);
  if (a->value[CLI_JSON]) {
    printf("{\"images\": %ld, \"threshold\": ", ev->n);
    json_num(ev->threshold);
    printf(", \"loss\": ");
    json_num(loss);
    printf(", \"exact_match\": ");
    json_num(exact);
    printf(", \"micro_f1\": ");
    json_num(micro_f1);
    printf(", \"macro_f1\": ");
    json_num(macro_f1);
    printf(", \"per_label\": [");
    for (int j = 0; j < k; j++) {
      double p = ratio(ev->tp[j], ev->tp[j] + ev->fp[j]),
             r = ratio(ev->tp[j], ev->tp[j] + ev->fn[j]);
      printf("%s{\"precision\": ", j ? ", " : "");
      json_num(p);
      printf(", \"recall\": ");
      json_num(r);
      printf(", \"f1\": ");
      json_num(f1(p, r));
      printf(", \"support\": %ld", ev->support[j]);
      json_name(ev, j);
      putchar('}');
    }
    printf("]}\n");
    return;
  }
  printf("%s on %s (%s): %ld images, %d labels, on above %g\n", ev->net->name, dir, ev->split,
         ev->n, k, ev->threshold);
  printf("  loss          %.6f  (%s, mean per image and label)\n", loss,
         loss_words[ev->net->train.loss]);
  printf("  exact match   %.4f  (%ld of %ld)\n", exact, ev->exact, ev->n);
  printf("  micro F1      %.4f\n", micro_f1);
  printf("  macro F1      %.4f\n\n", macro_f1);
  printf("  label  precision  recall      F1  support%s\n", ev->names->n ? "  name" : "");
  for (int j = 0; j < k; j++) {
    double p = ratio(ev->tp[j], ev->tp[j] + ev->fp[j]), r = ratio(ev->tp[j], ev->tp[j] + ev->fn[j]);
    printf("  %5d  %9.4f  %6.4f  %6.4f  %7ld", j, p, r, f1(p, r), ev->support[j]);
    row_name(ev, j);
  }
}

static int run(const CliArgs *a) {
  Arena arena = {0};
  Engine en = {0};
  Dataset data = {0};
  ClassNames names = {0};
  TrainSet set = {0};
  Eval ev = {0};
  Err e = {0};
  float *x = NULL, *y = NULL;
  int status = 0;
  const char *dir = a->value[CLI_DATA] ? a->value[CLI_DATA] : CNNGEN_DEFAULT_DATA;
  Net *net = cli_compile_net(&arena, a->net_path, NULL, &status);
  if (!net)
    goto done;
  Shape in = net->input;
  if (dataset_load(&data, dir, false, in.h, in.w, in.c, a->threads, &e) < 0) {
    status = cli_fail(&e);
    goto done;
  }
  const IdxImages im = data.test_im;
  if (im.n == 0 || data.test_lb.n != im.n) {
    if (im.n == 0)
      err_set(&e, dir, "%s holds no images", data.test_name);
    else
      err_set(&e, dir, "%s has %d images but %d labels", data.test_name, im.n, data.test_lb.n);
    status = cli_fail(&e);
    goto done;
  }
  if (trainset_make(&set, net, &data.test_im, &data.test_lb, dir, 0, &e) < 0) {
    status = cli_fail(&e);
    goto done;
  }
  ev = (Eval){.net = net,
              .set = &set,
              .k = set.k,
              .multilabel = net->train.loss == LOSS_BCE,
              .threshold = a->real[CLI_THRESHOLD],
              .split = data.test_name,
              .names = &names};
  if ((status = cli_open_engine(&en, net, a, false, set.n, &names)))
    goto done;
  if (cli_class_names_add(&names, (const char *const *)data.classes, data.nclasses,
                          data.classes_path, data.classes_what, set.k, &e) < 0) {
    status = cli_fail(&e);
    goto done;
  }

  size_t k = (size_t)ev.k;
  long in_size = set.image_size;
  x = malloc(sizeof *x * CHUNK * (size_t)in_size);
  y = malloc(sizeof *y * CHUNK * k);
  if (ev.multilabel) {
    ev.tp = calloc(k, sizeof(long));
    ev.fp = calloc(k, sizeof(long));
    ev.fn = calloc(k, sizeof(long));
    ev.support = calloc(k, sizeof(long));
  } else {
    ev.confusion = calloc(k * k, sizeof(long));
  }
  if (!x || !y || (ev.multilabel ? !ev.tp || !ev.fp || !ev.fn || !ev.support : !ev.confusion)) {
    status = cli_usage_error("out of memory evaluating %d images", im.n);
    goto done;
  }
  for (long first = 0; first < im.n; first += CHUNK) {
    int n = im.n - first < CHUNK ? (int)(im.n - first) : CHUNK;
    image_bytes_to_floats(im.data + first * in_size, n * in_size, x);
    engine_infer(&en, x, n, y);
    for (int i = 0; i < n; i++)
      score(&ev, first + i, y + i * k);
  }
  if (ev.multilabel)
    report_multi(&ev, a, dir);
  else
    status = report_single(&ev, a, dir);
done:
  free(x);
  free(y);
  free(ev.confusion);
  free(ev.tp);
  free(ev.fp);
  free(ev.fn);
  free(ev.support);
  if (en.prog)
    engine_close(&en);
  trainset_free(&set);
  dataset_free(&data);
  cli_class_names_free(&names);
  arena_free(&arena);
  return status;
}

const Command cmd_eval = {
    .name = "eval",
    .summary = "score a network on the test set: loss, accuracy, per class, confusion",
    .help = help,
    .options = OPT(CLI_WEIGHTS) | OPT(CLI_DATA) | OPT(CLI_JSON) | OPT(CLI_THRESHOLD) |
               OPT(CLI_BACKEND) | OPT(CLI_THREADS),
    .required = OPT(CLI_WEIGHTS),
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
