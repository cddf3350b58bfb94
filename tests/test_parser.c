/*
 * test_parser.c: the front end up to the Net: scanner, grammar, lowering
 * and diagnostics.
 *
 * Golden files: every tests/lang/NAME.cnn is compiled and the diagnostics
 * it gives must be exactly tests/lang/NAME.err (empty for a valid network).
 * `UPDATE=1 build/tests/test_parser` rewrites the .err files; read the diff
 * before committing it. The other tests look at the statements and the Net.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "compile.h"
#include "io.h"
#include "testutil.h"

/* ---- helpers (compiling: testutil.h) ---- */

/* The whole file, NUL-terminated (free it); NULL if unreadable. */
static char *read_text(const char *path, size_t *len) {
  Err e = {0};
  return io_read_file(path, len, &e);
}

/* The messages for src, which must not compile. */
static char *compile_fails(Arena *a, const char *src) {
  char *msgs;
  Net *net = tu_compile(a, "t.cnn", src, strlen(src), &msgs, NULL);
  assert_null(net);
  return msgs;
}

/* ---- golden files ---- */

static int check_golden(const char *cnn, bool update) {
  size_t len, elen = 0;
  char *src = read_text(cnn, &len);
  if (!src) {
    print_error("cannot read %s\n", cnn);
    return 1;
  }
  char err_path[512];
  snprintf(err_path, sizeof err_path, "%.*s.err", (int)(strlen(cnn) - 4), cnn);
  Arena a = {0};
  char *got;
  tu_compile(&a, cnn, src, len, &got, NULL);
  arena_free(&a);
  free(src);
  int failed = 0;
  if (update) {
    FILE *f = fopen(err_path, "wb");
    if (!f || fputs(got, f) < 0 || fclose(f) != 0)
      failed = 1, print_error("cannot write %s\n", err_path);
  } else {
    char *want = read_text(err_path, &elen);
    if (!want) {
      print_error("%s: missing (run with UPDATE=1 to create it)\n", err_path);
      failed = 1;
    } else if (strcmp(want, got) != 0) {
      print_error("%s differs.\n--- expected:\n%s--- got:\n%s---\n", err_path, want, got);
      failed = 1;
    }
    free(want);
  }
  free(got);
  return failed;
}

static void test_parser_golden_files(void **state) {
  (void)state;
  glob_t g;
  assert_int_equal(glob("tests/lang/*.cnn", 0, NULL, &g), 0);
  const char *update = getenv("UPDATE");
  int failed = 0;
  for (size_t i = 0; i < g.gl_pathc; i++)
    failed += check_golden(g.gl_pathv[i], update && strcmp(update, "1") == 0);
  assert_true(g.gl_pathc >= 40);
  globfree(&g);
  assert_int_equal(failed, 0);
}

/* ---- statements ---- */

static void test_parser_builds_statements(void **state) {
  (void)state;
  Arena a = {0};
  Diag d;
  const char *src = "  conv2d 32 3x3 stride=2 relu   # first\n"
                    "\n"
                    "# only a comment\n"
                    "class_weights 1,2,.5\n"
                    "train {\n"
                    "  loss mse\n"
                    "}\n";
  diag_init(&d, stderr, src, strlen(src));
  StmtList list;
  assert_int_equal(parse(&a, "t.cnn", src, strlen(src), &d, &list), 0);
  assert_int_equal(list.n, 3);

  const Stmt *s = list.head;
  assert_string_equal(s->word, "conv2d");
  assert_string_equal(s->text, "conv2d 32 3x3 stride=2 relu");
  assert_int_equal(s->loc.line, 1);
  assert_int_equal(s->loc.col, 3);
  assert_int_equal(s->loc.len, 6);
  assert_int_equal(s->args.n, 4);
  const Arg *arg = s->args.head;
  assert_int_equal(arg->kind, ARG_NUMBER);
  assert_true(arg->num == 32);
  arg = arg->next;
  assert_int_equal(arg->kind, ARG_DIMS);
  assert_int_equal(arg->ndims, 2);
  assert_int_equal(arg->dims[0], 3);
  assert_int_equal(arg->dims[1], 3);
  assert_int_equal(arg->loc.col, 13);
  arg = arg->next;
  assert_int_equal(arg->kind, ARG_KEYVAL);
  assert_string_equal(arg->text, "stride");
  assert_int_equal(arg->value->kind, ARG_NUMBER);
  assert_true(arg->value->num == 2);
  assert_int_equal(arg->value->loc.col, 24);
  arg = arg->next;
  assert_int_equal(arg->kind, ARG_WORD);
  assert_string_equal(arg->text, "relu");
  assert_int_equal(s->end.col, 30); /* just after "relu", before the comment */

  s = s->next;
  assert_string_equal(s->word, "class_weights");
  assert_int_equal(s->loc.line, 4);
  assert_int_equal(s->args.n, 1);
  arg = s->args.head;
  assert_int_equal(arg->kind, ARG_LIST);
  assert_string_equal(arg->text, "1,2,.5");
  assert_int_equal(arg->items.n, 3);
  assert_true(arg->items.tail->num == 0.5);

  s = s->next;
  assert_string_equal(s->word, "train");
  assert_true(s->block);
  assert_int_equal(s->open_loc.line, 5);
  assert_int_equal(s->open_loc.col, 7);
  assert_int_equal(s->body.n, 1);
  assert_string_equal(s->body.head->word, "loss");
  assert_string_equal(s->body.head->args.head->text, "mse");
  assert_null(s->next);
  arena_free(&a);
}

