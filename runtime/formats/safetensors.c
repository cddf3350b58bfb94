/*
 * safetensors.c: reading, validating and writing safetensors files.
 *
 * Layout: u64 little-endian N, N bytes of JSON, then the data blob. The JSON
 * maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the blob) plus an optional "__metadata__" object of
 * strings. st_read checks what the reference implementation (the Rust
 * `safetensors` crate) checks: the header fits the file, parses, names are
 * unique, dtypes are known, each tensor's byte range matches its shape, and
 * the ranges tile the blob exactly (no overlap, no gap, nothing after).
 * Tensor data stays in the file's buffer; StTensor.data points into it.
 *
 * st_write emits the header by hand (so offsets are printed exactly):
 * __metadata__ first, then the tensors in the order given, contiguous,
 * header padded with spaces to a multiple of 8 so the blob is aligned.
 */
#include "safetensors.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the file format is little-endian)"
#endif

/* The reference implementation's limit; a larger header is not a weights file. */
#define ST_MAX_HEADER (100u << 20)

static const struct {
  const char *name;
  int size;
} st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
};

static int dtype_size(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (!strcmp(st_dtypes[i].name, name))
      return st_dtypes[i].size;
  return 0;
}

/* "[64, 32, 3, 3]" */
static void shape_text(char *buf, size_t n, const long *shape, int rank) {
  size_t k = 0;
  k += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %ld" : "%ld", shape[i]);
  if (k < n)
    snprintf(buf + k, n - k, "]");
}

/* A JSON number that must be a non-negative integer below 2^53. */
static int json_count(const cJSON *j, unsigned long long *out) {
  if (!cJSON_IsNumber(j))
    return -1;
  double d = j->valuedouble;
  if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d)
    return -1;
  *out = (unsigned long long)d;
  return 0;
}

void st_free(StFile *f) {
  for (int i = 0; i < f->ntensors; i++)
    free(f->tensors[i].name);
  for (int i = 0; i < f->nmeta; i++) {
    free(f->meta_keys[i]);
    free(f->meta_values[i]);
  }
  free(f->tensors);
  free(f->meta_keys);
  free(f->meta_values);
  free(f->blob);
  free((char *)f->path);
  memset(f, 0, sizeof *f);
}

typedef struct {
  StTensor t;
  unsigned long long begin, end;
} Range;

