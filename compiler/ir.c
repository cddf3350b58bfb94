#include "ir.h"

#include <stdio.h>

int net_tensors(const Net *net, TensorInfo *out) {
  int n = 0;
  for (int i = 0; i < net->nlayers; i++) {
    const Layer *l = &net->layers[i];
    if (!op_has_weights[l->op])
      continue;
    if (out) {
      TensorInfo *w = &out[n], *b = &out[n + 1];
      snprintf(w->name, sizeof w->name, "%s.weight", l->name);
      snprintf(b->name, sizeof b->name, "%s.bias", l->name);
      if (l->op == OP_CONV2D) {
        w->rank = 4;
        w->shape[0] = l->u.conv.filters;
        w->shape[1] = l->in.c;
        w->shape[2] = l->u.conv.kh;
        w->shape[3] = l->u.conv.kw;
      } else {
        w->rank = 2;
        w->shape[0] = l->u.dense.units;
        w->shape[1] = (int)shape_size(l->in);
      }
      b->rank = 1;
      b->shape[0] = w->shape[0];
      w->offset = l->weight_offset;
      w->count = l->weight_count;
      b->offset = l->bias_offset;
      b->count = l->bias_count;
    }
    n += l->bias_count ? 2 : 1;
  }
  return n;
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

Shape net_dense_source(const Net *net, const Layer *l) {
  for (const Layer *p = l - 1; p >= net->layers; p--) {
    if (p->op == OP_FLATTEN)
      return p->in;
    if (p->op != OP_DROPOUT && p->op != OP_ACT)
      break;
  }
  return l->in;
}