static void test_parser_numbers_and_dims(void **state) {
  (void)state;
  Arena a = {0};
  Diag d;
  const char *src = "x 0.001 1e-7 .5 5. -2 +3 1E3 28x28x1 1x2x3x4x5\n";
  diag_init(&d, stderr, src, strlen(src));
  StmtList list;
  assert_int_equal(parse(&a, "t.cnn", src, strlen(src), &d, &list), 0);
  const double want[] = {0.001, 1e-7, 0.5, 5, -2, 3, 1000};
  const Arg *arg = list.head->args.head;
  for (int i = 0; i < 7; i++, arg = arg->next) {
    assert_int_equal(arg->kind, ARG_NUMBER);
    assert_true(arg->num == want[i]);
  }
  assert_int_equal(arg->kind, ARG_DIMS);
  assert_int_equal(arg->ndims, 3);
  assert_int_equal(arg->dims[2], 1);
  arg = arg->next;
  assert_int_equal(arg->kind, ARG_DIMS);
  assert_int_equal(arg->ndims, 5); /* counted; lower.c refuses it */
  arena_free(&a);
}

static void test_parser_last_line_without_newline(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 4x4x1\nflatten\ndense 2 softmax");
  assert_int_equal(net->nlayers, 2);
  assert_int_equal(net->layers[1].act, ACT_SOFTMAX);
  net = tu_compile_ok(&a, "input 4x4x1\nflatten\ndense 2 softmax\ntrain {\n  epochs 7\n}");
  assert_int_equal(net->train.epochs, 7);
  /* Also with CRLF line ends and a trailing comment. */
  net = tu_compile_ok(&a, "input 4x4x1\r\nflatten\r\ndense 2 softmax # out");
  assert_string_equal(net->layers[1].text, "dense 2 softmax");
  arena_free(&a);
}

static void test_parser_one_message_per_line(void **state) {
  (void)state;
  Arena a = {0};
  char *msgs;
  int errors;
  const char *src = "input 4x4x1 @ $ %\n"   /* three strays: one message */
                    "dense 3x3a 1.2.3 ,,\n" /* bad numbers, then a syntax error */
                    "dense 2 = = =\n"       /* one syntax error, the rest skipped */
                    "flatten\n"
                    "dense 2 softmax\n";
  Net *net = tu_compile(&a, "t.cnn", src, strlen(src), &msgs, &errors);
  assert_null(net);
  assert_int_equal(errors, 3);
  assert_contains(msgs, "t.cnn:1:13: error: unexpected character '@'");
  assert_contains(msgs, "t.cnn:2:7: error: malformed number '3x3a'");
  assert_contains(msgs, "t.cnn:3:9: error: expected an argument, ',', '{' or end of line, got '='");
  free(msgs);
  arena_free(&a);
}

/* A line with a syntax error is still a statement, marked broken, with the
   word it began with; lines after a '{' lost on such a line are orphans. */
static void test_parser_broken_lines_stay(void **state) {
  (void)state;
  Arena a = {0};
  Diag d;
  const char *src = "input 4x4x1 =\n" /* syntax error */
                    "= 5\n"           /* no word */
                    "conv2d 3 @ 3\n"  /* the scanner's error: arguments not to be trusted */
                    "}\n"             /* a '}' line is no statement */
                    "train = {\n"     /* the '{' goes with the line */
                    "  loss mse\n"
                    "}\n"
                    "dense 2\n";
  diag_init(&d, NULL, src, strlen(src));
  StmtList list;
  assert_int_equal(parse(&a, "t.cnn", src, strlen(src), &d, &list), 5);
  assert_int_equal(list.n, 6);
  const Stmt *s = list.head;
  assert_true(s->broken);
  assert_string_equal(s->word, "input");
  assert_int_equal(s->loc.line, 1);
  assert_int_equal(s->args.n, 0);
  s = s->next;
  assert_true(s->broken);
  assert_null(s->word);
  assert_int_equal(s->loc.line, 2);
  s = s->next;
  assert_true(s->broken);
  assert_string_equal(s->word, "conv2d");
  assert_int_equal(s->loc.line, 3);
  s = s->next;
  assert_true(s->broken && !s->orphan);
  assert_string_equal(s->word, "train");
  assert_int_equal(s->loc.line, 5);
  s = s->next;
  assert_true(s->orphan && !s->broken);
  assert_string_equal(s->word, "loss");
  s = s->next;
  assert_true(!s->orphan && !s->broken); /* the '}' closed what was lost */
  assert_string_equal(s->word, "dense");
  arena_free(&a);
}

