/*
 * test_targets.c: the generated inference C on targets other than the host.
 *
 * arm64: cnngen writes a network's inference C with `--name net`, so that one
 * driver, tests/targets/run_net.c, serves every network. The pair is built
 * by the host's cc (-march=native: the widest vectors this machine has) and
 * by Debian's aarch64-linux-gnu-gcc (static, so that qemu needs no sysroot),
 * both at -O2 with -std=c99 -Wall -Wextra -pedantic -Werror. The arm64
 * program runs under qemu-user on the same images, and each output must be
 * the host's within tests/reference/check's tolerances; for the reference
 * cases, PyTorch's (their expected_outputs.jsonl) as well.
 *
 * Cortex-M4: the same C with tests/targets/m4_main.c, built by
 * arm-none-eabi-gcc for a Cortex-M4 with its single-precision FPU and linked
 * with newlib's nosys stubs (no board needed). The test prints the flash and
 * RAM the program needs and checks that they hold what they must (the baked
 * weights in flash; the model and work structs in RAM).
 *
 * Without a toolchain or qemu the tests are skipped, naming the packages to
 * install, and the program exits 77, which tests/run-all counts as a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "testutil.h"

#define FASHION_WEIGHTS TU_REFERENCE "/fashion-pytorch.safetensors"
#define STRICT "-O2 -std=c99 -Wall -Wextra -pedantic -Werror"
#define HOST_CC "cc -march=native " STRICT
#define ARM64_CC "aarch64-linux-gnu-gcc -static " STRICT
#define ARM64_PACKAGES "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
#define M4_CC "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 " STRICT
#define M4_PACKAGES "gcc-arm-none-eabi libnewlib-arm-none-eabi"
enum { N_FASHION = 12, N_ODD = 9, MAX_OUTPUTS = 4096 };

/* A small network with odd channel counts (3, 5, 13, 11), `same` and
   explicit padding, a stride, avgpool and maxpool, tanh, sigmoid, relu and
   softmax. */
static const char odd_cnn[] = "network odd\n"
                              "input 15x13x3\n"
                              "conv2d 5 3x3 padding=same tanh\n"
                              "avgpool 2x2\n"
                              "conv2d 13 3x2 stride=2 padding=1 sigmoid\n"
                              "maxpool 2x2 stride=1\n"
                              "conv2d 11 1x1 relu\n"
                              "flatten\n"
                              "dense 9 tanh\n"
                              "dense 6 softmax\n";

static int skipped; /* tests skipped for a missing tool: main exits 77 */

/* Skips the test unless each program in the space-separated list is there
   and COMPILER (a command line, its program among them) builds a C program
   that uses <math.h> and <string.h>; the message names what is missing and
   the Debian packages to install. */
static void need(const char *programs, const char *compiler, const char *packages) {
  char list[256], missing[256] = "";
  snprintf(list, sizeof list, "%s", programs);
  for (char *p = strtok(list, " "); p; p = strtok(NULL, " "))
    if (!tu_has_program(p))
      snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
               missing[0] ? ", " : "", p);
  if (!missing[0] && tu_shell("printf '#include <math.h>\\n#include <string.h>\\nint main(void) { "
                              "return (int)sqrtf((float)strlen(\"a\")); }\\n' >probe.c && %s -o "
                              "probe probe.c -lm",
                              compiler) != 0)
    snprintf(missing, sizeof missing, "the C library of %.*s", (int)strcspn(compiler, " "),
             compiler);
  if (missing[0]) {
    print_message("skipped: missing %s (install with sh tests/install-deps, or apt-get install "
                  "%s)\n",
                  missing, packages);
    skipped++;
    skip();
  }
}

/* qemu-user calls the emulator qemu-aarch64, qemu-user-static
   qemu-aarch64-static; either runs a static arm64 program. */
static const char *need_arm64(void) {
  const char *qemu = tu_has_program("qemu-aarch64-static") ? "qemu-aarch64-static" : "qemu-aarch64";
  char programs[96];
  snprintf(programs, sizeof programs, "aarch64-linux-gnu-gcc %s", qemu);
  need(programs, ARM64_CC, ARM64_PACKAGES);
  return qemu;
}

static void need_m4(void) {
  need("arm-none-eabi-gcc arm-none-eabi-size arm-none-eabi-nm", M4_CC " --specs=nosys.specs",
       M4_PACKAGES);
}

/* TAG/net.c and TAG/net.h in the test directory: the inference C of CNN
   (a path), with WEIGHTS (a path, or NULL for none) baked in. */
