/*
 * compile.c: the compiler in one function. Each pass fills in the Net;
 * after a pass that reported errors, compile() stops (later passes would
 * only repeat them in other words).
 */
#include "compile.h"

Net *compile(Arena *a, const char *path, const char *src, size_t len, const CompileOptions *opt,
             Diag *d) {
  FILE *dump = opt ? opt->dump_ir : NULL;
  Net *net;
  if (lower(a, path, src, len, d, &net) > 0) /* parse, then statements -> layers */
    return NULL;
  if (dump)
    ir_dump(net, dump, "lower");
  if (shape_check(net, d) > 0)
    return NULL;
  if (dump)
    ir_dump(net, dump, "shape");
  fuse(net);
  if (dump)
    ir_dump(net, dump, "fuse");
  plan_memory(net);
  if (dump)
    ir_dump(net, dump, "plan");
  return net;
}
