/* augment.c: placeholder until its helper lands it. */
typedef int augment_placeholder;
