# cnngen: `make` builds build/cnngen, `make test` runs every test,
# `make test SAN=1` runs them under AddressSanitizer + UBSan, `make bench`
# measures against PyTorch and ONNX Runtime, `make bench-mpi` training over
# MPI, `make fuzz` fuzzes the front end and the ONNX reader (FUZZ_TIME
# seconds, default 60). V=1 shows the commands.

CC      ?= cc
CFLAGS  ?= -O2 -g
STD     := -std=c11 -D_GNU_SOURCE -Wall -Wextra -pedantic -Icompiler -Iruntime -Ibuild
CFLAGS  += $(STD)
LDLIBS  := -ltcc -lcjson -lpng -ljpeg -lz -lprotobuf-c -ldl -lm -lpthread
B       := build
ifeq ($(SAN),1)
  B       := build/san
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif
ifneq ($(V),1)
  Q := @
endif

COMPILER := arena ops ir diag lower shape fuse plan summary compile emit emit_model emit_infer emit_train \
            ops/conv2d ops/dense ops/pool ops/globalavgpool ops/flatten ops/batchnorm ops/dropout ops/activation ops/residual \
            emit_glue
RUNTIME  := err io formats/idx formats/safetensors formats/checkpoint formats/trainlog formats/image formats/folder formats/dataset backend backend_tcc backend_cc engine dist \
            cli cmd_compile cmd_check cmd_predict cmd_eval trainer cmd_train \
            augment plot explain cmd_explain formats/onnx cmd_export cmd_import
GRAMMAR  := parser lexer
TESTS    := test_parser test_shape test_emit test_golden test_files test_folder test_checkpoint \
            test_backend test_train test_cli test_augment test_explain test_plot test_embed \
            test_examples test_targets test_onnx test_onnx_peers test_mpi test_kernels

# The JIT's kernels (runtime/kernels/): kernels.c once per vector width.
ifeq ($(shell uname -m),x86_64)
  KERNEL_ISAS := avx512 avx2 generic
else
  KERNEL_ISAS := generic
endif
KERNEL_FLAGS   := -O3 -fno-math-errno -ffp-contract=fast
KERNEL_avx512  := -DCNK_VW=16 -mavx512f -mavx512vl -mavx2 -mfma
KERNEL_avx2    := -DCNK_VW=8 -mavx2 -mfma
KERNEL_generic := -DCNK_VW=4

COMPILER_OBJ := $(COMPILER:%=$(B)/compiler/%.o) $(GRAMMAR:%=$(B)/grammar/%.o)
RUNTIME_OBJ  := $(RUNTIME:%=$(B)/runtime/%.o) $(B)/runtime/kernels/select.o \
                $(KERNEL_ISAS:%=$(B)/runtime/kernels/kernels_%.o)
ALL_OBJ      := $(COMPILER_OBJ) $(RUNTIME_OBJ) $(B)/proto/onnx.pb-c.o

# MPI (`mpirun -n R cnngen train`): the plugin cnngen-mpi.so beside the binary,
# built where mpicc is found; cnngen loads it only under mpirun (dist.c).
MPICC ?= mpicc
ifneq ($(shell command -v $(MPICC) 2>/dev/null),)
  MPI_PLUGIN := $(B)/cnngen-mpi.so
endif

all: deps $(B)/cnngen $(MPI_PLUGIN)

$(B)/cnngen-mpi.so: runtime/dist_mpi.c runtime/dist_ops.h
	@mkdir -p $(@D)
	@echo "  MPICC $<"
	$(Q)$(MPICC) -O2 -g $(STD) -shared -fPIC -o $@ $<

$(B)/cnngen: $(ALL_OBJ) $(B)/runtime/main.o
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Generated parser and scanner live in build/ (not build/san: shared).
build/parser.c build/parser.h &: grammar/parser.y
	@mkdir -p build
	@echo "  BISON $<"
	$(Q)bison -Wall -Werror --defines=build/parser.h -o build/parser.c $<
build/lexer.c build/lexer.h &: grammar/lexer.l build/parser.h
	@echo "  FLEX  $<"
	$(Q)flex --header-file=build/lexer.h -o build/lexer.c $<
