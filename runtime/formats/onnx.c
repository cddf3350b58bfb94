/*
 * onnx.c: ONNX files through protobuf-c. Reading unpacks the ModelProto
 * (protobuf-c refuses what is not well-formed protobuf, a truncated file
 * among it), then copies what cnngen reads into the plain structs of
 * onnx.h: strings and arrays point into the unpacked message where they can;
 * float and int64 data in raw_data is copied out (it may be unaligned).
 * Every block allocated here is recorded in a Pool and freed with it.
 * Writing builds the messages on a Pool from the same plain structs and
 * packs them into one buffer, written atomically.
 */
#include "onnx.h"

#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"
#include "onnx.pb-c.h"

typedef struct Pool {
  void **blocks;
  size_t n, cap;
} Pool;

/* n zeroed bytes owned by the pool; NULL when out of memory. */
static void *pool_alloc(Pool *p, size_t n) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 64;
    void **b = realloc(p->blocks, cap * sizeof *b);
    if (!b)
      return NULL;
    p->blocks = b;
    p->cap = cap;
  }
  void *q = calloc(1, n ? n : 1);
  if (q)
    p->blocks[p->n++] = q;
  return q;
}

static void pool_free(Pool *p) {
  for (size_t i = 0; i < p->n; i++)
    free(p->blocks[i]);
  free(p->blocks);
  *p = (Pool){0};
}

typedef struct Priv {
  Onnx__ModelProto *pb;
  Pool pool;
} Priv;

static const char *str(const char *s) {
  return s ? s : "";
}

static int no_memory(Err *e, const char *path) {
  e->internal = 1;
  return err_set(e, path, "out of memory");
}

/* One TensorProto into t (data checked against the shape). */
static int read_tensor(Pool *p, const Onnx__TensorProto *pt, OnnxTensor *t, const char *path,
                       Err *e) {
  t->name = str(pt->name);
  t->dtype = pt->has_data_type ? pt->data_type : 0;
  if (pt->n_dims > ONNX_MAX_RANK)
    return err_set(e, path, "tensor '%s' has %zu dimensions (at most %d)", t->name, pt->n_dims,
                   ONNX_MAX_RANK);
  if (pt->n_external_data || (pt->has_data_location && pt->data_location != 0))
    return err_set(e, path, "tensor '%s' keeps its data in an external file (not supported)",
                   t->name);
  t->rank = (int)pt->n_dims;
  t->count = 1;
  for (int d = 0; d < t->rank; d++) {
    t->dims[d] = pt->dims[d];
    if (pt->dims[d] < 0 || (pt->dims[d] && t->count > (INT64_C(1) << 40) / pt->dims[d]))
      return err_set(e, path, "tensor '%s' has a bad dimension %lld", t->name,
                     (long long)pt->dims[d]);
    t->count *= pt->dims[d];
  }
  size_t size = t->dtype == ONNX_FLOAT ? 4 : t->dtype == ONNX_INT64 ? 8 : 0;
  if (!size)
    return 0; /* refused where it is used */
  size_t have = pt->has_raw_data ? pt->raw_data.len / size
                                 : (t->dtype == ONNX_FLOAT ? pt->n_float_data : pt->n_int64_data);
  if ((pt->has_raw_data && pt->raw_data.len % size) || have != (size_t)t->count)
    return err_set(e, path,
                   "tensor '%s' holds %zu values where its shape needs %lld (a truncated file?)",
                   t->name, have, (long long)t->count);
  if (pt->has_raw_data) {
    void *q = pool_alloc(p, pt->raw_data.len);
    if (!q)
      return no_memory(e, path);
    memcpy(q, pt->raw_data.data, pt->raw_data.len);
    if (t->dtype == ONNX_FLOAT)
      t->f = q;
    else
      t->i = q;
  } else if (t->dtype == ONNX_FLOAT) {
    t->f = pt->float_data;
  } else {
    t->i = pt->int64_data;
  }
  return 0;
}

