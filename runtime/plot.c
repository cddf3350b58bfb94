/* plot.c: placeholder until its helper lands it. */
typedef int plot_placeholder;
