/*
 * summary.c: what people read about a compiled network. summary_print()
 * is the table of `cnngen check` (also the opening comment of the
 * generated header, hence the line prefix); ir_dump() prints every field
 * of the IR for --dump-ir, between passes.
 */
#include <stdio.h>
#include <string.h>

#include "compile.h"

/* 93322 -> "93,322" */
static const char *commas(char *buf, size_t size, long long v) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
  size_t used = 0;
  if (v < 0 && used + 1 < size)
    buf[used++] = '-';
  for (int i = 0; i < n && used + 1 < size; i++) {
    buf[used++] = digits[i];
    if ((n - i - 1) % 3 == 0 && i < n - 1 && used + 1 < size)
      buf[used++] = ',';
  }
  buf[used] = '\0';
  return buf;
}

const char *summary_shape(char *buf, size_t size, Shape s) {
  if (s.vec)
    snprintf(buf, size, "%d", s.c);
  else
    snprintf(buf, size, "%dx%dx%d", s.h, s.w, s.c);
  return buf;
}

/* "1,234,567 bytes (1.2 MiB)" */
static const char *bytes_str(char *buf, size_t size, size_t bytes) {
  char n[32];
  commas(n, sizeof n, (long long)bytes);
  if (bytes >= 1 << 20)
    snprintf(buf, size, "%s bytes (%.1f MiB)", n, bytes / 1048576.0);
  else if (bytes >= 1 << 10)
    snprintf(buf, size, "%s bytes (%.1f KiB)", n, bytes / 1024.0);
  else
    snprintf(buf, size, "%s bytes", n);
  return buf;
}

/* The layer as check shows it, indented by its depth in residual blocks:
   its source line (the add: the block's closing brace). */
static const char *layer_text(const Layer *l) {
  return l->op == OP_ADD ? "} +" : l->text ? l->text : op_words[l->op];
}

static int max_int(int a, int b) {
  return a > b ? a : b;
}

void summary_print(const Net *net, FILE *out, const char *prefix) {
  char a[64], b[64], c[64];
  int wtext = 5, wname = 4, wout = 6;
  int wparams = max_int(6, (int)strlen(commas(a, sizeof a, net->param_count)));
  int wmacs = max_int(4, (int)strlen(commas(a, sizeof a, net->macs)));
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    wtext = max_int(wtext, 2 * l->depth + (int)strlen(layer_text(l)));
    wname = max_int(wname, (int)strlen(l->name));
    wout = max_int(wout, (int)strlen(summary_shape(a, sizeof a, l->out)));
  }
  /* No file path: the table also goes into a C comment, which a path could end. */
  fprintf(out, "%snetwork %s: input %s, %ld output%s (%s)\n", prefix, net->name,
          summary_shape(a, sizeof a, net->input), shape_size(net->output),
          shape_size(net->output) == 1 ? "" : "s", act_words[net_output_act(net)]);
  fprintf(out, "%s%5s  %-*s  %-*s  %-*s  %*s  %*s\n", prefix, "line", wtext, "layer", wname, "name",
          wout, "output", wparams, "params", wmacs, "MACs");
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    fprintf(out, "%s%5d  %*s%-*s  %-*s  %-*s  %*s  %*s\n", prefix, l->loc.line, 2 * l->depth, "",
            wtext - 2 * l->depth, layer_text(l), wname, l->name, wout,
            summary_shape(a, sizeof a, l->out), wparams,
            commas(b, sizeof b, l->weight_count + l->bias_count), wmacs,
            commas(c, sizeof c, l->macs));
  }
  long stats = 0; /* running statistics: saved with the weights, not trained */
  for (int i = 0; i < net->nlayers; i++)
    stats += op_modules[net->layers[i].op]->stats ? 2 * net->layers[i].bias_count : 0;
  fprintf(out, "%s%5s  %-*s  %-*s  %-*s  %*s  %*s\n", prefix, "", wtext, "total", wname, "", wout,
          "", wparams, commas(b, sizeof b, net->param_count - stats), wmacs,
          commas(c, sizeof c, net->macs));
  if (stats)
    fprintf(out, "%splus %s running statistics (saved with the weights, not trained)\n", prefix,
            commas(b, sizeof b, stats));
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (l->fused_bn)
      fprintf(out, "%sline %d: %s folded into %s (line %d) for inference\n", prefix,
              l->fused_bn->loc.line, l->fused_bn->name, l->name, l->loc.line);
  }
  fprintf(out, "%sstate for inference: %s (one image)\n", prefix,
          bytes_str(a, sizeof a, net->infer_state_bytes));
  fprintf(out, "%sstate for training:  %s (one thread; gradients and work per thread)\n", prefix,
          bytes_str(a, sizeof a, net->train_state_bytes));
  if (net->train_image_bytes) { /* a thread's chunk holds images [t*B/T, (t+1)*B/T) */
    const int batch = net->train.batch;
    fprintf(out, "%s  plus %s per image of a thread's share of the batch (batch statistics):\n",
            prefix, bytes_str(a, sizeof a, net->train_image_bytes));
    fprintf(out, "%s  %s for batch %d on one thread; on T threads, ceil(%d / T) images each\n",
            prefix, bytes_str(b, sizeof b, net->train_image_bytes * (size_t)batch), batch, batch);
  }
}

