/*
 * main.c: finds the command and hands it the rest of the arguments.
 *
 *   cnngen NET.cnn ...       no command word: compile
 *   cnngen COMMAND ...       a command from the COMMANDS table (cli.h)
 *   cnngen help [COMMAND], cnngen --help, cnngen --version
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define X_ENTRY(name) &cmd_##name,
static const Command *const commands[] = {COMMANDS(X_ENTRY)};
#undef X_ENTRY
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void print_overview(FILE *out) {
  fputs("cnngen - compile convolutional image classifiers to C\n"
        "\n"
        "Usage:\n"
        "  cnngen NET.cnn [-o NET.c] [options]   compile (the same as 'cnngen compile')\n"
        "  cnngen COMMAND [options] ARGS...\n"
        "  cnngen help COMMAND                   the manual of one command\n"
        "  cnngen --version\n"
        "\n"
        "cnngen reads a network described in a small text language (.cnn), checks\n"
        "every shape, and emits specialized C for inference and training. The C is\n"
        "run in-process (--backend tcc: libtcc, or cc: the system compiler) or\n"
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
        "  --backend B       auto (default), tcc or cc\n"
        "  --threads N       1 to 256 (default: the number of CPUs)\n"
        "\n"
        "Examples:\n"
        "  cnngen check examples/fashion.cnn\n"
        "  cnngen examples/fashion.cnn -o fashion.c\n"
        "  cnngen eval examples/fashion.cnn --weights fashion.safetensors\n"
        "\n"
        "Exit status: 0 success, 1 user error (bad file, option or shape), 2 internal error.\n"
        "See 'cnngen help COMMAND' for each command's options.\n",
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
  const Command *cmd = find_command(argv[0]);
  if (!cmd)
    return unknown_command(argv[0]);
  fputs(cmd->help, stdout);
  return 0;
}

static int run(const Command *cmd, int argc, char **argv) {
  CliArgs a;
  int status = cli_parse(cmd, argc, argv, &a);
  if (status)
    return status < 0 ? 0 : status;
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
    return run(cmd, argc - 2, argv + 2);
  if (looks_like_network(word))
    return run(&cmd_compile, argc - 1, argv + 1);
  return unknown_command(word);
}
