#include "ir.h"

#include <stdio.h>

int net_tensors(const Net *net, TensorInfo *out) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_modules[l->op]->weights)
      continue;
    if (out) {
      TensorInfo *w = &out[n];
      snprintf(w->name, sizeof w->name, "%s.weight", l->name);
      OpTensor t;
      op_modules[l->op]->tensor(net, l, &t);
      w->rank = t.rank;
      for (int d = 0; d < 4; d++)
        w->shape[d] = t.shape[d];
      w->offset = l->weight_offset;
      w->count = l->weight_count;
      if (l->bias_count) { /* bias=false: no entry */
        TensorInfo *b = &out[n + 1];
        snprintf(b->name, sizeof b->name, "%s.bias", l->name);
        b->rank = 1;
        b->shape[0] = w->shape[0];
        b->offset = l->bias_offset;
        b->count = l->bias_count;
      }
    }
    if (op_modules[l->op]->stats && out) /* running statistics: not trained */
      for (int k = 0; k < 2; k++) {
        TensorInfo *r = &out[n + 2 + k];
        snprintf(r->name, sizeof r->name, "%s.%s", l->name, k ? "running_var" : "running_mean");
        r->rank = 1;
        r->shape[0] = (int)l->bias_count;
        r->offset = l->stats_offset + k * l->bias_count;
        r->count = l->bias_count;
      }
    n += (l->bias_count ? 2 : 1) + (op_modules[l->op]->stats ? 2 : 0);
  }
  return n;
}

bool net_has_stats(const Net *net) {
  for (int i = 0; i < net->nlayers; i++)
    if (op_modules[net->layers[i].op]->stats)
      return true;
  return false;
}

bool net_has_batch_stats(const Net *net) {
  for (int i = 0; i < net->nlayers; i++)
    if (op_modules[net->layers[i].op]->batch_stats)
      return true;
  return false;
}

bool net_has_folds(const Net *net) {
  for (int i = 0; i < net->nlayers; i++)
    if (net->layers[i].fused_bn)
      return true;
  return false;
}

const Layer *net_cam_layer(const Net *net) {
  const Layer *cam = NULL;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (op_modules[l->op]->cam && l->depth == 0 && !l->out.vec)
      cam = l;
  }
  return cam;
}

const Layer *net_last_layer(const Net *net) {
  for (int i = net->nlayers - 1; i >= 0; i--)
    if (!net->layers[i].fused_away)
      return &net->layers[i];
  return NULL;
}

Act net_output_act(const Net *net) {
  const Layer *l = net_last_layer(net);
  return l ? l->act : ACT_LINEAR;
}