static int cmp_range(const void *a, const void *b) {
  const Range *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that appears twice, or NULL. */
static const char *duplicate(const char **names, int n) {
  qsort(names, (size_t)n, sizeof *names, cmp_name);
  for (int i = 1; i < n; i++)
    if (!strcmp(names[i - 1], names[i]))
      return names[i];
  return NULL;
}

/* Checks one tensor entry of the header and fills r. */
static int parse_tensor(const char *path, const cJSON *j, unsigned long long datalen, Range *r,
                        Err *e) {
  const char *name = j->string;
  if (!cJSON_IsObject(j))
    return err_set(e, path, "tensor '%s' in the header is not an object", name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
    return err_set(e, path,
                   "tensor '%s' needs \"dtype\" (a string), \"shape\" and "
                   "\"data_offsets\" (arrays)",
                   name);
  int size = dtype_size(dt->valuestring);
  if (!size)
    return err_set(e, path, "tensor '%s' has unknown dtype '%.20s'", name, dt->valuestring);
  snprintf(r->t.dtype, sizeof r->t.dtype, "%s", dt->valuestring);
  int rank = cJSON_GetArraySize(sh);
  if (rank > 8)
    return err_set(e, path, "tensor '%s' has %d dimensions; at most 8 are supported", name, rank);
  r->t.rank = rank;
  unsigned long long count = 1;
  int overflow = 0, i = 0;
  for (const cJSON *d = sh->child; d; d = d->next, i++) {
    unsigned long long v;
    if (json_count(d, &v) < 0 || v > (unsigned long long)LONG_MAX)
      return err_set(e, path, "tensor '%s': shape entry %d is not a non-negative integer", name, i);
    r->t.shape[i] = (long)v;
    overflow |= __builtin_mul_overflow(count, v, &count);
  }
  overflow |= __builtin_mul_overflow(count, (unsigned long long)size, &count);
  unsigned long long b, en;
  if (cJSON_GetArraySize(off) != 2 || json_count(off->child, &b) < 0 ||
      json_count(off->child->next, &en) < 0)
    return err_set(e, path, "tensor '%s': data_offsets must be two non-negative integers", name);
  if (b > en)
    return err_set(e, path, "tensor '%s': data_offsets [%llu, %llu] end before they begin", name, b,
                   en);
  if (en > datalen)
    return err_set(e, path,
                   "tensor '%s': data_offsets [%llu, %llu] run past the data, which holds %llu "
                   "bytes (truncated file?)",
                   name, b, en, datalen);
  char st[200];
  shape_text(st, sizeof st, r->t.shape, rank);
  if (overflow || count != en - b)
    return err_set(e, path,
                   "tensor '%s': shape %s of %s needs %s%llu bytes, data_offsets [%llu, %llu] "
                   "hold %llu",
                   name, st, r->t.dtype, overflow ? "more than " : "", overflow ? ~0ULL : count, b,
                   en, en - b);
  r->begin = b;
  r->end = en;
  r->t.nbytes = (size_t)(en - b);
  return 0;
}

static int parse_metadata(const char *path, const cJSON *m, StFile *f, Err *e) {
  if (!cJSON_IsObject(m))
    return err_set(e, path, "__metadata__ must be an object of strings");
  int n = cJSON_GetArraySize(m);
  f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
  f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
  if (!f->meta_keys || !f->meta_values)
    return err_set(e, path, "out of memory");
  for (const cJSON *j = m->child; j; j = j->next) {
    if (!cJSON_IsString(j))
      return err_set(e, path, "__metadata__ value for '%s' is not a string", j->string);
    f->meta_keys[f->nmeta] = strdup(j->string);
    f->meta_values[f->nmeta] = strdup(j->valuestring);
    f->nmeta++;
    if (!f->meta_keys[f->nmeta - 1] || !f->meta_values[f->nmeta - 1])
      return err_set(e, path, "out of memory");
  }
  return 0;
}

/* Everything after the length: JSON, entries, ranges. */
static int parse_header(StFile *f, Err *e) {
  const char *path = f->path;
  unsigned long long hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | f->blob[i];
  if (hlen > ST_MAX_HEADER)
    return err_set(e, path,
                   "header length %llu is over the format's limit of 100 MB; not a "
                   "safetensors file",
                   hlen);
  if (hlen > f->len - 8)
    return err_set(e, path,
                   "header length %llu is longer than the file (%zu bytes after the 8-byte "
                   "length); truncated, or not a safetensors file",
                   hlen, f->len - 8);
  const char *hdr = (const char *)f->blob + 8;
  if (hlen < 2 || hdr[0] != '{')
    return err_set(e, path,
                   "the header is not a JSON object (it starts with %s); not a "
                   "safetensors file",
                   hlen ? "something else" : "nothing");
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
  if (!root) {
    const char *at = cJSON_GetErrorPtr();
    long pos = at && at >= hdr && at <= hdr + hlen ? (long)(at - hdr) : -1;
    char near[24] = "";
    for (int i = 0; pos >= 0 && i < 20 && pos + i < (long)hlen; i++)
      near[i] = (hdr[pos + i] >= 32 && hdr[pos + i] < 127) ? hdr[pos + i] : '?';
    return err_set(e, path, "invalid JSON in the header at byte %ld (near '%s')", pos + 8, near);
  }
  int rc = -1;
  const char **names = NULL;
  Range *r = NULL;
  for (const char *p = end; p < hdr + hlen; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      err_set(e, path, "unexpected bytes after the header's JSON object (at byte %ld)",
              (long)(p - hdr) + 8);
      goto out;
    }
  if (!cJSON_IsObject(root)) {
    err_set(e, path, "the header is not a JSON object");
    goto out;
  }
  int n = cJSON_GetArraySize(root);
  names = calloc((size_t)n + 1, sizeof *names);
  r = calloc((size_t)n + 1, sizeof *r);
  if (!names || !r) {
    err_set(e, path, "out of memory");
    goto out;
  }
  unsigned long long datalen = f->len - 8 - hlen;
  int nt = 0, nnames = 0, seen_meta = 0;
  for (const cJSON *j = root->child; j; j = j->next) {
    names[nnames++] = j->string;
    if (!strcmp(j->string, "__metadata__")) {
      if (!seen_meta++ && parse_metadata(path, j, f, e) < 0)
        goto out;
      continue;
    }
    if (parse_tensor(path, j, datalen, &r[nt], e) < 0)
      goto out;
    r[nt].t.name = (char *)j->string; /* replaced by a copy below */
    nt++;
  }
  const char *dup = duplicate(names, nnames);
  if (dup) {
    err_set(e, path, "the header names '%s' twice", dup);
    goto out;
  }
  if (f->nmeta > 1) {
    const char **keys = malloc((size_t)f->nmeta * sizeof *keys);
    if (!keys) {
      err_set(e, path, "out of memory");
      goto out;
    }
    memcpy(keys, f->meta_keys, (size_t)f->nmeta * sizeof *keys);
    dup = duplicate(keys, f->nmeta);
    if (dup)
      err_set(e, path, "__metadata__ names '%s' twice", dup);
    free(keys);
    if (dup)
      goto out;
  }
  /* The ranges must tile [0, datalen) exactly. */
  qsort(r, (size_t)nt, sizeof *r, cmp_range);
  unsigned long long at = 0;
  for (int i = 0; i < nt; i++) {
    if (r[i].begin < at) {
      err_set(e, path, "tensors '%s' (bytes %llu-%llu) and '%s' (bytes %llu-%llu) overlap",
              r[i - 1].t.name, r[i - 1].begin, r[i - 1].end, r[i].t.name, r[i].begin, r[i].end);
      goto out;
    }
    if (r[i].begin > at) {
      err_set(e, path, "%llu unused bytes before tensor '%s' (bytes %llu-%llu)", r[i].begin - at,
              r[i].t.name, r[i].begin, r[i].end);
      goto out;
    }
    at = r[i].end;
  }
  if (at != datalen) {
    err_set(e, path,
            "%llu bytes of data after the last tensor (the header accounts for %llu of "
            "%llu)",
            datalen - at, at, datalen);
    goto out;
  }
  f->tensors = calloc((size_t)nt + 1, sizeof *f->tensors);
  if (!f->tensors) {
    err_set(e, path, "out of memory");
    goto out;
  }
  const unsigned char *data = f->blob + 8 + hlen;
  for (int i = 0; i < nt; i++) {
    f->tensors[i] = r[i].t;
    f->tensors[i].data = data + r[i].begin;
    f->tensors[i].name = strdup(r[i].t.name);
    f->ntensors++;
    if (!f->tensors[i].name) {
      err_set(e, path, "out of memory");
      goto out;
    }
  }
  rc = 0;
out:
  free(names);
  free(r);
  cJSON_Delete(root);
  return rc;
}

/* IoLimit.declared: 8 + the header + the end of the last tensor's data, once
   the header is in; -1 for a header that is over the limit or not JSON
   (parse_header then says what is wrong). */
static int st_declared(const unsigned char *head, size_t n, size_t *size) {
  if (n < 8)
    return 0;
  unsigned long long hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | head[i];
  if (hlen > ST_MAX_HEADER || hlen < 2)
    return -1;
  if (n < 8 + hlen)
    return 0;
  cJSON *root = cJSON_ParseWithLength((const char *)head + 8, (size_t)hlen);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return -1;
  }
  unsigned long long end = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, root) {
    unsigned long long b;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (cJSON_GetArraySize(off) == 2 && json_count(cJSON_GetArrayItem(off, 1), &b) == 0 && b > end)
      end = b;
  }
  cJSON_Delete(root);
  *size = (size_t)(8 + hlen + end);
  return 1;
}