static void generate(const char *tag, const char *cnn, const char *weights) {
  assert_int_equal(tu_shell("mkdir -p %s", tag), 0);
  int rc = tu_run("%s -o %s/net.c --inference-only --name net%s%s", cnn, tag,
                  weights ? " --weights " : "", weights ? weights : "");
  if (rc != 0)
    fail_msg("cnngen %s failed:\n%s", cnn, tu_err);
}

/* The value of `#define net_MACRO N` in TAG/net.h. */
static long header_value(const char *tag, const char *macro) {
  static char text[1 << 16];
  char name[128], want[64];
  snprintf(name, sizeof name, "%s/net.h", tag);
  tu_read_file(tu_path(name), text, sizeof text);
  snprintf(want, sizeof want, "#define net_%s ", macro);
  const char *p = strstr(text, want);
  if (!p)
    fail_msg("%s has no '%s'", name, want);
  return strtol(p + strlen(want), NULL, 10);
}

/* TAG/images.f32: n images, bytes scaled to [0, 1] as cnngen predict does. */
static void write_images(const char *tag, const uint8_t *bytes, size_t count) {
  char name[128];
  snprintf(name, sizeof name, "%s/images.f32", tag);
  FILE *f = fopen(tu_path(name), "wb");
  assert_non_null(f);
  for (size_t i = 0; i < count; i++) {
    float v = (float)bytes[i] / 255.0f;
    assert_int_equal(fwrite(&v, sizeof v, 1, f), 1);
  }
  assert_int_equal(fclose(f), 0);
}

/* Builds TAG/EXE from TAG/net.c and run_net.c with the compiler command CC
   (baked weights when `baked`), which must say nothing, then runs it under
   RUNNER (a prefix, "" for none) on the n images of TAG/images.f32; its
   outputs go to out, count of them. */
static void build_and_run(const char *tag, const char *cc, bool baked, const char *exe,
                          const char *runner, int n, double *out, int count) {
  int rc = tu_shell("cd %s && %s%s -I. -o %s %s/tests/targets/run_net.c net.c -lm", tag, cc,
                    baked ? " -DBAKED" : "", exe, tu_repo);
  if (rc != 0 || tu_out[0] || tu_err[0])
    fail_msg("%s: '%s' on the generated C failed (exit %d) or warned:\n%s%s", tag, cc, rc, tu_out,
             tu_err);
  rc = tu_shell("cd %s && %s./%s %d <images.f32", tag, runner, exe, n);
  if (rc != 0)
    fail_msg("%s: %s%s exited with %d:\n%s", tag, runner, exe, rc, tu_err);
  char *p = tu_out;
  for (int i = 0; i < count; i++) {
    char *end;
    out[i] = strtod(p, &end);
    if (end == p || *end != '\n')
      fail_msg("%s: %s printed %d outputs, not %d:\n%s", tag, exe, i, count, tu_out);
    p = end + 1;
  }
  if (*p)
    fail_msg("%s: %s printed more than %d outputs", tag, exe, count);
}

/* The outputs of tests/reference/CASE/expected_outputs.jsonl, count of them. */
static void expected_outputs(const char *name, double *out, int count) {
  static char text[1 << 20];
  tu_read_file(tu_reference("%s/expected_outputs.jsonl", name), text, sizeof text);
  assert_int_equal(tu_outputs(text, out, count), count);
}

/* The arm64 check for one network whose C and images are in TAG: the
   program built for arm64 run under QEMU against the host's, and against
   `reference` (NULL for none). */
static void arm64_matches_host(const char *qemu, const char *tag, bool baked, int n,
                               const double *reference) {
  int count = n * (int)header_value(tag, "OUTPUT_SIZE");
  assert_true(count <= MAX_OUTPUTS);
  double host[MAX_OUTPUTS], arm[MAX_OUTPUTS];
  char runner[64];
  snprintf(runner, sizeof runner, "%s ", qemu);
  build_and_run(tag, HOST_CC, baked, "run_host", "", n, host, count);
  build_and_run(tag, ARM64_CC, baked, "run_arm64", runner, n, arm, count);
  double d = tu_compare_outputs(tag, arm, host, count);
  print_message("%s: %d images, %d outputs, arm64 (qemu) against the host: largest difference "
                "%.3g\n",
                tag, n, count, d);
  if (reference) {
    d = tu_compare_outputs(tag, arm, reference, count);
    print_message("%s: arm64 against PyTorch (float64): largest difference %.3g\n", tag, d);
  }
}

