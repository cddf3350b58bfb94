#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int err_set(Err *e, const char *path, const char *fmt, ...) {
  int n = 0;
  if (path)
    n = snprintf(e->msg, sizeof e->msg, "%s: ", path);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}