/* A block without its '}' is closed at the end of the file (one error),
   so that its statements and those before it are still there. */
static void test_parser_unclosed_block_ends_with_file(void **state) {
  (void)state;
  Arena a = {0};
  Diag d;
  const char *src = "input 4x4x1\ntrain {\n  loss mse\n  x {\n  y 1\n";
  diag_init(&d, NULL, src, strlen(src));
  StmtList list;
  assert_int_equal(parse(&a, "t.cnn", src, strlen(src), &d, &list), 1);
  assert_int_equal(list.n, 2);
  const Stmt *train = list.tail;
  assert_true(train->block && train->unclosed && !train->broken);
  assert_int_equal(train->body.n, 2);
  assert_true(train->body.tail->block && train->body.tail->unclosed);
  assert_string_equal(train->body.tail->body.head->word, "y");
  /* A closed block is not unclosed; junk after its '{' marks it broken. */
  src = "train { 3\n  loss mse\n}\n";
  diag_init(&d, NULL, src, strlen(src));
  assert_int_equal(parse(&a, "t.cnn", src, strlen(src), &d, &list), 1);
  assert_int_equal(list.n, 1);
  assert_true(list.head->block && list.head->broken && !list.head->unclosed);
  assert_int_equal(list.head->body.n, 1);
  arena_free(&a);
}

/* ---- lowering ---- */

static void test_lower_train_defaults(void **state) {
  (void)state;
  Arena a = {0};
  const char *nets[] = {"input 4x4x1\nflatten\ndense 2 softmax\n",
                        "input 4x4x1\nflatten\ndense 2 softmax\ntrain {\n}\n"};
  for (int i = 0; i < 2; i++) {
    Net *net = tu_compile_ok(&a, nets[i]);
    const TrainConfig *t = &net->train;
    assert_int_equal(t->present, i == 1);
    assert_int_equal(t->loss, LOSS_SPARSE_CE);
    assert_int_equal(t->optimizer, OPT_ADAM);
    assert_true(t->lr == 0.001);
    assert_true(t->beta1 == 0.9);
    assert_true(t->beta2 == 0.999);
    assert_true(t->eps == 1e-7);
    assert_true(t->weight_decay == 0);
    assert_true(t->momentum == 0);
    assert_false(t->nesterov);
    assert_int_equal(t->batch, 32);
    assert_int_equal(t->epochs, 5);
    assert_true(t->seed == 1);
    for (int k = 0; k < AUG_COUNT; k++)
      assert_false(t->augment[k].on);
    assert_int_equal(t->class_weights, CW_NONE);
  }
  arena_free(&a);
}

static void test_lower_train_settings(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 8x8x1\nflatten\ndense 3 softmax\n"
                               "train {\n"
                               "  loss categorical_crossentropy\n"
                               "  optimizer sgd lr=0.05 momentum=0.9 nesterov weight_decay=1e-4\n"
                               "  batch 20\n"
                               "  epochs 3\n"
                               "  seed 18446744073709551615\n"
                               "  augment vflip hflip shift=2 rotate=12.5 crop=4 noise=0.05\n"
                               "  class_weights 1,0.5,2\n"
                               "}\n");
  const TrainConfig *t = &net->train;
  assert_int_equal(t->loss, LOSS_CE);
  assert_int_equal(t->loss_loc.line, 5);
  assert_int_equal(t->optimizer, OPT_SGD);
  assert_true(t->lr == 0.05);
  assert_true(t->momentum == 0.9);
  assert_true(t->nesterov);
  assert_true(t->weight_decay == 1e-4);
  assert_int_equal(t->batch, 20);
  assert_int_equal(t->epochs, 3);
  assert_true(t->seed == 18446744073709551615ULL);
  for (int k = 0; k < AUG_COUNT; k++)
    assert_true(t->augment[k].on);
  assert_true(t->augment[AUG_SHIFT].value == 2);
  assert_true(t->augment[AUG_ROTATE].value == 12.5);
  assert_true(t->augment[AUG_CROP].value == 4);
  assert_true(t->augment[AUG_NOISE].value == 0.05);
  assert_int_equal(t->augment[AUG_CROP].loc.line, 10);
  assert_int_equal(t->class_weights, CW_LIST);
  assert_int_equal(t->class_weight_count, 3);
  assert_true(t->class_weight_list[1] == 0.5);
  assert_int_equal(t->class_weights_loc.col, 17);

  net = tu_compile_ok(&a, "input 8x8x1\nflatten\ndense 3 softmax\ntrain {\n"
                          "  optimizer adam lr=0.01 beta1=0.8 beta2=0.99 eps=0.000001\n"
                          "  class_weights balanced\n}\n");
  t = &net->train;
  assert_int_equal(t->optimizer, OPT_ADAM);
  assert_true(t->lr == 0.01 && t->beta1 == 0.8 && t->beta2 == 0.99 && t->eps == 1e-6);
  assert_int_equal(t->class_weights, CW_BALANCED);
  /* sgd without lr= takes Keras' default, 0.01. */
  net = tu_compile_ok(&a, "input 8x8x1\nflatten\ndense 3 softmax\ntrain {\n  optimizer sgd\n}\n");
  assert_true(net->train.lr == 0.01 && net->train.momentum == 0);
  arena_free(&a);
}

