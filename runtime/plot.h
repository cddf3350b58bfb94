/*
 * plot.h: training curves. `cnngen train --log FILE.csv` keeps one
 * EpochStats per epoch; `--plot FILE.png` (or `.svg`) draws them with
 * plot_write: loss (training and test) and accuracy (training and test)
 * against the epoch, with axes, ticks and a legend.
 */
#ifndef CNNGEN_PLOT_H
#define CNNGEN_PLOT_H

#include <stdbool.h>

#include "err.h"
#include "formats/trainlog.h"

/* True when path names a format plot_write can draw (.png or .svg, any case). */
bool plot_format_ok(const char *path);

/* Draws rows[0..n) into path (PNG or SVG by its suffix), written atomically;
   `title` (the network's name) heads the picture. Returns 0, or -1 with e. */
int plot_write(const char *path, const char *title, const EpochStats *rows, int n, Err *e);

#endif
