/*
 * fuzz_onnx.c: a libFuzzer harness over the ONNX reader
 * (runtime/formats/onnx.c). Each input is an ONNX file's bytes: it is
 * parsed as `cnngen import` parses one (protobuf-c's unpacking, then the
 * checks and the copy into onnx.h's structs), and every string, shape,
 * attribute and tensor value the reader hands out is read once, so that a
 * pointer or a count that does not match its data shows under ASan. A
 * refusal is fine; a crash, a leak or undefined behaviour is not.
 *
 * tests/fuzz/check builds it (build/fuzz/fuzz_onnx) and runs it after the
 * front end's fuzzer, seeded with the models of tests/onnx.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void touch_tensor(const OnnxTensor *t) {
  sink += strlen(t->name) + (size_t)t->rank;
  if (t->count && t->f)
    sink += (size_t)(t->f[0] + t->f[t->count - 1] != 0);
  if (t->count && t->i) /* any int64 the file holds: summed without overflow */
    sink += (size_t)((uint64_t)t->i[0] + (uint64_t)t->i[t->count - 1]);
}

static void touch_values(const OnnxValue *v, int n) {
  for (int i = 0; i < n; i++) {
    sink += strlen(v[i].name) + (size_t)v[i].elem_type;
    for (int d = 0; d < v[i].rank; d++)
      sink += (size_t)v[i].dims[d];
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  OnnxModel m;
  Err e = {0};
  if (onnx_parse(data, size, "fuzz.onnx", &m, &e) < 0) {
    if (!e.msg[0])
      abort(); /* every refusal says why */
    return 0;
  }
  sink += strlen(m.producer) + strlen(m.producer_version) + (size_t)m.opset;
  touch_values(m.inputs, m.ninputs);
  touch_values(m.outputs, m.noutputs);
  for (int i = 0; i < m.ninits; i++)
    touch_tensor(&m.inits[i]);
  for (int i = 0; i < m.nnodes; i++) {
    const OnnxNode *n = &m.nodes[i];
    sink += strlen(n->name) + strlen(n->op) + strlen(n->domain);
    for (int k = 0; k < n->nin; k++)
      sink += strlen(n->in[k]) + (onnx_init(&m, n->in[k]) != NULL);
    for (int k = 0; k < n->nout; k++)
      sink += strlen(n->out[k]);
    for (int k = 0; k < n->nattrs; k++) {
      const OnnxAttr *a = &n->attrs[k];
      sink += strlen(a->name) + (onnx_attr(n, a->name) != NULL);
      if (a->kind == ONNX_ATTR_STRING)
        sink += strlen(a->s);
      for (int j = 0; a->kind == ONNX_ATTR_INTS && j < a->nints; j++)
        sink += (size_t)a->ints[j];
      if (a->kind == ONNX_ATTR_TENSOR)
        touch_tensor(a->t);
    }
  }
  onnx_free(&m);
  return 0;
}