static void test_lower_layer_fields(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "network fields\n"
                               "input 32x30x3\n"
                               "conv2d 8 5 stride=2 padding=same tanh   # a comment\n"
                               "\tconv2d 4 3x1 padding=1\n"
                               "maxpool 3x3 stride=1\n"
                               "avgpool 2\n"
                               "dropout 0.25\n"
                               "relu\n"
                               "activation sigmoid\n"
                               "globalavgpool\n"
                               "dense 6 softmax\n");
  assert_string_equal(net->name, "fields");
  assert_int_equal(net->input.h, 32);
  assert_int_equal(net->input.w, 30);
  assert_int_equal(net->input.c, 3);
  assert_false(net->input.vec);
  assert_int_equal(net->nlayers, 9);
  const Layer *l = net->layers;
  assert_int_equal(l[0].op, OP_CONV2D);
  assert_string_equal(l[0].text, "conv2d 8 5 stride=2 padding=same tanh");
  assert_int_equal(l[0].u.conv.filters, 8);
  assert_int_equal(l[0].u.conv.kh, 5);
  assert_int_equal(l[0].u.conv.kw, 5);
  assert_int_equal(l[0].u.conv.sh, 2);
  assert_int_equal(l[0].u.conv.sw, 2);
  assert_int_equal(l[0].u.conv.pad_mode, PAD_SAME);
  assert_int_equal(l[0].act, ACT_TANH);
  assert_int_equal(l[0].act_loc.col, 34);
  assert_int_equal(l[0].size_loc.col, 10);
  assert_int_equal(l[1].loc.col, 2);
  assert_string_equal(l[1].text, "conv2d 4 3x1 padding=1");
  assert_int_equal(l[1].u.conv.kh, 3);
  assert_int_equal(l[1].u.conv.kw, 1);
  assert_int_equal(l[1].u.conv.sh, 1);
  assert_int_equal(l[1].u.conv.sw, 1);
  assert_int_equal(l[1].u.conv.pad_mode, PAD_EXPLICIT);
  assert_int_equal(l[1].u.conv.pad_h, 1);
  assert_int_equal(l[1].u.conv.pad_w, 1);
  assert_false(l[1].no_bias);
  assert_int_equal(l[1].act, ACT_LINEAR);
  assert_int_equal(l[2].op, OP_MAXPOOL);
  assert_int_equal(l[2].u.pool.sh, 1);
  assert_int_equal(l[2].u.pool.sw, 1);
  assert_int_equal(l[3].op, OP_AVGPOOL);
  assert_int_equal(l[3].u.pool.kh, 2);
  assert_int_equal(l[3].u.pool.sh, 2); /* the window */
  assert_int_equal(l[3].u.pool.sw, 2);
  assert_int_equal(l[4].op, OP_DROPOUT);
  assert_true(l[4].u.dropout.rate == 0.25);
  assert_int_equal(l[5].op, OP_ACT);
  assert_int_equal(l[5].act, ACT_RELU);
  assert_int_equal(l[6].op, OP_ACT);
  assert_int_equal(l[6].act, ACT_SIGMOID);
  assert_int_equal(l[7].op, OP_GLOBALAVGPOOL);
  assert_int_equal(l[8].op, OP_DENSE);
  assert_int_equal(l[8].u.dense.units, 6);
  assert_int_equal(l[8].loc.line, 11);
  arena_free(&a);
}

/* stride=SHxSW, padding=PHxPW, bias=false, pools striding by their window
   in each direction: the fields, the shapes (PyTorch's rule per direction)
   and the parameters (no bias tensor at all). */
