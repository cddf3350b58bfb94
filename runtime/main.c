/*
 * main.c: finds the command and hands it the rest of the arguments.
 *
 *   cnngen NET.cnn ...       no command word: compile
 *   cnngen COMMAND ...       a command from the COMMANDS table (cli.h)
 *   cnngen help [COMMAND | language], cnngen --help, cnngen --version
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define X_ENTRY(name) &cmd_##name,
static const Command *const commands[] = {COMMANDS(X_ENTRY)};
#undef X_ENTRY
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

/* `cnngen help language`: the short form of docs/language.md. test_cli checks
   that both name every word lower.c gives a meaning to (lower_words). */
static const char language_help[] =
    "The .cnn language in short (the full reference: docs/language.md)\n"
    "\n"
    "One statement per line; '#' starts a comment; keywords are lowercase.\n"
    "N: a whole number, F: a number, KHxKW: a size (3 means 3x3), ACT: an activation\n"
    "(linear relu sigmoid tanh softmax). Options are key=value, no spaces around '='.\n"
    "\n"
    "statement                                      default\n"
    "  network NAME                                 the file's base name\n"
    "      a C identifier, the prefix of every generated symbol (see compile --name)\n"
    "  input HxWxC                                  required, once, before the layers\n"
    "      e.g. 28x28x1; pixels are fed as byte / 255 in H, W, C order\n"
    "  classes NAME...                              none\n"
    "      the outputs' names in order, one per output; quote a name that is not\n"
    "      a word: classes \"T-shirt/top\" Trouser ... \"Ankle boot\"\n"
    "\n"
    "layers, in order                               default\n"
    "  conv2d N KHxKW [stride=S|SHxSW] [padding=P] [groups=G] [bias=false] [ACT]\n"
    "         [name=NAME]\n"
    "      N filters and biases                     stride=1 padding=valid linear\n"
    "      padding: valid (none), same (output ceil(H/SH) x ceil(W/SW)), P pixels\n"
    "      on every side, or PHxPW (PH above and below, PW left and right)\n"
    "      bias=false: no bias tensor (bias=true is the default)\n"
    "      groups=G: channels and filters in G groups, each filter seeing its\n"
    "      group's C/G channels (G divides C and N; G = C is depthwise)\n"
    "  maxpool KHxKW [stride=S|SHxSW]               stride = window, in each\n"
    "  avgpool KHxKW [stride=S|SHxSW]                 direction; floor, no padding\n"
    "  globalavgpool                                mean over H, W: a vector of C\n"
    "  flatten                                      HxWxC to a vector (c*H*W+y*W+x)\n"
    "  dense N [bias=false] [ACT] [name=NAME]       on a vector: N units; linear\n"
    "  batchnorm [momentum=F] [eps=F] [name=NAME]   per channel (per element on a\n"
    "      vector), PyTorch's; momentum 0.1, eps 1e-5; folded into a linear conv or\n"
    "      dense right before it for inference; trained on the batch's statistics\n"
    "  dropout F                                    rate 0 <= F < 1, training only\n"
    "  relu | sigmoid | tanh | softmax              an activation as its own layer\n"
    "  activation ACT                               the same, spelled out\n"
    "  residual { LAYERS [shortcut { LAYERS }] }    y = main(x) + shortcut(x); the\n"
    "      shortcut is x unless a shortcut { } (the block's last statement) gives\n"
    "      its layers; both paths end in one shape; blocks nest\n"
    "  softmax: the last layer only, on a vector. Weights (safetensors): conv1.weight\n"
    "  [F][C][KH][KW], conv1.bias [F], dense1.weight [OUT][IN], dense1.bias [OUT],\n"
    "  ... numbered per kind, or name=NAME (no .bias with bias=false); or a raw .f32\n"
    "  file as NAME_store writes.\n"
    "\n";
/* Two strings: C99 promises string literals of 4095 bytes, no more. */
static const char language_help_train[] =
    "train { one setting per line }                 default, also with no train block\n"
    "  loss sparse_categorical_crossentropy         sparse_categorical_crossentropy\n"
    "     | categorical_crossentropy                  (these two need softmax)\n"
    "     | binary_crossentropy | mse                 (this one sigmoid)\n"
    "  optimizer adam [lr=F] [beta1=F] [beta2=F] [eps=F] [weight_decay=F]\n"
    "                                               adam lr=0.001 beta1=0.9\n"
    "                                                 beta2=0.999 eps=1e-7\n"
    "  optimizer sgd [lr=F] [momentum=F] [nesterov] [weight_decay=F]\n"
    "                                               sgd: lr=0.01 momentum=0\n"
    "  batch N                                      32\n"
    "  epochs N                                     5\n"
    "  seed N                                       1\n"
    "  augment [hflip] [vflip] [crop=N] [shift=N] [rotate=F] [noise=F]\n"
    "                                               none (applied in this order)\n"
    "  class_weights balanced | w0,w1,...           none (every image weighs 1)\n"
    "  label_smoothing F                            0; 0 <= F < 1, cross-entropy\n"
    "                                                 only: (1-F)*onehot + F/K\n"
    "  schedule constant | step every=E gamma=G | cosine [min_lr=F]\n"
    "                                               constant; each takes warmup=E:\n"
    "      step: lr*G^floor(epoch/E); cosine: per step t of T, min_lr + (lr-min_lr)\n"
    "      *(1+cos(pi*t/T))/2; warmup: the first E epochs' W steps at lr*(t+1)/W,\n"
    "      then the schedule over the rest\n"
    "  validation F                                 none; 0 < F < 1: the last\n"
    "                                                 round(F*N) training images\n"
    "                                                 held out, scored each epoch\n"
    "  early_stopping patience=P [min_delta=F]      none; needs validation: stop\n"
    "      after P epochs whose validation loss is not below the best by more than\n"
    "      F (default 0); the best epoch's weights are written\n"
    "  train --epochs/--batch/--seed override batch, epochs and seed.\n"
    "\n"
    "Errors: FILE:LINE:COL: error: MESSAGE, the line and a caret; several per run;\n"
    "exit status 1 and nothing written. 'cnngen check NET.cnn' shows each layer.\n";