void summary_classes(const Net *net, FILE *out, const char *prefix) {
  if (!net->nclasses)
    return;
  fprintf(out, "%sclasses (line %d):", prefix, net->classes_loc.line);
  for (int i = 0; i < net->nclasses; i++) {
    const char *name = net->classes[i];
    bool word = (*name >= 'A' && *name <= 'Z') || (*name >= 'a' && *name <= 'z') || *name == '_';
    for (const char *p = name; word && *p; p++)
      word = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             *p == '_';
    fprintf(out, word ? " %s" : " \"%s\"", name);
  }
  fputc('\n', out);
}

/* ---- --dump-ir ---- */

static const char *layer_ref(char *buf, size_t size, const Net *net, const Layer *l) {
  if (!l)
    return "-";
  snprintf(buf, size, "#%d %s", (int)(l - net->layers), op_words[l->op]);
  return buf;
}

static void dump_layer(const Net *net, const Layer *l, FILE *out) {
  char a[64], b[64];
  fprintf(out, "  #%d %s%s%s  line %d:%d  \"%s\"\n", (int)(l - net->layers), op_words[l->op],
          l->name[0] ? " " : "", l->name, l->loc.line, l->loc.col, l->text ? l->text : "");
  fprintf(out, "      in %s  out %s  act %s\n", summary_shape(a, sizeof a, l->in),
          summary_shape(b, sizeof b, l->out), act_words[l->act]);
  if (op_modules[l->op]->dump)
    op_modules[l->op]->dump(l, out);
  if (op_modules[l->op]->weights && !l->no_bias)
    fprintf(out, "      weight @%ld x%ld  bias @%ld x%ld", l->weight_offset, l->weight_count,
            l->bias_offset, l->bias_count);
  else if (op_modules[l->op]->weights)
    fprintf(out, "      weight @%ld x%ld  no bias", l->weight_offset, l->weight_count);
  else
    fprintf(out, "      no parameters");
  fprintf(out, "  macs %ld\n", l->macs);
  fprintf(out, "      fused_away %s  fused_act %s", l->fused_away ? "yes" : "no",
          layer_ref(a, sizeof a, net, l->fused_act));
  fprintf(out, "  fused_pool %s  infer_out_offset %ld\n",
          layer_ref(a, sizeof a, net, l->fused_pool), l->infer_out_offset);
  if (op_modules[l->op]->stats)
    fprintf(out, "      running_mean @%ld  running_var @%ld\n", l->stats_offset,
            l->stats_offset + l->bias_count);
  if (l->fused_bn)
    fprintf(out, "      fused_bn %s\n", layer_ref(a, sizeof a, net, l->fused_bn));
  if (!l->train.runs)
    return;
  fprintf(out, "      train #%d  act %s%s%s%s%s%s", l->train.index, act_words[l->train.act],
          l->train.backward ? "  backward" : "", l->train.dx ? "  dx" : "",
          l->train.transposed ? "  transposed" : "", l->train.chw ? "  chw" : "",
          l->train.pooled ? "  pooled" : "");
  if (l->train.pool)
    fprintf(out, "  pool %s", layer_ref(a, sizeof a, net, l->train.pool));
  fputc('\n', out);
}

