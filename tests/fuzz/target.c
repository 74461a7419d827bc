/* What the fuzz targets share: MPI once, a scratch directory, input files, and the checks after
 * every input (the error message is one line; no HDF5 object stays open). */
#define _GNU_SOURCE /* mkdtemp */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddtrain/core.h"
#include "ddtrain/data.h"
#include "fuzz.h"

uint64_t dd_fuzz_feature;

/* sanitizer defaults for every target, with either driver (the environment's ASAN_OPTIONS still
 * win): an allocation past 1 GiB that a crafted size asks for (HDF5 asks for 384 GiB for a crafted
 * object header) fails as malloc does; it is not a finding by itself */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1:max_allocation_size_mb=1024";
}

static dd_comm *g_comm;
static char g_dir[512];
static int64_t g_objects; /* HDF5 objects open at rest (the library's own) */

static void cleanup(void) {
  char cmd[600];
  if (g_dir[0]) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
      fprintf(stderr, "fuzz: could not remove %s\n", g_dir);
  }
  dd_comm_finalize(g_comm);
  g_comm = NULL;
}

void dd_fuzz_init(void) {
  if (g_comm)
    return;
  int argc = 1;
  static char prog[] = "ddtrain-fuzz";
  static char *args[] = {prog, NULL};
  char **argv = args;
  if (dd_comm_init(&argc, &argv, &g_comm)) {
    fprintf(stderr, "fuzz: %s\n", dd_error_message());
    abort();
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/ddtrain-fuzz.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    perror("fuzz: mkdtemp");
    abort();
  }
  atexit(cleanup);
  dd_error_clear();
  g_objects = dd_data_open_objects();
}

dd_comm *dd_fuzz_comm(void) {
  return g_comm;
}

const char *dd_fuzz_dir(void) {
  return g_dir;
}

int dd_fuzz_write(const char *path, const uint8_t *data, size_t size) {
  unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  size_t done = 0;
  while (done < size) {
    ssize_t w = write(fd, data + done, size - done);
    if (w <= 0) {
      close(fd);
      return -1;
    }
    done += (size_t)w;
  }
  return close(fd);
}

void dd_fuzz_step(int status) {
  /* the message's words, not its numbers: "chunk 17 of 'x'" and "chunk 18 of 'x'" are one behaviour */
  uint64_t h = dd_hash3(dd_fuzz_feature, (uint64_t)(int64_t)status, 0x66757a7aULL);
  const char *m = dd_error_message();
  if (strchr(m, '\n')) {
    fprintf(stderr, "fuzz: an error message spans lines: %s\n", m);
    abort();
  }
  const size_t dir_n = strlen(g_dir);
  for (const char *p = m; *p; p++) {
    if (dir_n && strncmp(p, g_dir, dir_n) == 0) { /* the scratch directory's name is new in every worker */
      p += dir_n - 1;
      continue;
    }
    if ((*p < '0' || *p > '9') && *p != '-')
      h = dd_hash3(h, (uint64_t)(unsigned char)*p, 1);
  }
  dd_fuzz_feature = h;
  dd_error_clear();
}

void dd_fuzz_done(void) {
  int64_t now = dd_data_open_objects();
  if (now != g_objects) {
    fprintf(stderr,
            "fuzz: %lld HDF5 object(s) left open by this input (%lld at rest): an error path does not close "
            "what it opened\n",
            (long long)(now - g_objects), (long long)g_objects);
    abort();
  }
}
