/*
 * emit.h: C code generation from a finished Net (after plan_memory).
 * The generated C is described in docs/language.md, The generated C; the header emit_header()
 * writes is its own API documentation.
 */
#ifndef CNNGEN_EMIT_H
#define CNNGEN_EMIT_H

#include <stdbool.h>
#include <stdio.h>

#include "ir.h"

typedef struct EmitOptions {
  bool training;           /* also emit backward passes and the optimizer */
  const float *weights;    /* non-NULL: bake these (flat PyTorch-layout
                              parameters) as `const NAME_model NAME_trained` */
  const char *header_name; /* the source #includes this; NULL: the header is
                              inlined, making one translation unit (JIT) */
  bool kernels;            /* the layers' loops as calls to cnngen's prebuilt
                              kernels (emit_glue.h): for libtcc, which links
                              them in, or --backend cc-kernels; never in
                              written-out C */
  bool kernel_pointers;    /* with kernels: declared as function pointers that
                              the loader fills (--backend cc-kernels: the
                              shared object cannot link cnngen's own
                              functions), not as functions */
} EmitOptions;

void emit_header(const Net *net, const EmitOptions *opt, FILE *out);
void emit_source(const Net *net, const EmitOptions *opt, FILE *out);

#endif