static void dump_train(const TrainConfig *t, FILE *out) {
  fprintf(out, "  train%s: loss %s  optimizer %s lr %g", t->present ? "" : " (defaults)",
          loss_words[t->loss], optimizer_words[t->optimizer], t->lr);
  if (t->optimizer == OPT_SGD)
    fprintf(out, " momentum %g%s", t->momentum, t->nesterov ? " nesterov" : "");
  else
    fprintf(out, " beta1 %g beta2 %g eps %g", t->beta1, t->beta2, t->eps);
  fprintf(out, " weight_decay %g\n", t->weight_decay);
  fprintf(out, "      batch %d  epochs %d  seed %llu  augment", t->batch, t->epochs, t->seed);
  bool any = false;
  for (int k = 0; k < AUG_COUNT; k++) {
    if (!t->augment[k].on)
      continue;
    any = true;
    fprintf(out, " %s", augment_words[k]);
    if (augment_takes_value[k])
      fprintf(out, "=%g", t->augment[k].value);
  }
  fprintf(out, "%s  class_weights ", any ? "" : " none");
  if (t->class_weights == CW_BALANCED)
    fprintf(out, "balanced");
  else if (t->class_weights == CW_LIST)
    for (int i = 0; i < t->class_weight_count; i++)
      fprintf(out, "%s%g", i ? "," : "", t->class_weight_list[i]);
  else
    fprintf(out, "none");
  fputc('\n', out);
  fprintf(out, "      schedule %s", schedule_words[t->schedule]);
  if (t->schedule == SCHED_STEP)
    fprintf(out, " every %d gamma %g", t->step_every, t->step_gamma);
  else if (t->schedule == SCHED_COSINE)
    fprintf(out, " min_lr %g", t->min_lr);
  fprintf(out, " warmup %d  label_smoothing %g  validation %g  early_stopping ", t->warmup,
          t->label_smoothing, t->validation);
  if (t->patience)
    fprintf(out, "patience %d min_delta %g\n", t->patience, t->min_delta);
  else
    fprintf(out, "none\n");
}

void ir_dump(const Net *net, FILE *out, const char *after_pass) {
  char a[64], b[64], c[64];
  fprintf(out, "== IR after %s: network %s (%s), input %s, %d layers\n", after_pass, net->name,
          net->file ? net->file : "?", summary_shape(a, sizeof a, net->input), net->nlayers);
  summary_classes(net, out, "  ");
  for (int i = 0; i < net->nlayers; i++)
    dump_layer(net, &net->layers[i], out);
  dump_train(&net->train, out);
  fprintf(out, "  totals: params %ld  macs %ld  output %s\n", net->param_count, net->macs,
          summary_shape(a, sizeof a, net->output));
  fprintf(out, "  plan: infer_buffer_floats %ld  infer_state_bytes %s  train_state_bytes %s\n",
          net->infer_buffer_floats, commas(b, sizeof b, (long long)net->infer_state_bytes),
          commas(c, sizeof c, (long long)net->train_state_bytes));
  fprintf(out,
          "      train_out_act %s  train_grad_floats %ld  train_work_floats %ld  opt_slots %d\n",
          act_words[net->train_out_act], net->train_grad_floats, net->train_work_floats,
          net->opt_slots);
}