int st_read(const char *path, StFile *f, Err *e) {
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  if (!f->path)
    return err_set(e, path, "out of memory");
  static const IoLimit limit = {.what = "a safetensors file", .declared = st_declared};
  f->blob = io_read_capped(path, &limit, &f->len, e);
  if (!f->blob) {
    st_free(f);
    return -1;
  }
  if (f->len < 8) {
    err_set(e, path,
            "too short for a safetensors file: %zu bytes (the header length alone "
            "takes 8)",
            f->len);
    st_free(f);
    return -1;
  }
  if (parse_header(f, e) < 0) {
    st_free(f);
    return -1;
  }
  return 0;
}

const char *st_meta(const StFile *f, const char *key) {
  for (int i = 0; i < f->nmeta; i++)
    if (!strcmp(f->meta_keys[i], key))
      return f->meta_values[i];
  return NULL;
}

int st_meta_strings(const StFile *f, const char *key, char ***out, int *n, Err *e) {
  *out = NULL;
  *n = 0;
  const char *text = st_meta(f, key);
  if (!text)
    return 0;
  cJSON *j = cJSON_Parse(text);
  int count = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : -1, rc = 0;
  for (int i = 0; i < count && rc == 0; i++)
    if (!cJSON_IsString(cJSON_GetArrayItem(j, i)))
      rc = -1;
  if (count < 1 || rc < 0) {
    cJSON_Delete(j);
    return err_set(e, f->path, "metadata '%s' is not a JSON list of strings", key);
  }
  char **s = calloc((size_t)count, sizeof *s);
  for (int i = 0; s && i < count; i++)
    if (!(s[i] = strdup(cJSON_GetArrayItem(j, i)->valuestring)))
      rc = -1;
  cJSON_Delete(j);
  if (!s || rc < 0) {
    for (int i = 0; s && i < count; i++)
      free(s[i]);
    free(s);
    e->internal = 1;
    return err_set(e, f->path, "out of memory");
  }
  *out = s;
  *n = count;
  return 0;
}