/* A scalar or a list given by Constant's value_float(s) / value_int(s). */
static int constant_list(Pool *p, OnnxTensor *t, int dtype, int rank, const void *data, size_t n,
                         const char *path, Err *e) {
  t->dtype = dtype;
  t->rank = rank;
  t->dims[0] = (int64_t)n;
  t->count = (int64_t)n;
  void *q = pool_alloc(p, n * 8);
  if (!q)
    return no_memory(e, path);
  memcpy(q, data, n * (dtype == ONNX_FLOAT ? 4 : 8));
  if (dtype == ONNX_FLOAT)
    t->f = q;
  else
    t->i = q;
  return 0;
}

/* A Constant node's value as the tensor named by its output. */
static int read_constant(Pool *p, const Onnx__NodeProto *pn, OnnxTensor *t, const char *path,
                         Err *e) {
  const char *name = str(pn->name);
  if (pn->n_output != 1 || pn->n_attribute != 1)
    return err_set(e, path, "node '%s' (Constant): needs one output and one value attribute", name);
  const Onnx__AttributeProto *a = pn->attribute[0];
  const char *an = str(a->name);
  int rc = 0;
  if (strcmp(an, "value") == 0 && a->t)
    rc = read_tensor(p, a->t, t, path, e);
  else if (strcmp(an, "value_float") == 0 && a->has_f)
    rc = constant_list(p, t, ONNX_FLOAT, 0, &a->f, 1, path, e);
  else if (strcmp(an, "value_floats") == 0)
    rc = constant_list(p, t, ONNX_FLOAT, 1, a->floats, a->n_floats, path, e);
  else if (strcmp(an, "value_int") == 0 && a->has_i)
    rc = constant_list(p, t, ONNX_INT64, 0, &a->i, 1, path, e);
  else if (strcmp(an, "value_ints") == 0)
    rc = constant_list(p, t, ONNX_INT64, 1, a->ints, a->n_ints, path, e);
  else
    return err_set(e, path, "node '%s' (Constant): attribute '%s' is not supported", name, an);
  t->name = str(pn->output[0]);
  return rc;
}

static int read_attr(Pool *p, const Onnx__AttributeProto *pa, OnnxAttr *a, const char *path,
                     Err *e) {
  a->name = str(pa->name);
  switch (pa->type) {
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
    a->kind = ONNX_ATTR_INT;
    a->i = pa->i;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
    a->kind = ONNX_ATTR_INTS;
    a->ints = pa->ints;
    if (pa->n_ints > INT_MAX)
      return err_set(e, path, "attribute '%s' has too many values", a->name);
    a->nints = (int)pa->n_ints;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
    a->kind = ONNX_ATTR_FLOAT;
    a->f = pa->f;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
    a->kind = ONNX_ATTR_STRING;
    char *s = pool_alloc(p, pa->s.len + 1);
    if (!s)
      return no_memory(e, path);
    if (pa->s.len)
      memcpy(s, pa->s.data, pa->s.len);
    a->s = s;
    break;
  }
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
    if (!pa->t)
      return err_set(e, path, "attribute '%s' is a tensor without one", a->name);
    a->kind = ONNX_ATTR_TENSOR;
    OnnxTensor *t = pool_alloc(p, sizeof *t);
    if (!t)
      return no_memory(e, path);
    if (read_tensor(p, pa->t, t, path, e) < 0)
      return -1;
    a->t = t;
    break;
  }
  default:
    a->kind = ONNX_ATTR_OTHER;
  }
  return 0;
}

static int read_value(const Onnx__ValueInfoProto *pv, OnnxValue *v, const char *path, Err *e) {
  v->name = str(pv->name);
  v->rank = -1;
  const Onnx__TypeProto *tp = pv->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return 0;
  v->elem_type = tp->tensor_type->has_elem_type ? tp->tensor_type->elem_type : 0;
  const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
  if (!sh)
    return 0;
  if (sh->n_dim > ONNX_MAX_RANK)
    return err_set(e, path, "graph value '%s' has %zu dimensions (at most %d)", v->name, sh->n_dim,
                   ONNX_MAX_RANK);
  v->rank = (int)sh->n_dim;
  for (int d = 0; d < v->rank; d++) {
    const Onnx__TensorShapeProto__Dimension *dim = sh->dim[d];
    bool known = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    v->dims[d] = known && dim->dim_value >= 0 ? dim->dim_value : -1;
  }
  return 0;
}

