/* cmd_explain.c: placeholder until `cnngen explain` lands. */
#include "cli.h"

static int run(const CliArgs *a) {
  (void)a;
  return cli_usage_error("explain is not implemented yet");
}

const Command cmd_explain = {
    .name = "explain",
    .summary = "why the network chose a class: a saliency or Grad-CAM heat map",
    .help = "usage: cnngen explain NET.cnn --weights W IMAGE --out MAP.png\n",
    .options = OPT(CLI_WEIGHTS) | OPT(CLI_OUT) | OPT(CLI_METHOD) | OPT(CLI_CLASS) |
               OPT(CLI_BACKEND) | OPT(CLI_THREADS),
    .required = OPT(CLI_WEIGHTS) | OPT(CLI_OUT),
    .min_args = 2,
    .max_args = 2,
    .run = run,
};
