/*
 * fuzz_compile.c: a libFuzzer harness over the whole front end. Each input
 * is a .cnn file: it is compiled as `cnngen compile` compiles one (lexer,
 * parser, lowering, shape check, fusion, memory plan, with --dump-ir's IR
 * printing and `cnngen check`'s table), and when it compiles, its
 * header, its source with the training code, its inference-only source
 * and, for a small network, its source with baked weights are emitted, all
 * into memory. Diagnostics go to a memory stream too. Nothing may crash,
 * leak, read out of bounds or hit undefined behaviour, and the generated C
 * (training code and header in one translation unit) must compile: libtcc
 * compiles it in memory, and an error of tcc's aborts with its message.
 *
 * `make fuzz` builds it (build/fuzz/fuzz_compile) and runs it for
 * FUZZ_TIME seconds on tests/fuzz/corpus with the dictionary
 * tests/fuzz/cnn.dict; tests/fuzz/check is the short run of `make test`.
 * The source is handed over without a terminating NUL, as compile()'s
 * (src, len) interface allows, so a read past the end shows.
 */
#include <libtcc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "emit.h"

/* Larger baked-weight initializers only take time (each is a number). */
enum { FUZZ_MAX_BAKED_PARAMS = 4096 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The C emitted for net with opt (and the header first): free it. */
static char *emit_to_memory(const Net *net, const EmitOptions *opt, int header) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f)
    abort();
  if (header)
    emit_header(net, opt, f);
  emit_source(net, opt, f);
  fclose(f);
  return text;
}

static void tcc_error(void *opaque, const char *msg) {
  (void)opaque;
  fprintf(stderr, "tcc: %s\n", msg);
}

/* Generated C that tcc refuses is a bug: abort, after tcc's messages. */
static void must_compile(const char *source) {
  TCCState *s = tcc_new();
  if (!s)
    abort();
  tcc_set_error_func(s, NULL, tcc_error);
  if (tcc_set_output_type(s, TCC_OUTPUT_MEMORY) < 0 || tcc_compile_string(s, source) < 0) {
    fputs("the generated C does not compile\n", stderr);
    abort();
  }
  tcc_delete(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *src = malloc(size ? size : 1);
  char *msgs = NULL, *dump = NULL;
  size_t msgs_len = 0, dump_len = 0;
  FILE *msgs_f = open_memstream(&msgs, &msgs_len);
  FILE *dump_f = open_memstream(&dump, &dump_len);
  if (!src || !msgs_f || !dump_f)
    abort();
  memcpy(src, data, size);

  Arena a = {0};
  Diag d;
  diag_init(&d, msgs_f, src, size);
  CompileOptions copt = {.dump_ir = dump_f};
  Net *net = compile(&a, "fuzz.cnn", src, size, &copt, &d);
  if ((net != NULL) != (d.errors == 0))
    abort(); /* a Net exactly when there was no error */
  if (net) {
    summary_print(net, dump_f, "");
    free(emit_to_memory(net, &(EmitOptions){.training = true, .header_name = "fuzz.h"}, 1));
    char *tu = emit_to_memory(net, &(EmitOptions){.training = true}, 0);
    must_compile(tu);
    free(tu);
    free(emit_to_memory(net, &(EmitOptions){.training = false}, 0));
    if (net->param_count <= FUZZ_MAX_BAKED_PARAMS) {
      float *w = calloc((size_t)net->param_count + 1, sizeof *w);
      if (!w)
        abort();
      free(emit_to_memory(net, &(EmitOptions){.training = false, .weights = w}, 1));
      free(w);
    }
  }
  fclose(msgs_f);
  fclose(dump_f);
  free(msgs);
  free(dump);
  arena_free(&a);
  free(src);
  return 0;
}
