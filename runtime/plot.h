/*
 * plot.h: training curves. `cnngen train --log FILE.csv` keeps one
 * EpochStats per epoch; `--plot FILE.png` (or `.svg`) draws them with
 * plot_write: loss and accuracy (training, validation where the rows have
 * it, and test) against the epoch, with axes, ticks and a legend.
 */
#ifndef CNNGEN_PLOT_H
#define CNNGEN_PLOT_H

#include <stdbool.h>

#include "err.h"
#include "formats/image.h"
#include "formats/trainlog.h"

/* True when path names a format plot_write can draw (.png or .svg, any case). */
bool plot_format_ok(const char *path);

/* Draws rows[0..n) into path (PNG or SVG by its suffix), written atomically;
   `title` (the network's name) heads the picture. Returns 0, or -1 with e. */
int plot_write(const char *path, const char *title, const EpochStats *rows, int n, Err *e);

/* Text in the plots' bitmap font (5x8, printable ASCII; anything else a
   '?'), enlarged `scale` times (2 and 3 smoothed), in black onto img with its
   top left corner at (x, y), clipped to the image; and its width. */
void plot_image_text(Image *img, int x, int y, int scale, const char *text);
int plot_text_width(const char *text, int scale);

#endif
