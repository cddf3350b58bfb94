/*
 * compile.c: the compiler in one function. Each pass fills in the Net.
 * Lowering gives a Net even after errors, with what it could not read
 * marked (ir.h: Layer.broken, TrainConfig.loss_unchecked), so that shape
 * checking reports the independent errors of the same file in the same run
 * without repeating them; after errors, compile() stops before fusing.
 * The messages of all passes come out together, in line order.
 */
#include "compile.h"

Net *compile(Arena *a, const char *path, const char *src, size_t len, const CompileOptions *opt,
             Diag *d) {
  FILE *dump = opt ? opt->dump_ir : NULL;
  int errors = d->errors;
  Net *net;
  diag_hold(d);
  lower(a, path, src, len, d, &net); /* parse, then statements -> layers */
  if (net && dump && d->errors == errors)
    ir_dump(net, dump, "lower");
  if (net)
    shape_check(net, d);
  diag_flush(d);
  if (!net || d->errors > errors)
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