static void test_lower_stride_padding_bias_per_direction(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 13x14x3\n"
                               "conv2d 8 3x3 stride=2x1 padding=1x2 bias=false\n"
                               "conv2d 4 3x2 stride=1x2 padding=same bias=true relu\n"
                               "maxpool 2x3\n"
                               "avgpool 3x2 stride=1x2\n"
                               "flatten\n"
                               "dense 5 bias=false\n"
                               "dense 3 softmax\n");
  const Layer *l = net->layers;
  assert_int_equal(l[0].u.conv.sh, 2);
  assert_int_equal(l[0].u.conv.sw, 1);
  assert_int_equal(l[0].u.conv.pad_mode, PAD_EXPLICIT);
  assert_int_equal(l[0].u.conv.pad_h, 1);
  assert_int_equal(l[0].u.conv.pad_w, 2);
  assert_true(l[0].no_bias);
  /* (13 + 2 - 3) / 2 + 1 = 7 rows, (14 + 4 - 3) / 1 + 1 = 16 columns */
  assert_true(l[0].out.h == 7 && l[0].out.w == 16 && l[0].out.c == 8);
  assert_int_equal(l[0].weight_count, 8 * 3 * 3 * 3);
  assert_int_equal(l[0].bias_count, 0);
  /* same: 7 rows at stride 1, ceil(16 / 2) = 8 columns; pads 1 + 1 and 0 + 0 */
  assert_false(l[1].no_bias);
  assert_true(l[1].out.h == 7 && l[1].out.w == 8);
  assert_true(l[1].u.conv.pad_top == 1 && l[1].u.conv.pad_bottom == 1);
  assert_true(l[1].u.conv.pad_left == 0 && l[1].u.conv.pad_right == 0);
  assert_int_equal(l[1].weight_offset, 216);
  assert_int_equal(l[1].bias_offset, 216 + 4 * 8 * 3 * 2);
  assert_int_equal(l[1].bias_count, 4);
  /* maxpool 2x3 strides 2 down and 3 across: 3 x 2 */
  assert_true(l[2].u.pool.sh == 2 && l[2].u.pool.sw == 3);
  assert_true(l[2].out.h == 3 && l[2].out.w == 2);
  assert_true(l[3].u.pool.sh == 1 && l[3].u.pool.sw == 2);
  assert_true(l[3].out.h == 1 && l[3].out.w == 1);
  assert_true(l[5].no_bias);
  assert_int_equal(l[5].bias_count, 0);
  assert_int_equal(l[6].bias_count, 3);
  assert_int_equal(net->param_count, 216 + 196 + 4 * 5 + 5 * 3 + 3);
  /* The tensors: no conv1.bias, no dense1.bias. */
  TensorInfo ti[8];
  int n = net_tensors(net, NULL);
  assert_int_equal(n, 6);
  net_tensors(net, ti);
  assert_string_equal(ti[0].name, "conv1.weight");
  assert_string_equal(ti[1].name, "conv2.weight");
  assert_string_equal(ti[2].name, "conv2.bias");
  assert_string_equal(ti[3].name, "dense1.weight");
  assert_string_equal(ti[4].name, "dense2.weight");
  assert_int_equal(ti[4].offset, 216 + 196 + 20);
  assert_string_equal(ti[5].name, "dense2.bias");
  arena_free(&a);
}

static void test_lower_layer_names(void **state) {
  (void)state;
  Arena a = {0};
  Net *net = tu_compile_ok(&a, "input 12x12x1\n"
                               "conv2d 2 3x3\n"
                               "conv2d 2 3x3 name=features\n"
                               "maxpool 2x2\n"
                               "conv2d 2 3x3\n"
                               "flatten\n"
                               "dense 4 name=hidden relu\n"
                               "dense 3 softmax\n");
  const char *want[] = {"conv1", "features", "", "conv3", "", "hidden", "dense2"};
  assert_int_equal(net->nlayers, 7);
  for (int i = 0; i < 7; i++)
    assert_string_equal(net->layers[i].name, want[i]);
  /* A name= that takes a default name is a duplicate, blamed on the name=. */
  char *msgs = compile_fails(&a, "input 12x12x1\nconv2d 2 3x3 name=conv2\nconv2d 2 3x3\nflatten\n"
                                 "dense 2 name=conv2 softmax\n");
  assert_contains(msgs, "t.cnn:2:19: error: layer name 'conv2' is used twice");
  assert_contains(msgs, "t.cnn:3:1: note: 'conv2' is the default name of this layer");
  assert_contains(msgs, "t.cnn:5:14: error: layer name 'conv2' is used twice");
  free(msgs);
  arena_free(&a);
}

/* lower() gives a Net after errors too, marking what it could not read so
   that shape_check() repeats none of it. */
static void test_lower_marks_what_it_cannot_read(void **state) {
  (void)state;
  Arena a = {0};
  Diag d;
  const char *src = "input 8x8x1\n"
                    "conv2d 0 3x3\n"        /* bad value: broken */
                    "conv2d 2 3x3 rleu\n"   /* bad activation: the shape is still known */
                    "conv2d 2 3x3 name=1\n" /* bad name: the same */
                    "foo 3\n"               /* unknown word: broken */
                    "dense 2 @\n"           /* syntax error: broken, still a dense */
                    "train {\n"
                    "  loss msee\n"
                    "}\n";
  diag_init(&d, NULL, src, strlen(src));
  Net *net;
  assert_int_equal(lower(&a, "t.cnn", src, strlen(src), &d, &net), 6);
  assert_non_null(net);
  assert_int_equal(net->nlayers, 5);
  assert_true(net->layers[0].broken);
  assert_false(net->layers[1].broken);
  assert_false(net->layers[2].broken);
  assert_true(net->layers[3].broken);
  assert_true(net->layers[4].broken);
  assert_int_equal(net->layers[4].op, OP_DENSE);
  assert_string_equal(net->layers[4].name, "dense1");
  assert_true(net->train.present && net->train.loss_unchecked);
  /* An input that cannot be read stays 0x0x0. */
  src = "input 28x28\nflatten\ndense 2 sofmax\ntrain {\n}\n";
  diag_init(&d, NULL, src, strlen(src));
  assert_int_equal(lower(&a, "t.cnn", src, strlen(src), &d, &net), 2);
  assert_int_equal(shape_size(net->input), 0);
  assert_false(net->layers[1].broken);
  assert_true(net->train.loss_unchecked); /* the last activation is not known */
  /* Nothing marked in a right file. */
  src = "input 8x8x1\nflatten\ndense 2 softmax\ntrain {\n  loss mse\n}\n";
  diag_init(&d, NULL, src, strlen(src));
  assert_int_equal(lower(&a, "t.cnn", src, strlen(src), &d, &net), 0);
  assert_false(net->layers[0].broken || net->layers[1].broken || net->train.loss_unchecked);
  arena_free(&a);
}