/* The first N_FASHION Fashion-MNIST test images, from Debian's
   dataset-fashion-mnist or else the reference case's few. */
static void fashion_images(const char *tag) {
  IdxImages im;
  IdxLabels lb;
  Err e = {0};
  if (idx_load_split(CNNGEN_DEFAULT_DATA, "t10k", &im, &lb, &e) < 0)
    assert_int_equal(idx_load_split(tu_reference("seed_fashion/data"), "t10k", &im, &lb, &e), 0);
  assert_true(im.n >= N_FASHION && im.h == 28 && im.w == 28 && im.c == 1);
  write_images(tag, im.data, (size_t)N_FASHION * 28 * 28);
  idx_images_free(&im);
  idx_labels_free(&lb);
}

static const char *in_repo(const char *path) {
  static char buf[4][1200];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", tu_repo, path);
  return p;
}

/* examples/fashion.cnn with PyTorch's trained weights baked in. */
static void test_targets_arm64_fashion_matches_host(void **state) {
  (void)state;
  const char *qemu = need_arm64();
  generate("fashion", in_repo("examples/fashion.cnn"), in_repo(FASHION_WEIGHTS));
  fashion_images("fashion");
  arm64_matches_host(qemu, "fashion", true, N_FASHION, NULL);
}

/* The odd network with seeded weights (net_init(m, 1) on each target) on
   pseudo-random images. */
static void test_targets_arm64_odd_network_matches_host(void **state) {
  (void)state;
  const char *qemu = need_arm64();
  tu_write_text("odd.cnn", odd_cnn);
  generate("odd", tu_path("odd.cnn"), NULL);
  int size = (int)header_value("odd", "INPUT_SIZE");
  uint8_t bytes[N_ODD * 15 * 13 * 3];
  assert_int_equal(size * N_ODD, (int)sizeof bytes);
  uint32_t r = 12345;
  for (size_t i = 0; i < sizeof bytes; i++) {
    r = r * 1664525u + 1013904223u;
    bytes[i] = (uint8_t)(r >> 24);
  }
  write_images("odd", bytes, sizeof bytes);
  arm64_matches_host(qemu, "odd", false, N_ODD, NULL);
}

/* Every reference case with its starting weights baked in, on its test
   images: arm64 against the host and against PyTorch. */
static void test_targets_arm64_reference_cases(void **state) {
  (void)state;
  const char *qemu = need_arm64();
  for (int k = 0; k < TU_REFERENCE_CASES; k++) {
    const char *name = tu_reference_cases[k];
    generate(name, in_repo(tu_reference("%s/net.cnn", name)),
             in_repo(tu_reference("%s/init.safetensors", name)));
    IdxImages im;
    Err e = {0};
    assert_int_equal(idx_read_images(tu_reference("%s/data/t10k-images-idx3-ubyte", name), &im, &e),
                     0);
    size_t size = (size_t)im.h * im.w * im.c;
    assert_int_equal((long)size, header_value(name, "INPUT_SIZE"));
    write_images(name, im.data, im.n * size);
    int n = im.n;
    idx_images_free(&im);
    int count = n * (int)header_value(name, "OUTPUT_SIZE");
    assert_true(count <= MAX_OUTPUTS);
    double want[MAX_OUTPUTS];
    expected_outputs(name, want, count);
    arm64_matches_host(qemu, name, true, n, want);
  }
}

/* The size of symbol `name` in the nm -S listing in tu_out (0 if absent). */
static long symbol_size(const char *name) {
  for (const char *line = tu_out; *line; line = strchr(line, '\n') + 1) {
    unsigned long addr, size;
    char type, sym[128];
    if (sscanf(line, "%lx %lx %c %127s", &addr, &size, &type, sym) == 4 && !strcmp(sym, name))
      return (long)size;
    if (!strchr(line, '\n'))
      break;
  }
  return 0;
}

/* The stack that net_infer needs: its frame and that of the largest
   function it calls in TAG/net.c (gcc's -fstack-usage file; libm is not
   counted). */
static long stack_estimate(const char *tag) {
  static char text[1 << 14];
  char name[128];
  snprintf(name, sizeof name, "%s/net.su", tag);
  assert_true(tu_read_file(tu_path(name), text, sizeof text) > 0);
  long infer = -1, largest = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char fn[128], kind[32];
    long bytes;
    const char *colon = strrchr(line, ':');
    assert_non_null(colon);
    assert_int_equal(sscanf(colon + 1, "%127s %ld %31s", fn, &bytes, kind), 3);
    assert_string_equal(kind, "static"); /* no variable-length frames */
    if (!strcmp(fn, "net_infer"))
      infer = bytes;
    else if (strstr(fn, "_forward") && bytes > largest)
      largest = bytes;
  }
  assert_true(infer >= 0);
  return infer + largest;
}

