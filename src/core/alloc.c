/* The one allocation path (overflow-checked, zeroed, aligned) and small OS helpers. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int dd_mkdirs(const char *dir, const char *what) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char keep = *p;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return dd_error(DD_EIO, "cannot create directory '%s' (%s): %s", buf, what, strerror(errno));
    if (!keep)
      break;
    *p = keep;
  }
  return DD_OK;
}

int dd_mkdirs_for(const char *path, const char *what) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir)
    return DD_OK;
  *slash = '\0';
  return dd_mkdirs(dir, what);
}

bool dd_mul_overflows(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    return true;
  *out = r;
  return false;
}