static void test_lower_default_network_name(void **state) {
  (void)state;
  const char *paths[][2] = {{"nets/my-net.cnn", "my_net"},
                            {"../a/b/fashion.cnn", "fashion"},
                            {"3layers.cnn", "net_3layers"},
                            {"dir.d/plain", "plain"},
                            {".cnn", "net"}};
  const char *src = "input 2x2x1\nflatten\ndense 2 softmax\n";
  for (int i = 0; i < 5; i++) {
    Arena a = {0};
    char *msgs;
    Net *net = tu_compile(&a, paths[i][0], src, strlen(src), &msgs, NULL);
    assert_non_null(net);
    assert_string_equal(net->name, paths[i][1]);
    assert_string_equal(net->file, paths[i][0]);
    free(msgs);
    arena_free(&a);
  }
}

/* ---- diagnostics ---- */

static void test_diag_format(void **state) {
  (void)state;
  const char *src = "a\n\tdense\t64 x\n  h\xc3\xa9llo wor\x01ld\n";
  char *out;
  size_t size;
  FILE *mem = open_memstream(&out, &size);
  Diag d;
  diag_init(&d, mem, src, strlen(src));
  diag_error(&d, (Loc){"f.cnn", 2, 8, 2}, "two %s", "bytes");
  diag_note(&d, (Loc){"f.cnn", 2, 2, 5}, "same line: not quoted");
  diag_note(&d, (Loc){"f.cnn", 1, 1, 1}, "other line: quoted");
  diag_error(&d, (Loc){"f.cnn", 3, 10, 3}, "after UTF-8");
  diag_error(&d, (Loc){"f.cnn", 3, 13, 1}, "control byte");
  diag_error(&d, (Loc){"f.cnn", 1234567, 1, 1}, "past the end");
  diag_error(&d, (Loc){NULL, 0, 0, 0}, "nowhere");
  fclose(mem);
  assert_int_equal(d.errors, 5);
  assert_string_equal(out, "f.cnn:2:8: error: two bytes\n"
                           "    2 |         dense   64 x\n"
                           "      |                 ^~\n"
                           "f.cnn:2:2: note: same line: not quoted\n"
                           "f.cnn:1:1: note: other line: quoted\n"
                           "    1 | a\n"
                           "      | ^\n"
                           "f.cnn:3:10: error: after UTF-8\n"
                           "    3 |   h\xc3\xa9llo wor?ld\n"
                           "      |         ^~~\n"
                           "f.cnn:3:13: error: control byte\n"
                           "    3 |   h\xc3\xa9llo wor?ld\n"
                           "      |            ^\n"
                           "f.cnn:1234567:1: error: past the end\n"
                           "<input>: error: nowhere\n");
  free(out);
}

/* Held messages come out in line and column order; only the first
   max_errors are kept, then one "too many errors" line. */