/* Builds TAG's C for a Cortex-M4 and prints what it needs; `baked`: the
   weights are const in flash, else the model is a static in RAM. */
static void cortex_m4_sizes(const char *tag, const char *what, bool baked) {
  long params = header_value(tag, "PARAM_COUNT");
  const char *steps[] = {
      "%s -fstack-usage -c -o net.o net.c",
      "%s%s -I. -c -o main.o %s/tests/targets/m4_main.c",
      "%s --specs=nosys.specs -o m4.elf main.o net.o -lm",
  };
  for (int i = 0; i < 3; i++) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, steps[i], M4_CC, baked ? " -DBAKED" : "", tu_repo);
    int rc = tu_shell("cd %s && %s", tag, cmd);
    if (rc != 0 || tu_out[0] || tu_err[0])
      fail_msg("%s: '%s' failed (exit %d) or warned:\n%s%s", tag, cmd, rc, tu_out, tu_err);
  }
  long text, data, bss, net_text;
  assert_int_equal(tu_shell("arm-none-eabi-size %s/m4.elf %s/net.o", tag, tag), 0);
  const char *second = strchr(strchr(tu_out, '\n') + 1, '\n') + 1;
  assert_int_equal(sscanf(strchr(tu_out, '\n') + 1, "%ld %ld %ld", &text, &data, &bss), 3);
  assert_int_equal(sscanf(second, "%ld", &net_text), 1);
  assert_int_equal(tu_shell("arm-none-eabi-nm -S %s/m4.elf", tag), 0);
  long weights = symbol_size("net_trained"), model = symbol_size("model");
  long work = symbol_size("work");
  long flash = text + data, ram = data + bss, stack = stack_estimate(tag);

  /* The weights where they belong, the structs in RAM, and a stack that a
     Cortex-M4 has. */
  assert_true(work > 0 && ram >= work);
  if (baked) {
    assert_true(weights >= 4 * params && flash >= weights && model == 0);
  } else {
    assert_true(model >= 4 * params && ram >= model + work && weights == 0);
  }
  assert_true(net_text > weights && stack > 0 && stack < 64 * 1024);
  char flash_parts[96], ram_parts[96];
  if (baked) {
    snprintf(flash_parts, sizeof flash_parts, "weights %ld, generated code %ld", weights,
             net_text - weights);
    snprintf(ram_parts, sizeof ram_parts, "work %ld", work);
  } else {
    snprintf(flash_parts, sizeof flash_parts, "generated code %ld", net_text);
    snprintf(ram_parts, sizeof ram_parts, "model %ld, work %ld", model, work);
  }
  print_message("cortex-m4, %s: flash %ld bytes (%s, the rest newlib), RAM %ld bytes (%s) + "
                "stack about %ld (net_infer and its largest layer, libm not counted)\n",
                what, flash, flash_parts, ram, ram_parts, stack);
}

/* examples/fashion.cnn with PyTorch's trained weights baked in: in flash. */
static void test_targets_cortex_m4_fashion_baked(void **state) {
  (void)state;
  need_m4();
  generate("m4_fashion", in_repo("examples/fashion.cnn"), in_repo(FASHION_WEIGHTS));
  cortex_m4_sizes("m4_fashion", "examples/fashion.cnn, baked weights", true);
}

/* The odd network, its model in RAM (net_init). */
static void test_targets_cortex_m4_odd_network(void **state) {
  (void)state;
  need_m4();
  tu_write_text("odd.cnn", odd_cnn);
  generate("m4_odd", tu_path("odd.cnn"), NULL);
  cortex_m4_sizes("m4_odd", "the odd network, model in RAM", false);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_targets_arm64_fashion_matches_host),
      cmocka_unit_test(test_targets_arm64_odd_network_matches_host),
      cmocka_unit_test(test_targets_arm64_reference_cases),
      cmocka_unit_test(test_targets_cortex_m4_fashion_baked),
      cmocka_unit_test(test_targets_cortex_m4_odd_network),
  };
  int failed = cmocka_run_group_tests(tests, tu_setup, tu_teardown);
  return failed ? failed : skipped ? 77 : 0;
}
