/* The one allocation path: overflow-checked, zeroed, aligned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/core.h"

void *dd_alloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) {
    dd_error(DD_ENOMEM, "allocation of %zu x %zu bytes overflows size_t", n, size);
    return NULL;
  }
  size_t bytes = n * size;
  /* aligned_alloc needs a multiple of the alignment */
  size_t rounded = (bytes + DD_ALIGN - 1) / DD_ALIGN * DD_ALIGN;
  if (rounded < bytes) {
    dd_error(DD_ENOMEM, "allocation of %zu bytes overflows size_t", bytes);
    return NULL;
  }
  if (rounded == 0)
    rounded = DD_ALIGN;
  void *p = aligned_alloc(DD_ALIGN, rounded);
  if (!p) {
    dd_error(DD_ENOMEM,
             "out of memory allocating %.1f MiB; use a smaller model, batch "
             "or dataset, or more memory per rank",
             (double)bytes / (1024.0 * 1024.0));
    return NULL;
  }
  memset(p, 0, rounded);
  return p;
}

void dd_free(void *p) {
  free(p);
}

char *dd_strdup(const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = dd_alloc(n, 1);
  if (d)
    memcpy(d, s, n);
  return d;
}
