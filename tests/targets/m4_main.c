/*
 * m4_main.c: the smallest program around the generated inference C of a
 * network written with `--name net`, for sizing it on a Cortex-M4
 * (tests/test_targets.c links it with newlib's nosys stubs, no board
 * needed, and reads the sizes with arm-none-eabi-size and -nm).
 *
 * One image through net_infer, the top class left in a volatile so that
 * nothing is optimized away. The model (when not baked) and the work struct
 * are statics (model.h), so RAM is .data + .bss plus the stack.
 */
#include "model.h"

static float image[net_INPUT_SIZE];
static float out[net_OUTPUT_SIZE];
volatile int net_class;

int main(void) {
  int i, best = 0;
  MODEL_INIT();
  for (i = 0; i < net_INPUT_SIZE; i++)
    image[i] = (float)(i % 7) / 7.0f;
  net_infer(MODEL, &work, image, 1, out);
  for (i = 1; i < net_OUTPUT_SIZE; i++)
    if (out[i] > out[best])
      best = i;
  net_class = best;
  return 0;
}
