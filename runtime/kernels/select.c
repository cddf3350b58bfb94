/*
 * select.c: which width of the kernels (kernels.h) this CPU runs. The
 * AVX-512 and AVX2 sets exist on x86-64 builds only (the Makefile compiles
 * kernels.c for them there).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const CnkSet *by_name(const char *isa) {
#if defined(__x86_64__)
  if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512f"))
    return &cnk_set_avx512;
  if (!strcmp(isa, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return &cnk_set_avx2;
#endif
  if (!strcmp(isa, "generic"))
    return &cnk_set_generic;
  return NULL;
}

const CnkSet *cnk_select(void) {
  const char *want = getenv("CNNGEN_KERNELS");
  const CnkSet *set = want && *want ? by_name(want) : NULL;
  if (set)
    return set;
  if ((set = by_name("avx512")) || (set = by_name("avx2")))
    return set;
  return &cnk_set_generic;
}