char *st_json_strings(const char *const *s, int n) {
  cJSON *list = cJSON_CreateStringArray(s, n);
  char *text = list ? cJSON_PrintUnformatted(list) : NULL;
  cJSON_Delete(list);
  return text;
}

const StTensor *st_find(const StFile *f, const char *name) {
  for (int i = 0; i < f->ntensors; i++)
    if (!strcmp(f->tensors[i].name, name))
      return &f->tensors[i];
  return NULL;
}

/* Tensors a checkpoint may carry besides the parameters. */
static int st_is_extra(const char *name) {
  return !strncmp(name, "opt.", 4) || !strncmp(name, "__", 2);
}

static int ti_find(const StParam *ti, int nt, const char *name) {
  for (int i = 0; i < nt; i++)
    if (!strcmp(ti[i].name, name))
      return i;
  return -1;
}

/* Appends "a, b, c" (or "a, b, ...") to buf. */
static void list_append(char *buf, size_t n, const char *name) {
  size_t k = strlen(buf);
  if (k + 1 >= n || (k >= 4 && !strcmp(buf + k - 3, "...")))
    return;
  if (k + strlen(name) + 8 > n) {
    snprintf(buf + k, n - k, "%s...", k ? ", " : "");
    return;
  }
  snprintf(buf + k, n - k, "%s%s", k ? ", " : "", name);
}

int st_load_params(const StFile *f, const StParam *ti, int nt, float *params, Err *e) {
  char list[400] = "";
  for (int i = 0; i < nt; i++) {
    const StTensor *t = st_find(f, ti[i].name);
    if (!t) {
      for (int j = 0; j < f->ntensors; j++)
        if (ti_find(ti, nt, f->tensors[j].name) < 0 && !st_is_extra(f->tensors[j].name))
          list_append(list, sizeof list, f->tensors[j].name);
      if (*list)
        return err_set(e, f->path,
                       "missing tensor '%s' (the file has %s, which the network "
                       "does not)",
                       ti[i].name, list);
      return err_set(e, f->path, "missing tensor '%s'", ti[i].name);
    }
    long need[4];
    int same = t->rank == ti[i].rank;
    for (int d = 0; d < ti[i].rank; d++) {
      need[d] = ti[i].shape[d];
      same = same && t->shape[d] == need[d];
    }
    if (!same) {
      char have[200], want[200];
      shape_text(have, sizeof have, t->shape, t->rank);
      shape_text(want, sizeof want, need, ti[i].rank);
      return err_set(e, f->path, "tensor '%s' has shape %s, the network needs %s", t->name, have,
                     want);
    }
    if (strcmp(t->dtype, "F32"))
      return err_set(e, f->path, "tensor '%s' has dtype %s, the network needs F32", t->name,
                     t->dtype);
  }
  for (int j = 0; j < f->ntensors; j++) {
    const char *name = f->tensors[j].name;
    if (st_is_extra(name) || ti_find(ti, nt, name) >= 0)
      continue;
    size_t k = strlen(name);
    static const char nbt[] = ".num_batches_tracked";
    const size_t nk = sizeof nbt - 1;
    if (k > nk && !strcmp(name + k - nk, nbt)) { /* PyTorch's batch count: optional, unused */
      char mean[sizeof ti->name];
      snprintf(mean, sizeof mean, "%.*s.running_mean", (int)(k - nk), name);
      const StTensor *t = &f->tensors[j];
      if (ti_find(ti, nt, mean) >= 0 && t->rank == 0 && !strcmp(t->dtype, "I64"))
        continue;
      if (ti_find(ti, nt, mean) >= 0)
        return err_set(e, f->path, "tensor '%s' must be a scalar I64, as PyTorch writes it", name);
    }
    if (k > 5 && !strcmp(name + k - 5, ".bias")) { /* LAYER.bias of a layer with bias=false */
      char weight[sizeof ti->name];
      snprintf(weight, sizeof weight, "%.*s.weight", (int)(k - 5), name);
      if (ti_find(ti, nt, weight) >= 0)
        return err_set(e, f->path,
                       "unexpected tensor '%s': layer %.*s has no bias in the network "
                       "(bias=false)",
                       name, (int)(k - 5), name);
    }
    for (int i = 0; i < nt; i++)
      list_append(list, sizeof list, ti[i].name);
    return err_set(e, f->path, "unexpected tensor '%s' (the network has %s)", name,
                   nt ? list : "no parameters");
  }
  for (int i = 0; i < nt; i++) {
    const StTensor *t = st_find(f, ti[i].name);
    assert(t->nbytes == (size_t)ti[i].count * sizeof(float));
    memcpy(params + ti[i].offset, t->data, t->nbytes);
  }
  return 0;
}