# Flex's skeleton has unused functions; nothing else is relaxed.
$(B)/grammar/%.o: build/%.c build/parser.h build/lexer.h
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -Wno-unused-function -Wno-sign-compare -c -o $@ $<

# onnx.proto as Debian's libonnx-dev installs it, to C by protoc-c (protobuf-c).
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
build/onnx.pb-c.c build/onnx.pb-c.h &: $(ONNX_PROTO)
	@mkdir -p build
	@echo "  PROTO $<"
	$(Q)protoc-c --c_out=build -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)
$(B)/proto/onnx.pb-c.o: build/onnx.pb-c.c build/onnx.pb-c.h
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<
$(B)/runtime/formats/onnx.o: build/onnx.pb-c.h

# exp and tanh (runtime/kernels/act_poly.h) as a C string, which emit_infer.c
# writes into the generated C: one copy for the JIT's kernels and the emitter.
build/act_poly.inc: runtime/kernels/act_poly.h
	@mkdir -p build
	@echo "  GEN   $@"
	$(Q)sed -n '/^\/\* exp(x)/,$$p' $< | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$$/\\n"/' >$@
$(B)/compiler/emit_infer.o: build/act_poly.inc

$(B)/%.o: %.c build/parser.h build/lexer.h
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/runtime/kernels/kernels_%.o: runtime/kernels/kernels.c runtime/kernels/kernels.h compiler/ops.h \
                                  runtime/kernels/act_poly.h
	@mkdir -p $(@D)
	@echo "  CC    $< ($*)"
	$(Q)$(CC) $(CFLAGS) $(KERNEL_FLAGS) $(KERNEL_$*) -DCNK_ISA=$* -c -o $@ $<

# Tests: one CMocka program per module, linked with everything but main and
# with tests/testutil.c (temporary directory, running the binary).
$(B)/tests/%: tests/%.c $(ALL_OBJ) $(B)/tests/testutil.o
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# '+': tests/fuzz/check runs make to build the fuzzer.
test: all $(TESTS:%=$(B)/tests/%)
	+$(Q)tests/run-all $(B) $(TESTS)

# The fuzzer (tests/fuzz/fuzz_compile.c): the compiler built by clang with
# libFuzzer, ASan and UBSan, in build/fuzz whatever SAN says. `make fuzz`
# runs it (tests/fuzz/check) for FUZZ_TIME seconds; what it finds goes to
# build/fuzz/corpus, crashes to build/fuzz/.
FUZZ_TIME ?= 60
FUZZ_CC   := clang
FUZZ_FLAGS := -O1 -g $(STD) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_OBJ  := $(COMPILER:%=build/fuzz/compiler/%.o) $(GRAMMAR:%=build/fuzz/grammar/%.o)

build/fuzz/compiler/%.o: compiler/%.c build/parser.h build/lexer.h
	@mkdir -p $(@D)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c -o $@ $<
build/fuzz/grammar/%.o: build/%.c build/parser.h build/lexer.h
	@mkdir -p $(@D)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -Wno-unused-function -Wno-sign-compare -c -o $@ $<
build/fuzz/fuzz_compile: tests/fuzz/fuzz_compile.c $(FUZZ_OBJ)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ -ltcc -ldl -lm

# The image decoders (tests/fuzz/fuzz_image.c) and the ONNX reader
# (tests/fuzz/fuzz_onnx.c): their runtime modules, built the same way.
FUZZ_IMAGE_OBJ := $(addprefix build/fuzz/runtime/,formats/image.o io.o err.o)
FUZZ_ONNX_OBJ := build/fuzz/runtime/formats/onnx.o build/fuzz/runtime/io.o \
                 build/fuzz/runtime/err.o build/fuzz/proto/onnx.pb-c.o
build/fuzz/runtime/%.o: runtime/%.c build/onnx.pb-c.h
	@mkdir -p $(@D)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c -o $@ $<
build/fuzz/proto/onnx.pb-c.o: build/onnx.pb-c.c build/onnx.pb-c.h
	@mkdir -p $(@D)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<
build/fuzz/fuzz_image: tests/fuzz/fuzz_image.c $(FUZZ_IMAGE_OBJ)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ -lpng -ljpeg -lz
build/fuzz/fuzz_onnx: tests/fuzz/fuzz_onnx.c $(FUZZ_ONNX_OBJ)
	@echo "  CC    $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ -lprotobuf-c -lz