static void test_diag_hold_sorts_and_caps(void **state) {
  (void)state;
  const char *src = "a\nb\nc\nd\ne\n";
  char *out;
  size_t size;
  FILE *mem = open_memstream(&out, &size);
  Diag d;
  diag_init(&d, mem, src, strlen(src));
  d.max_errors = 3;
  diag_hold(&d);
  diag_error(&d, (Loc){"f", 4, 1, 1}, "four");
  diag_note(&d, (Loc){"f", 1, 1, 1}, "of four");
  diag_error(&d, (Loc){"f", 2, 1, 1}, "two");
  diag_error(&d, (Loc){"f", 5, 1, 1}, "five"); /* pushed out by "one" below */
  diag_note(&d, (Loc){"f", 5, 1, 1}, "of five");
  diag_error(&d, (Loc){"f", 1, 1, 1}, "one");
  diag_error(&d, (Loc){"f", 3, 1, 1}, "three");    /* pushes out "four" */
  diag_error(&d, (Loc){"f", 4, 2, 1}, "not kept"); /* sorts after three others */
  diag_note(&d, (Loc){"f", 4, 2, 1}, "nor its note");
  fflush(mem);
  assert_int_equal(size, 0); /* nothing yet */
  diag_flush(&d);
  fclose(mem);
  assert_int_equal(d.errors, 6);
  assert_string_equal(out, "f:1:1: error: one\n"
                           "    1 | a\n"
                           "      | ^\n"
                           "f:2:1: error: two\n"
                           "    2 | b\n"
                           "      | ^\n"
                           "f:3:1: error: three\n"
                           "    3 | c\n"
                           "      | ^\n"
                           "f: error: too many errors; only the first 3 are shown\n");
  free(out);

  /* Same line: by column, then in the order they came; notes stay with
     their error. After diag_flush, messages are printed at once again. */
  mem = open_memstream(&out, &size);
  diag_init(&d, mem, NULL, 0);
  diag_hold(&d);
  diag_error(&d, (Loc){"f", 2, 9, 1}, "second");
  diag_note(&d, (Loc){"f", 1, 1, 1}, "its note");
  diag_error(&d, (Loc){"f", 2, 3, 1}, "first");
  diag_error(&d, (Loc){"f", 2, 9, 1}, "third");
  diag_error(&d, (Loc){NULL, 0, 0, 0}, "the file");
  diag_flush(&d);
  diag_error(&d, (Loc){"f", 1, 1, 1}, "after");
  fclose(mem);
  assert_string_equal(out, "<input>: error: the file\n"
                           "f:2:3: error: first\n"
                           "f:2:9: error: second\n"
                           "f:1:1: note: its note\n"
                           "f:2:9: error: third\n"
                           "f:1:1: error: after\n");
  free(out);
}

/* Printed at once, the cap stops after max_errors errors too. */
static void test_diag_cap_without_hold(void **state) {
  (void)state;
  char *out;
  size_t size;
  FILE *mem = open_memstream(&out, &size);
  Diag d;
  diag_init(&d, mem, NULL, 0);
  assert_int_equal(d.max_errors, DIAG_MAX_ERRORS);
  d.max_errors = 2;
  for (int i = 1; i <= 4; i++) {
    diag_error(&d, (Loc){"f", i, 1, 1}, "e%d", i);
    diag_note(&d, (Loc){"f", i, 1, 1}, "n%d", i);
  }
  fclose(mem);
  assert_int_equal(d.errors, 4);
  assert_string_equal(out, "f:1:1: error: e1\n"
                           "f:1:1: note: n1\n"
                           "f:2:1: error: e2\n"
                           "f:2:1: note: n2\n"
                           "f: error: too many errors; only the first 2 are shown\n");
  free(out);
}

/* compile(): every pass reports, in line order, at most 20 errors. */
static void test_compile_reports_all_passes_in_line_order(void **state) {
  (void)state;
  Arena a = {0};
  char *msgs;
  int errors;
  const char *src = "input 8x8x1\n"
                    "conv2d 2 3x3 rleu\n" /* lower */
                    "dense 4\n"           /* shape: needs a vector */
                    "dense 2 = 3\n"       /* syntax */
                    "train {\n"
                    "  epochs 0\n" /* lower, train block */
                    "}\n";
  assert_null(tu_compile(&a, "t.cnn", src, strlen(src), &msgs, &errors));
  assert_int_equal(errors, 4);
  const char *want[] = {"t.cnn:2:14: error: unknown activation 'rleu'",
                        "t.cnn:3:1: error: dense needs a vector input but gets 6x6x2",
                        "t.cnn:4:9: error: expected an argument",
                        "t.cnn:6:10: error: the number of epochs must be at least 1"};
  const char *at = msgs;
  for (int i = 0; i < 4; i++) {
    const char *p = strstr(at, want[i]);
    if (!p)
      fail_msg("expected \"%s\" after the previous message in:\n%s", want[i], msgs);
    at = p + 1;
  }
  free(msgs);

  /* 30 bad lines: the first 20 and one line more. */
  char big[2048] = "input 4x4x1\nflatten\n";
  for (int i = 0; i < 30; i++)
    strcat(big, i % 2 ? "dense 0\n" : "dense 1 @\n");
  assert_null(tu_compile(&a, "t.cnn", big, strlen(big), &msgs, &errors));
  assert_int_equal(errors, 30);
  int shown = 0;
  for (const char *p = msgs; (p = strstr(p, "t.cnn:")) != NULL; p++)
    shown += p[6] >= '0' && p[6] <= '9';
  assert_int_equal(shown, 20);
  assert_contains(msgs, "t.cnn:22:");
  assert_null(strstr(msgs, "t.cnn:23:"));
  assert_contains(msgs, "\nt.cnn: error: too many errors; only the first 20 are shown\n");
  free(msgs);
  arena_free(&a);
}

/* ---- robustness ---- */

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Every "t.cnn:L:C: " that the messages name lies inside the source (C may
   be one past the end of the line). */
static void check_locations(const char *msgs, const char *src, size_t len) {
  for (const char *p = msgs; (p = strstr(p, "t.cnn:")) != NULL; p++) {
    int line, col;
    if (sscanf(p, "t.cnn:%d:%d:", &line, &col) != 2)
      continue;
    const char *s = src, *end = src + len;
    for (int l = 1; l < line; l++) {
      s = memchr(s, '\n', (size_t)(end - s));
      assert_non_null(s);
      s++;
    }
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    long linelen = (nl ? nl : end) - s;
    assert_true(line >= 1 && col >= 1 && col <= linelen + 1);
  }
}

static void test_parser_survives_garbage(void **state) {
  (void)state;
  static const char *const pieces[] = {
      "{",     "}",       "=",        ",",       "\n",         "#",        " ",
      "3x3",   "0",       "-1",       "1e999",   "relu",       "softmax",  "train",
      "input", "28x28x1", "\xc3\x97", "stride=", "name=conv1", "dense 10", "flatten\n",
      "\t",    "\r",      "loss",     "1,2",     ".",          "x",        "\xff"};
  size_t base_len;
  char *base = read_text("examples/fashion.cnn", &base_len);
  assert_non_null(base);
  char *buf = malloc(base_len + 4096);
  for (int iter = 0; iter < 400; iter++) {
    size_t len;
    if (iter % 8 == 0) { /* random bytes, NULs included */
      len = rng() % 600;
      for (size_t i = 0; i < len; i++)
        buf[i] = (char)(rng() & 0xFF);
    } else { /* the example with a few pieces inserted, bytes changed or cut */
      memcpy(buf, base, base_len);
      len = base_len;
      for (int k = 1 + (int)(rng() % 5); k > 0; k--) {
        size_t at = rng() % (len + 1);
        int what = (int)(rng() % 3);
        if (what == 0) {
          const char *p = pieces[rng() % (sizeof pieces / sizeof *pieces)];
          size_t n = strlen(p);
          memmove(buf + at + n, buf + at, len - at);
          memcpy(buf + at, p, n);
          len += n;
        } else if (what == 1 && at < len) {
          buf[at] = (char)(rng() & 0xFF);
        } else if (at < len) {
          size_t n = rng() % 12;
          n = n > len - at ? len - at : n;
          memmove(buf + at, buf + at + n, len - at - n);
          len -= n;
        }
      }
    }
    Arena a = {0};
    char *msgs;
    tu_compile(&a, "t.cnn", buf, len, &msgs, NULL);
    check_locations(msgs, buf, len);
    free(msgs);
    arena_free(&a);
  }
  free(buf);
  free(base);
}

static void test_parser_long_lines_and_deep_nesting(void **state) {
  (void)state;
  size_t n = 200000;
  char *src = malloc(n + 64);
  Arena a = {0};
  char *msgs;
  int errors;
  /* A 200k-character word, then a 200k-digit number. */
  strcpy(src, "input 2x2x1\n");
  memset(src + 12, 'a', n);
  strcpy(src + 12 + n, " 1\n");
  tu_compile(&a, "t.cnn", src, strlen(src), &msgs, &errors);
  assert_int_equal(errors, 1);
  assert_contains(msgs, "t.cnn:2:1: error: unknown layer 'aaaaaaaaaa");
  free(msgs);
  strcpy(src, "input 2x2x1\nflatten\ndense ");
  memset(src + 26, '9', n);
  strcpy(src + 26 + n, " softmax\n");
  tu_compile(&a, "t.cnn", src, strlen(src), &msgs, &errors);
  assert_int_equal(errors, 1);
  assert_contains(msgs, "t.cnn:3:7: error: the number of units must be at most");
  free(msgs);
  /* Blocks nested far deeper than the parser's stack. */
  size_t depth = 30000, len = 0;
  char *deep = malloc(depth * 4 + 1);
  for (size_t i = 0; i < depth; i++)
    len += (size_t)sprintf(deep + len, "a {\n");
  tu_compile(&a, "t.cnn", deep, len, &msgs, &errors);
  assert_true(errors >= 1);
  free(msgs);
  free(deep);
  free(src);
  arena_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parser_golden_files),
      cmocka_unit_test(test_parser_builds_statements),
      cmocka_unit_test(test_parser_numbers_and_dims),
      cmocka_unit_test(test_parser_last_line_without_newline),
      cmocka_unit_test(test_parser_one_message_per_line),
      cmocka_unit_test(test_parser_broken_lines_stay),
      cmocka_unit_test(test_parser_unclosed_block_ends_with_file),
      cmocka_unit_test(test_lower_train_defaults),
      cmocka_unit_test(test_lower_train_settings),
      cmocka_unit_test(test_lower_layer_fields),
      cmocka_unit_test(test_lower_stride_padding_bias_per_direction),
      cmocka_unit_test(test_lower_layer_names),
      cmocka_unit_test(test_lower_marks_what_it_cannot_read),
      cmocka_unit_test(test_lower_default_network_name),
      cmocka_unit_test(test_diag_format),
      cmocka_unit_test(test_diag_hold_sorts_and_caps),
      cmocka_unit_test(test_diag_cap_without_hold),
      cmocka_unit_test(test_compile_reports_all_passes_in_line_order),
      cmocka_unit_test(test_parser_survives_garbage),
      cmocka_unit_test(test_parser_long_lines_and_deep_nesting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
