/* cmd_check.c: `cnngen check NET.cnn` parses, checks and prints the summary. */
#include "../compiler/compile.h"
#include "cli.h"

static const char help[] =
    "usage: cnngen check NET.cnn [--dump-ir]\n"
    "\n"
    "Parses and checks a network without generating code, and prints a table:\n"
    "each layer with its source line, output shape, parameters and\n"
    "multiply-accumulates per image, then the totals and the bytes of state\n"
    "that inference and training need, and the classes statement's names.\n"
    "Errors are reported as FILE:LINE:COL: error: MESSAGE with the source\n"
    "line and a caret.\n"
    "\n"
    "Options:\n"
    "  --dump-ir   also print the IR after each compiler pass (before the table)\n"
    "\n"
    "Examples:\n"
    "  cnngen check examples/fashion.cnn\n"
    "  cnngen check net.cnn --dump-ir | less\n"
    "\n"
    "Exit status: 0 the network is valid; 1 it has errors (up to 20 of them are\n"
    "printed, in line order) or the file cannot be read; 2 internal error.\n";

static int run(const CliArgs *a) {
  Arena arena = {0};
  int status = 0;
  Net *net = cli_compile_net(&arena, a->net_path, a->value[CLI_DUMP_IR] ? stdout : NULL, &status);
  if (net) {
    summary_print(net, stdout, "");
    summary_classes(net, stdout, "");
  }
  arena_free(&arena);
  return status;
}

const Command cmd_check = {
    .name = "check",
    .summary = "check a network and print its layers, shapes, parameters and MACs",
    .help = help,
    .options = OPT(CLI_DUMP_IR),
    .min_args = 1,
    .max_args = 1,
    .run = run,
};
