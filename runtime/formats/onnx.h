/*
 * onnx.h: ONNX model files (the ModelProto of onnx.proto, read and written
 * by protobuf-c from the C that protoc-c generates into build/ at build
 * time). This module knows the file format only, not cnngen's layers: it
 * gives a model as plain structs (a graph's inputs and outputs, its nodes
 * with their attributes, its initializers as float or int64 arrays) and
 * writes one given the same way. The commands (cmd_import.c, cmd_export.c)
 * map between these nodes and the network's layers.
 */
#ifndef CNNGEN_FORMATS_ONNX_H
#define CNNGEN_FORMATS_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "../err.h"

enum { ONNX_MAX_RANK = 8 };

/* TensorProto.DataType values that cnngen reads (others are kept as their
   number and refused where they are used). */
enum { ONNX_FLOAT = 1, ONNX_INT64 = 7 };

typedef struct OnnxTensor {
  const char *name;
  int dtype; /* ONNX_FLOAT, ONNX_INT64, or another DataType number */
  int rank;
  int64_t dims[ONNX_MAX_RANK];
  int64_t count;    /* product of dims (1 for a scalar) */
  const float *f;   /* ONNX_FLOAT: count values */
  const int64_t *i; /* ONNX_INT64: count values */
} OnnxTensor;

typedef enum {
  ONNX_ATTR_INT,
  ONNX_ATTR_INTS,
  ONNX_ATTR_FLOAT,
  ONNX_ATTR_STRING,
  ONNX_ATTR_TENSOR,
  ONNX_ATTR_OTHER
} OnnxAttrKind;

typedef struct OnnxAttr {
  const char *name;
  OnnxAttrKind kind;
  int64_t i;           /* INT */
  float f;             /* FLOAT */
  const char *s;       /* STRING, NUL-terminated */
  const int64_t *ints; /* INTS */
  int nints;
  const OnnxTensor *t; /* TENSOR */
} OnnxAttr;

typedef struct OnnxNode {
  const char *name; /* "" when the file gives none */
  const char *op;   /* op_type */
  const char *domain;
  const char **in; /* "" for an optional input left out */
  int nin;
  const char **out;
  int nout;
  const OnnxAttr *attrs;
  int nattrs;
} OnnxNode;

/* A graph input or output. */
typedef struct OnnxValue {
  const char *name;
  int elem_type;               /* 0: not given */
  int rank;                    /* -1: no shape given */
  int64_t dims[ONNX_MAX_RANK]; /* -1: a free dimension (dim_param) or unknown */
} OnnxValue;

typedef struct OnnxModel {
  int64_t ir_version;
  int64_t opset;                           /* of the default domain "" (or "ai.onnx"); 0: none */
  const char *producer, *producer_version; /* "" when not given */
  const OnnxValue *inputs, *outputs;       /* inputs: those that are not initializers */
  int ninputs, noutputs;
  const OnnxNode *nodes; /* in file order; Constant nodes are not among them */
  int nnodes;
  const OnnxTensor *inits; /* the initializers and the Constant nodes' values */
  int ninits;
  void *priv; /* what onnx_free releases */
} OnnxModel;

/* Reads and checks an ONNX file (at most ONNX_MAX_BYTES): a ModelProto with
   a graph, every tensor's data matching its shape, every name present.
   Constant nodes become initializers named by their output. Messages name
   `path`. */
enum { ONNX_MAX_BYTES = 1536 << 20 };
int onnx_read(const char *path, OnnxModel *m, Err *e);
/* The same from bytes in memory (the fuzzer's entry); `path` for messages. */
int onnx_parse(const void *data, size_t len, const char *path, OnnxModel *m, Err *e);
void onnx_free(OnnxModel *m);

/* Looks up an initializer or a node's attribute by name; NULL if absent. */
const OnnxTensor *onnx_init(const OnnxModel *m, const char *name);
const OnnxAttr *onnx_attr(const OnnxNode *n, const char *name);

/* What onnx_write takes: one float input [batch, C, H, W] with a free batch
   dimension named `batch`, one float output [batch, K], the nodes in order
   and the initializers (float; int64 where i is set). */
typedef struct OnnxGraphOut {
  const char *graph_name;
  const char *input, *output;
  int64_t in_dims[3]; /* C, H, W */
  int64_t out_dims;   /* K */
  const OnnxNode *nodes;
  int nnodes;
  const OnnxTensor *inits;
  int ninits;
  int opset;
  const char *producer_version;
} OnnxGraphOut;

/* Serializes the model and writes it atomically. */
int onnx_write(const char *path, const OnnxGraphOut *g, Err *e);

#endif