fuzz:
	+$(Q)tests/fuzz/check $(FUZZ_TIME) build/fuzz/corpus

# The main job: train examples/fashion.cnn on Fashion-MNIST, then evaluate it.
fashion: all
	$(B)/cnngen train examples/fashion.cnn --out $(B)/fashion.safetensors --checkpoint $(B)/fashion.ckpt.safetensors
	$(B)/cnngen eval examples/fashion.cnn --weights $(B)/fashion.safetensors

# The examples of the README (each prints the figures the README quotes).
fashion-augment: all
	$(B)/cnngen train examples/fashion_augment.cnn --out $(B)/fashion_augment.safetensors --checkpoint $(B)/fashion_augment.ckpt.safetensors --log $(B)/fashion_augment.csv --plot $(B)/fashion_augment.png
	$(B)/cnngen eval examples/fashion_augment.cnn --weights $(B)/fashion_augment.safetensors

fashion-recipes: all
	$(B)/cnngen train examples/fashion_recipes.cnn --out $(B)/fashion_recipes.safetensors --checkpoint $(B)/fashion_recipes.ckpt.safetensors --log $(B)/fashion_recipes.csv
	$(B)/cnngen eval examples/fashion_recipes.cnn --weights $(B)/fashion_recipes.safetensors

# The ResNet and MobileNet examples (README, Residual and depthwise examples):
# each trained and evaluated; resnet-pytorch trains the same ResNet, from
# cnngen's starting weights, with PyTorch (Debian's python3-torch).
resnet: all
	$(B)/cnngen train examples/resnet.cnn --out $(B)/resnet.safetensors --checkpoint $(B)/resnet.ckpt.safetensors --log $(B)/resnet.csv
	$(B)/cnngen eval examples/resnet.cnn --weights $(B)/resnet.safetensors

resnet-pytorch: all
	$(B)/cnngen train examples/resnet.cnn --epochs 0 --out $(B)/resnet-init.safetensors
	/usr/bin/python3 examples/resnet/pytorch.py --net examples/resnet.cnn --init $(B)/resnet-init.safetensors $(PYTORCH_ARGS)

mobilenet: all
	$(B)/cnngen check examples/mobilenet.cnn
	$(B)/cnngen train examples/mobilenet.cnn --out $(B)/mobilenet.safetensors --checkpoint $(B)/mobilenet.ckpt.safetensors --log $(B)/mobilenet.csv
	$(B)/cnngen eval examples/mobilenet.cnn --weights $(B)/mobilenet.safetensors

# Fashion-MNIST written out as an image folder of 70,000 PNG files, then
# trained on and evaluated as `make fashion` does on the IDX files.
folder: all
	examples/folder/make-data $(B)/folder/data
	$(B)/cnngen train examples/folder/fashion.cnn --data $(B)/folder/data --out $(B)/folder/fashion.safetensors --checkpoint $(B)/folder/fashion.ckpt.safetensors
	$(B)/cnngen eval examples/folder/fashion.cnn --data $(B)/folder/data --weights $(B)/folder/fashion.safetensors

imbalanced: all
	CNNGEN=$(B)/cnngen examples/imbalanced/run $(B)/imbalanced

multilabel: all
	CNNGEN=$(B)/cnngen examples/multilabel/run $(B)/multilabel

bench: all $(B)/jit_bench
	$(Q)tests/bench/run

# The backends side by side (compile times, batch-1 latency) for tests/bench/run.
$(B)/jit_bench: tests/bench/jit_bench.c $(ALL_OBJ)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# 1 process x 2 threads against mpirun -n 2 x 1 thread, and dist_sum alone.
bench-mpi: all
	$(Q)tests/bench/mpi

# Says which Debian package provides what is missing.
deps:
	$(Q)tests/check-deps

clean:
	rm -rf build

-include $(sort $(shell find $(B) build/fuzz -name '*.d' 2>/dev/null))
.PHONY: all test fuzz fashion fashion-augment fashion-recipes resnet resnet-pytorch mobilenet folder imbalanced multilabel bench bench-mpi deps clean
.SECONDARY:
