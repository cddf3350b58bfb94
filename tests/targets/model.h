/*
 * model.h: the model and work struct that the drivers in tests/targets run,
 * for the generated C of a network written with `--name net`. Built with
 * -DBAKED, MODEL is the baked weights, net_trained (const: flash on a
 * microcontroller; the C written with --weights); otherwise a static model
 * that MODEL_INIT() fills by net_init(m, 1), seeded Glorot-uniform weights
 * that are the same on every target.
 */
#include "net.h"

#ifdef BAKED
#define MODEL (&net_trained)
#define MODEL_INIT() ((void)0)
#else
static net_model model;
#define MODEL (&model)
#define MODEL_INIT() net_init(&model, 1)
#endif
static net_work work;
