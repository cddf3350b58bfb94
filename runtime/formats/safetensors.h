/*
 * safetensors.h: weights files (docs/language.md, Weights files). 8-byte little-endian header
 * length, a JSON header (cJSON), raw little-endian data.
 */
#ifndef CNNGEN_SAFETENSORS_H
#define CNNGEN_SAFETENSORS_H

#include <stddef.h>

#include "err.h"

/* One tensor of a flat float parameter array, as the network lists them
   (the runtime fills these from the compiler's tensor list: cli_params). */
typedef struct StParam {
  char name[80]; /* "conv1.weight" */
  int rank;
  int shape[4]; /* PyTorch layout */
  long offset;  /* in floats, into the flat array */
  long count;
} StParam;

typedef struct StTensor {
  char *name;
  char dtype[8]; /* "F32", ... */
  int rank;
  long shape[8];
  const unsigned char *data; /* into the file's blob */
  size_t nbytes;
} StTensor;

typedef struct StFile {
  const char *path;
  unsigned char *blob; /* the whole file */
  size_t len;
  StTensor *tensors; /* in data-offset order */
  int ntensors;
  char **meta_keys, **meta_values; /* __metadata__, strings */
  int nmeta;
} StFile;

/* Parses and validates (header length, JSON, dtypes, offsets inside the
   file, sizes matching shapes, no overlap). */
int st_read(const char *path, StFile *f, Err *e);
void st_free(StFile *f);
const char *st_meta(const StFile *f, const char *key); /* NULL if absent */
const StTensor *st_find(const StFile *f, const char *name);
/* A metadata value that holds a JSON list of strings (the class names):
   *out gets malloc'd copies, *n their number; both 0 when the key is absent.
   Anything but a non-empty list of strings is an error naming the file. */
int st_meta_strings(const StFile *f, const char *key, char ***out, int *n, Err *e);
/* s[0..n) as a JSON list, malloc'd (NULL when out of memory). */
char *st_json_strings(const char *const *s, int n);

/* Copies the network's parameters (p: its tensors) out of f into the
   flat array `params`; refuses a file that does not match, naming the first
   mismatch (missing tensor, wrong shape, wrong dtype, extra tensor). */
int st_load_params(const StFile *f, const StParam *p, int np, float *params, Err *e);

/* Refuses a NaN or infinite parameter, naming `path`, the tensor and the
   element's index in it: whatever format the weights came in, call this
   once they are in the flat array. */
int params_check_finite(const char *path, const StParam *p, int np, const float *params, Err *e);

typedef struct StEntry {
  const char *name;
  int rank;
  long shape[4];
  const float *data;
} StEntry;

/* A scalar I64 tensor beside the parameters: LAYER.num_batches_tracked. */
typedef struct StCount {
  char name[128];
  long long value;
} StCount;

/* The value of f's scalar I64 tensor `name` in *v: 1; 0 (v unchanged) when
   f has no such tensor. */
int st_count(const StFile *f, const char *name, long long *v);

/* Writes F32 tensors and string metadata (meta: key, value, ..., NULL)
   atomically. */
int st_write(const char *path, const StEntry *t, int n, const char *const *meta, Err *e);
/* The same, with nc scalar I64 tensors after them. */
int st_write_counts(const char *path, const StEntry *t, int n, const StCount *counts, int nc,
                    const char *const *meta, Err *e);

/* A network's parameters (p, np: its tensors in the flat array `params`),
   then the nc scalar counts (may be 0), metadata format=cnngen,
   network=NAME, plus `extra_meta` pairs (may be NULL). */
int st_write_params(const char *path, const char *network, const StParam *p, int np,
                    const float *params, const StCount *counts, int nc,
                    const char *const *extra_meta, Err *e);

#endif