static bool default_domain(const char *d) {
  return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

static int parse(Priv *pv, const void *data, size_t len, const char *path, OnnxModel *m, Err *e) {
  Pool *p = &pv->pool;
  Onnx__ModelProto *pb = pv->pb = onnx__model_proto__unpack(NULL, len, data);
  if (!pb)
    return err_set(e, path,
                   "not an ONNX model, or a truncated one (the protobuf data does not "
                   "parse as a ModelProto)");
  const Onnx__GraphProto *g = pb->graph;
  if (!g)
    return err_set(e, path, "not an ONNX model: it has no graph (a truncated file?)");
  m->ir_version = pb->has_ir_version ? pb->ir_version : 0;
  m->producer = str(pb->producer_name);
  m->producer_version = str(pb->producer_version);
  for (size_t i = 0; i < pb->n_opset_import; i++)
    if (default_domain(pb->opset_import[i]->domain) && pb->opset_import[i]->has_version)
      m->opset = pb->opset_import[i]->version;

  OnnxTensor *inits = pool_alloc(p, (g->n_initializer + g->n_node) * sizeof *inits);
  OnnxNode *nodes = pool_alloc(p, g->n_node * sizeof *nodes);
  OnnxValue *ins = pool_alloc(p, g->n_input * sizeof *ins);
  OnnxValue *outs = pool_alloc(p, g->n_output * sizeof *outs);
  if (!inits || !nodes || !ins || !outs)
    return no_memory(e, path);
  for (size_t i = 0; i < g->n_initializer; i++)
    if (read_tensor(p, g->initializer[i], &inits[m->ninits++], path, e) < 0)
      return -1;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *pn = g->node[i];
    if (!pn->op_type || !*pn->op_type)
      return err_set(e, path, "node %zu ('%s') has no op_type", i, str(pn->name));
    if (strcmp(pn->op_type, "Constant") == 0 && default_domain(pn->domain)) {
      if (read_constant(p, pn, &inits[m->ninits++], path, e) < 0)
        return -1;
      continue;
    }
    OnnxNode *n = &nodes[m->nnodes++];
    n->name = str(pn->name);
    n->op = pn->op_type;
    n->domain = str(pn->domain);
    n->in = (const char **)pn->input;
    n->nin = (int)pn->n_input;
    n->out = (const char **)pn->output;
    n->nout = (int)pn->n_output;
    OnnxAttr *attrs = pool_alloc(p, pn->n_attribute * sizeof *attrs);
    if (!attrs)
      return no_memory(e, path);
    for (size_t k = 0; k < pn->n_attribute; k++)
      if (read_attr(p, pn->attribute[k], &attrs[k], path, e) < 0)
        return -1;
    n->attrs = attrs;
    n->nattrs = (int)pn->n_attribute;
  }
  m->inits = inits;
  m->nodes = nodes;
  /* Before IR version 4 every initializer was also listed as an input. */
  for (size_t i = 0; i < g->n_input; i++) {
    if (onnx_init(m, str(g->input[i]->name)))
      continue;
    if (read_value(g->input[i], &ins[m->ninputs++], path, e) < 0)
      return -1;
  }
  for (size_t i = 0; i < g->n_output; i++)
    if (read_value(g->output[i], &outs[m->noutputs++], path, e) < 0)
      return -1;
  m->inputs = ins;
  m->outputs = outs;
  return 0;
}

int onnx_parse(const void *data, size_t len, const char *path, OnnxModel *m, Err *e) {
  *m = (OnnxModel){0};
  Priv *pv = calloc(1, sizeof *pv);
  if (!pv)
    return no_memory(e, path);
  m->priv = pv;
  if (parse(pv, data, len, path, m, e) < 0) {
    onnx_free(m);
    return -1;
  }
  return 0;
}