static void print_overview(FILE *out) {
  fputs("cnngen - compile convolutional image classifiers to C\n"
        "\n"
        "Usage:\n"
        "  cnngen NET.cnn [-o NET.c] [options]   compile (the same as 'cnngen compile')\n"
        "  cnngen COMMAND [options] ARGS...\n"
        "  cnngen help COMMAND                   the manual of one command\n"
        "  cnngen help language                  the .cnn language in short\n"
        "  cnngen --version\n"
        "\n"
        "cnngen reads a network described in a small text language (.cnn), checks\n"
        "every shape, and emits specialized C for inference and training. The C is\n"
        "run in-process (--backend tcc: libtcc; cc: the system compiler; cc-kernels:\n"
        "the system compiler for the glue around cnngen's prebuilt kernels) or\n"
        "written out to be built into another program.\n"
        "\n"
        "Commands:\n",
        out);
  for (int i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
  fputs("\n"
        "Options common to the commands that run a network:\n"
        "  --weights W       weights file: safetensors (PyTorch layout), or W.f32, the\n"
        "                    raw little-endian floats that NAME_store writes\n"
        "  --backend B       auto (default), tcc, cc or cc-kernels\n"
        "  --threads N       1 to 256 (default: the number of CPUs)\n"
        "\n"
        "Examples:\n"
        "  cnngen check examples/fashion.cnn\n"
        "  cnngen examples/fashion.cnn -o fashion.c\n"
        "  cnngen eval examples/fashion.cnn --weights fashion.safetensors\n"
        "\n"
        "Exit status: 0 success, 1 user error (bad file, option or shape), 2 internal error.\n"
        "See 'cnngen help COMMAND' for each command's options, 'cnngen help language'\n"
        "for the .cnn language (in full: docs/language.md).\n",
        out);
}

static const Command *find_command(const char *name) {
  for (int i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

static int unknown_command(const char *word) {
  const char *names[NCOMMANDS];
  for (int i = 0; i < NCOMMANDS; i++)
    names[i] = commands[i]->name;
  const char *near = cli_suggest(word, names, NCOMMANDS);
  if (near)
    return cli_usage_error("unknown command '%s' (did you mean '%s'?)", word, near);
  return cli_usage_error("unknown command '%s' (commands: see 'cnngen --help'; to compile a "
                         "network, name its .cnn file)",
                         word);
}

static int help(int argc, char **argv) {
  if (argc == 0) {
    print_overview(stdout);
    return 0;
  }
  if (strcmp(argv[0], "language") == 0) {
    fputs(language_help, stdout);
    fputs(language_help_train, stdout);
    return 0;
  }
  const Command *cmd = find_command(argv[0]);
  if (!cmd)
    return unknown_command(argv[0]);
  fputs(cmd->help, stdout);
  return 0;
}

static int run(const Command *cmd, const char *program, int argc, char **argv) {
  CliArgs a;
  int status = cli_parse(cmd, argc, argv, &a);
  if (status)
    return status < 0 ? 0 : status;
  a.program = program;
  status = cmd->run(&a);
  cli_args_free(&a);
  if (fflush(stdout) != 0 || ferror(stdout))
    return cli_usage_error("cannot write to standard output (disk full or closed?)");
  return status;
}

/* A first word that is no command but names a network: `cnngen NET.cnn`. */
static bool looks_like_network(const char *word) {
  size_t n = strlen(word);
  struct stat st;
  return word[0] == '-' || (n > 4 && strcmp(word + n - 4, ".cnn") == 0) ||
         (stat(word, &st) == 0 && S_ISREG(st.st_mode));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs("usage: cnngen NET.cnn [-o NET.c] | cnngen COMMAND ... (see 'cnngen --help')\n", stderr);
    return 1;
  }
  const char *word = argv[1];
  if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0)
    return help(0, NULL);
  if (strcmp(word, "help") == 0)
    return help(argc - 2, argv + 2);
  if (strcmp(word, "--version") == 0 || strcmp(word, "-V") == 0) {
    printf("cnngen %s\n", CNNGEN_VERSION);
    return 0;
  }
  const Command *cmd = find_command(word);
  if (cmd)
    return run(cmd, argv[0], argc - 2, argv + 2);
  if (looks_like_network(word))
    return run(&cmd_compile, argv[0], argc - 1, argv + 1);
  return unknown_command(word);
}
