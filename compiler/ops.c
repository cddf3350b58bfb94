#include "ops.h"

#include <string.h>

#define X_WORD(e, w, ...) [e] = w,
#define X_WORD2(e, w) [e] = w,
#define X_MODULE(e, w, module) [e] = &module,
#define X_TAKES(e, w, takes) [e] = takes,

const char *const op_words[OP_COUNT] = {OPS(X_WORD)};
const char *const act_words[ACT_COUNT] = {ACTS(X_WORD2)};
const char *const loss_words[LOSS_COUNT] = {LOSSES(X_WORD2)};
const char *const optimizer_words[OPT_COUNT] = {OPTIMIZERS(X_WORD2)};
const char *const schedule_words[SCHED_COUNT] = {SCHEDULES(X_WORD2)};
const char *const augment_words[AUG_COUNT] = {AUGMENTS(X_WORD)};
const OpModule *const op_modules[OP_COUNT] = {OPS(X_MODULE)};
const unsigned char augment_takes_value[AUG_COUNT] = {AUGMENTS(X_TAKES)};

int word_lookup(const char *const *words, int count, const char *word) {
  for (int i = 0; i < count; i++)
    if (words[i] && strcmp(words[i], word) == 0)
      return i;
  return -1;
}