int onnx_read(const char *path, OnnxModel *m, Err *e) {
  /* Protobuf is never gzipped, and its bytes may begin with gzip's magic. */
  static const IoLimit limit = {
      .max = ONNX_MAX_BYTES, .what = "an ONNX model (at most 1.5 GiB)", .plain = true};
  size_t len;
  void *data = io_read_capped(path, &limit, &len, e);
  if (!data)
    return -1;
  int rc = onnx_parse(data, len, path, m, e);
  free(data);
  return rc;
}

void onnx_free(OnnxModel *m) {
  Priv *pv = m->priv;
  if (pv) {
    if (pv->pb)
      onnx__model_proto__free_unpacked(pv->pb, NULL);
    pool_free(&pv->pool);
    free(pv);
  }
  *m = (OnnxModel){0};
}

const OnnxTensor *onnx_init(const OnnxModel *m, const char *name) {
  for (int i = m->ninits - 1; i >= 0; i--) /* a later Constant shadows */
    if (strcmp(m->inits[i].name, name) == 0)
      return &m->inits[i];
  return NULL;
}

const OnnxAttr *onnx_attr(const OnnxNode *n, const char *name) {
  for (int i = 0; i < n->nattrs; i++)
    if (strcmp(n->attrs[i].name, name) == 0)
      return &n->attrs[i];
  return NULL;
}

/* Writing. */

static Onnx__TensorProto *write_tensor(Pool *p, const OnnxTensor *t) {
  Onnx__TensorProto *pt = pool_alloc(p, sizeof *pt);
  if (!pt)
    return NULL;
  onnx__tensor_proto__init(pt);
  pt->name = (char *)t->name;
  pt->n_dims = (size_t)t->rank;
  pt->dims = (int64_t *)t->dims;
  pt->has_data_type = 1;
  pt->data_type = t->dtype;
  pt->has_raw_data = 1;
  /* Little-endian, as ONNX stores raw_data (cnngen runs little-endian). */
  pt->raw_data.data = (uint8_t *)(t->i ? (const void *)t->i : (const void *)t->f);
  pt->raw_data.len = (size_t)t->count * (t->i ? 8 : 4);
  return pt;
}

static Onnx__NodeProto *write_node(Pool *p, const OnnxNode *n) {
  Onnx__NodeProto *pn = pool_alloc(p, sizeof *pn);
  Onnx__AttributeProto **pas = pool_alloc(p, (size_t)n->nattrs * sizeof *pas);
  if (!pn || !pas)
    return NULL;
  onnx__node_proto__init(pn);
  pn->name = (char *)n->name;
  pn->op_type = (char *)n->op;
  pn->n_input = (size_t)n->nin;
  pn->input = (char **)n->in;
  pn->n_output = (size_t)n->nout;
  pn->output = (char **)n->out;
  for (int k = 0; k < n->nattrs; k++) {
    const OnnxAttr *a = &n->attrs[k];
    Onnx__AttributeProto *pa = pas[k] = pool_alloc(p, sizeof *pa);
    if (!pa)
      return NULL;
    onnx__attribute_proto__init(pa);
    pa->name = (char *)a->name;
    pa->has_type = 1;
    switch (a->kind) {
    case ONNX_ATTR_INT:
      pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
      pa->has_i = 1;
      pa->i = a->i;
      break;
    case ONNX_ATTR_INTS:
      pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
      pa->n_ints = (size_t)a->nints;
      pa->ints = (int64_t *)a->ints;
      break;
    case ONNX_ATTR_FLOAT:
      pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
      pa->has_f = 1;
      pa->f = a->f;
      break;
    case ONNX_ATTR_STRING:
      pa->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
      pa->has_s = 1;
      pa->s.data = (uint8_t *)a->s;
      pa->s.len = strlen(a->s);
      break;
    default: /* tensors are initializers here */
      return NULL;
    }
  }
  pn->n_attribute = (size_t)n->nattrs;
  pn->attribute = pas;
  return pn;
}