int params_check_finite(const char *path, const StParam *ti, int nt, const float *params, Err *e) {
  for (int t = 0; t < nt; t++)
    for (long i = 0; i < ti[t].count; i++) {
      float v = params[ti[t].offset + i];
      if (isfinite(v))
        continue;
      long idx[4], rest = i; /* its PyTorch index, [f][c][kh][kw] */
      for (int d = ti[t].rank - 1; d >= 0; d--) {
        idx[d] = rest % ti[t].shape[d];
        rest /= ti[t].shape[d];
      }
      char at[96] = "";
      for (int d = 0; d < ti[t].rank; d++)
        snprintf(at + strlen(at), sizeof at - strlen(at), "[%ld]", idx[d]);
      return err_set(e, path,
                     "tensor '%s' holds %s at %s (element %ld of %ld); weights must be finite "
                     "(did the training that wrote them diverge?)",
                     ti[t].name,
                     isnan(v) ? "NaN"
                     : v > 0  ? "+inf"
                              : "-inf",
                     at, i, ti[t].count);
    }
  return 0;
}

/* A growable string for the header. */
typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  assert(n >= 0 && (size_t)n < sizeof tmp);
  buf_add(b, tmp, (size_t)n);
}

/* A JSON string literal. */
static void buf_json(Buf *b, const char *s) {
  buf_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      buf_add(b, esc, 2);
    } else if (c < 0x20) {
      buf_printf(b, "\\u%04x", c);
    } else {
      buf_add(b, s, 1);
    }
  }
  buf_add(b, "\"", 1);
}

int st_write(const char *path, const StEntry *t, int n, const char *const *meta, Err *e) {
  return st_write_counts(path, t, n, NULL, 0, meta, e);
}

