/*
 * test_onnx_peers.c: what `cnngen export` writes, checked by others.
 *
 * onnx.checker (Debian's python3-onnx, full check with shape inference)
 * accepts every exported model, and ONNX Runtime (the npm package
 * onnxruntime-node that tests/bench uses; tests/onnx/ort_run.js) runs it to
 * `cnngen predict`'s outputs within tests/reference/check's tolerances. The
 * networks: the models of tests/onnx once imported, and
 * tests/onnx/every.cnn (every layer and option the language has).
 *
 * Where python3-onnx, node or onnxruntime-node is missing, the checks that
 * need it are skipped, naming what to install, and the program exits 77,
 * which tests/run-all counts as a skip. (python3-onnx 1.12, Debian 12's,
 * has no onnx.reference evaluator: that arrived in 1.13.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/idx.h"
#include "testutil.h"

enum { MAX_OUTPUTS = 4096 };

static int skipped; /* checks skipped for a missing tool: main exits 77 */

/* NAME.cnn, NAME.safetensors and NAME-images in the directory: a PyTorch
   model of tests/onnx imported, or `every` with random weights. */
static void prepare(const char *name) {
  if (strcmp(name, "every") == 0) {
    static char text[1 << 14];
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/onnx/every.cnn", tu_repo);
    tu_read_file(path, text, sizeof text);
    tu_random_net("every", text, 5);
    return;
  }
  assert_int_equal(tu_run("import %s/tests/onnx/%s.onnx -o %s.cnn --weights-out %s.safetensors",
                          tu_repo, name, name, name),
                   0);
  assert_int_equal(tu_shell("cp %s/tests/onnx/%s-images-idx3-ubyte %s-images", tu_repo, name, name),
                   0);
}

static const char *const nets[] = {"lenet", "strided", "matmul",   "constants",
                                   "every", "resnet",  "depthwise"};

static void test_onnx_peers_checker_accepts_exports(void **state) {
  (void)state;
  if (tu_shell("/usr/bin/python3 -c 'import onnx.checker' 2>/dev/null") != 0) {
    print_message("skipped: python3-onnx is missing (apt-get install python3-onnx)\n");
    skipped++;
    skip();
  }
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    prepare(nets[i]);
    assert_int_equal(
        tu_run("export %s.cnn --weights %s.safetensors -o %s.onnx", nets[i], nets[i], nets[i]), 0);
    if (tu_shell("/usr/bin/python3 -c 'import onnx, sys; m = onnx.load(sys.argv[1]); "
                 "onnx.checker.check_model(m, full_check=True); "
                 "assert m.opset_import[0].version == 13; "
                 "d = m.graph.input[0].type.tensor_type.shape.dim; "
                 "assert d[0].dim_param and not d[0].dim_value' %s.onnx",
                 nets[i]) != 0)
      fail_msg("onnx.checker refused %s.onnx:\n%s", nets[i], tu_err);
  }
}

static void test_onnx_peers_onnxruntime_runs_exports(void **state) {
  (void)state;
  static double got[MAX_OUTPUTS], want[MAX_OUTPUTS];
  if (!tu_has_program("node") ||
      tu_shell("node -e \"require.resolve('onnxruntime-node', {paths: ['%s/tests/bench']})\"",
               tu_repo) != 0) {
    print_message("skipped: node or onnxruntime-node is missing (sh tests/install-deps bench; "
                  "cd tests/bench && npm ci --ignore-scripts)\n");
    skipped++;
    skip();
  }
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    const char *m = nets[i];
    prepare(m);
    assert_int_equal(tu_run("export %s.cnn --weights %s.safetensors -o %s.onnx", m, m, m), 0);
    assert_int_equal(tu_run("predict %s.cnn --weights %s.safetensors --json %s-images", m, m, m),
                     0);
    int n = tu_outputs(tu_out, want, MAX_OUTPUTS);
    /* The images as ONNX takes them: floats byte / 255, NCHW. */
    char images[64];
    snprintf(images, sizeof images, "%s-images", m);
    IdxImages im;
    Err e = {0};
    if (idx_read_images(tu_path(images), &im, &e) < 0)
      fail_msg("%s", e.msg);
    FILE *f = fopen(tu_path("x.f32"), "wb");
    assert_non_null(f);
    for (int k = 0; k < im.n; k++)
      for (int c = 0; c < im.c; c++)
        for (int y = 0; y < im.h; y++)
          for (int x = 0; x < im.w; x++) {
            float v = im.data[(((size_t)k * im.h + y) * im.w + x) * im.c + c] / 255.0f;
            assert_int_equal(fwrite(&v, sizeof v, 1, f), 1);
          }
    fclose(f);
    if (tu_shell("node %s/tests/onnx/ort_run.js %s.onnx x.f32 %d %d %d %d y.f32", tu_repo, m, im.n,
                 im.c, im.h, im.w) != 0)
      fail_msg("ONNX Runtime failed on %s.onnx:\n%s", m, tu_err);
    idx_images_free(&im);
    f = fopen(tu_path("y.f32"), "rb");
    assert_non_null(f);
    float y[MAX_OUTPUTS];
    size_t got_n = fread(y, sizeof *y, MAX_OUTPUTS, f);
    fclose(f);
    assert_int_equal(got_n, (size_t)n);
    for (int k = 0; k < n; k++)
      got[k] = y[k];
    double worst = tu_compare_outputs(m, got, want, n);
    print_message("%s: %d outputs, largest difference between ONNX Runtime and cnngen %.3g\n", m, n,
                  worst);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_onnx_peers_checker_accepts_exports),
      cmocka_unit_test(test_onnx_peers_onnxruntime_runs_exports),
  };
  int failed = cmocka_run_group_tests(tests, tu_setup, tu_teardown);
  return failed ? failed : skipped ? 77 : 0;
}