/* A float tensor value [batch, d...] with the first dimension free. */
static Onnx__ValueInfoProto *write_value(Pool *p, const char *name, const int64_t *dims,
                                         int ndims) {
  Onnx__ValueInfoProto *v = pool_alloc(p, sizeof *v);
  Onnx__TypeProto *tp = pool_alloc(p, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = pool_alloc(p, sizeof *tt);
  Onnx__TensorShapeProto *sh = pool_alloc(p, sizeof *sh);
  Onnx__TensorShapeProto__Dimension *dim = pool_alloc(p, (size_t)(ndims + 1) * sizeof *dim);
  Onnx__TensorShapeProto__Dimension **dimp = pool_alloc(p, (size_t)(ndims + 1) * sizeof *dimp);
  if (!v || !tp || !tt || !sh || !dim || !dimp)
    return NULL;
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sh);
  for (int d = 0; d <= ndims; d++) {
    onnx__tensor_shape_proto__dimension__init(&dim[d]);
    dimp[d] = &dim[d];
    if (d == 0) {
      dim[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dim[d].dim_param = "batch";
    } else {
      dim[d].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dim[d].dim_value = dims[d - 1];
    }
  }
  sh->n_dim = (size_t)ndims + 1;
  sh->dim = dimp;
  tt->has_elem_type = 1;
  tt->elem_type = ONNX_FLOAT;
  tt->shape = sh;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  v->name = (char *)name;
  v->type = tp;
  return v;
}

static int build(Pool *p, const OnnxGraphOut *g, uint8_t **buf, size_t *len) {
  Onnx__GraphProto *graph = pool_alloc(p, sizeof *graph);
  Onnx__ModelProto *model = pool_alloc(p, sizeof *model);
  Onnx__OperatorSetIdProto *opset = pool_alloc(p, sizeof *opset);
  Onnx__OperatorSetIdProto **opsets = pool_alloc(p, sizeof *opsets);
  Onnx__NodeProto **nodes = pool_alloc(p, (size_t)g->nnodes * sizeof *nodes);
  Onnx__TensorProto **inits = pool_alloc(p, (size_t)g->ninits * sizeof *inits);
  Onnx__ValueInfoProto **in = pool_alloc(p, sizeof *in), **out = pool_alloc(p, sizeof *out);
  if (!graph || !model || !opset || !opsets || !nodes || !inits || !in || !out)
    return -1;
  onnx__graph_proto__init(graph);
  onnx__model_proto__init(model);
  onnx__operator_set_id_proto__init(opset);
  for (int i = 0; i < g->nnodes; i++)
    if (!(nodes[i] = write_node(p, &g->nodes[i])))
      return -1;
  for (int i = 0; i < g->ninits; i++)
    if (!(inits[i] = write_tensor(p, &g->inits[i])))
      return -1;
  if (!(in[0] = write_value(p, g->input, g->in_dims, 3)) ||
      !(out[0] = write_value(p, g->output, &g->out_dims, 1)))
    return -1;
  graph->name = (char *)g->graph_name;
  graph->n_node = (size_t)g->nnodes;
  graph->node = nodes;
  graph->n_initializer = (size_t)g->ninits;
  graph->initializer = inits;
  graph->n_input = graph->n_output = 1;
  graph->input = in;
  graph->output = out;
  opset->domain = "";
  opset->has_version = 1;
  opset->version = g->opset;
  opsets[0] = opset;
  model->has_ir_version = 1;
  model->ir_version = 7; /* the IR version of opset 13's release (ONNX 1.8) */
  model->n_opset_import = 1;
  model->opset_import = opsets;
  model->producer_name = "cnngen";
  model->producer_version = (char *)g->producer_version;
  model->graph = graph;
  *len = onnx__model_proto__get_packed_size(model);
  if (!(*buf = malloc(*len ? *len : 1)))
    return -1;
  onnx__model_proto__pack(model, *buf);
  return 0;
}

int onnx_write(const char *path, const OnnxGraphOut *g, Err *e) {
  Pool p = {0};
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc;
  if (build(&p, g, &buf, &len) < 0)
    rc = no_memory(e, path);
  else
    rc = io_write_atomic(path, buf, len, e);
  free(buf);
  pool_free(&p);
  return rc;
}