int st_write_counts(const char *path, const StEntry *t, int n, const StCount *counts, int nc,
                    const char *const *meta, Err *e) {
  /* Programming errors in the caller, reported rather than written. */
  const char **names = calloc((size_t)(n + nc) + 1, sizeof *names);
  if (!names)
    return err_set(e, path, "out of memory");
  for (int i = 0; i < n; i++) {
    if (!t[i].name || !strcmp(t[i].name, "__metadata__") || t[i].rank < 0 || t[i].rank > 4) {
      free(names);
      e->internal = 1;
      return err_set(e, path, "cannot write tensor %d ('%s'): bad name or rank %d", i,
                     t[i].name ? t[i].name : "(null)", t[i].rank);
    }
    names[i] = t[i].name;
  }
  for (int i = 0; i < nc; i++)
    names[n + i] = counts[i].name;
  const char *dup = duplicate(names, n + nc);
  free(names);
  if (dup) {
    e->internal = 1;
    return err_set(e, path, "cannot write tensor '%s' twice", dup);
  }

  Buf h = {0};
  buf_add(&h, "{", 1);
  if (meta && meta[0]) {
    buf_add(&h, "\"__metadata__\":{", 16);
    for (int i = 0; meta[i]; i += 2) {
      if (!meta[i + 1]) {
        free(h.s);
        e->internal = 1;
        return err_set(e, path, "metadata key '%s' has no value", meta[i]);
      }
      for (int j = 0; j < i; j += 2)
        if (!strcmp(meta[j], meta[i])) {
          free(h.s);
          e->internal = 1;
          return err_set(e, path, "metadata key '%s' given twice", meta[i]);
        }
      if (i)
        buf_add(&h, ",", 1);
      buf_json(&h, meta[i]);
      buf_add(&h, ":", 1);
      buf_json(&h, meta[i + 1]);
    }
    buf_add(&h, "}", 1);
  }
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    size_t count = 1;
    if (h.len > 1)
      buf_add(&h, ",", 1);
    buf_json(&h, t[i].name);
    buf_add(&h, ":{\"dtype\":\"F32\",\"shape\":[", 25);
    for (int d = 0; d < t[i].rank; d++) {
      if (t[i].shape[d] < 0) {
        free(h.s);
        e->internal = 1;
        return err_set(e, path, "tensor '%s' has a negative dimension", t[i].name);
      }
      buf_printf(&h, d ? ",%ld" : "%ld", t[i].shape[d]);
      count *= (size_t)t[i].shape[d];
    }
    buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + count * sizeof(float));
    off += count * sizeof(float);
  }
  for (int i = 0; i < nc; i++, off += 8) {
    buf_add(&h, ",", 1);
    buf_json(&h, counts[i].name);
    buf_printf(&h, ":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[%zu,%zu]}", off, off + 8);
  }
  buf_add(&h, "}", 1);
  while (h.len % 8)
    buf_add(&h, " ", 1);
  if (h.oom) {
    free(h.s);
    return err_set(e, path, "out of memory");
  }

  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((unsigned long long)h.len >> (8 * i));
  AtomicFile af;
  if (atomic_open(&af, path, e) < 0) {
    free(h.s);
    return -1;
  }
  int ok = fwrite(len8, 1, 8, af.f) == 8 && fwrite(h.s, 1, h.len, af.f) == h.len;
  free(h.s);
  for (int i = 0; ok && i < n; i++) {
    size_t count = 1;
    for (int d = 0; d < t[i].rank; d++)
      count *= (size_t)t[i].shape[d];
    ok = !count || fwrite(t[i].data, sizeof(float), count, af.f) == count;
  }
  for (int i = 0; ok && i < nc; i++) { /* little-endian, as the format says */
    unsigned char le[8];
    for (int b = 0; b < 8; b++)
      le[b] = (unsigned char)((unsigned long long)counts[i].value >> (8 * b));
    ok = fwrite(le, 1, 8, af.f) == 8;
  }
  if (!ok) {
    int saved = errno;
    atomic_abort(&af);
    return err_set(e, path, "cannot write: %s (the file is unchanged)", strerror(saved));
  }
  return atomic_commit(&af, e);
}

int st_write_params(const char *path, const char *network, const StParam *p, int np,
                    const float *params, const StCount *counts, int nc,
                    const char *const *extra_meta, Err *e) {
  int nextra = 0;
  while (extra_meta && extra_meta[nextra])
    nextra++;
  StEntry *ent = calloc((size_t)np + 1, sizeof *ent);
  const char **meta = calloc((size_t)nextra + 5, sizeof *meta);
  if (!ent || !meta) {
    free(ent);
    free(meta);
    return err_set(e, path, "out of memory");
  }
  for (int i = 0; i < np; i++) {
    ent[i].name = p[i].name;
    ent[i].rank = p[i].rank;
    for (int d = 0; d < p[i].rank; d++)
      ent[i].shape[d] = p[i].shape[d];
    ent[i].data = params + p[i].offset;
  }
  meta[0] = "format";
  meta[1] = "cnngen";
  meta[2] = "network";
  meta[3] = network;
  for (int i = 0; i < nextra; i++)
    meta[4 + i] = extra_meta[i];
  int rc = st_write_counts(path, ent, np, counts, nc, meta, e);
  free(ent);
  free(meta);
  return rc;
}

int st_count(const StFile *f, const char *name, long long *v) {
  const StTensor *t = st_find(f, name);
  if (!t || t->rank != 0 || strcmp(t->dtype, "I64") || t->nbytes != 8)
    return 0;
  unsigned long long u = 0;
  for (int b = 0; b < 8; b++)
    u |= (unsigned long long)t->data[b] << (8 * b);
  memcpy(v, &u, sizeof *v);
  return 1;
}
