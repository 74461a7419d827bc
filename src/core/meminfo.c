/* How much memory this process may use: the node's available memory shared
 * by its ranks, the memory cgroup's room (v2 memory.max, v1
 * memory.limit_in_bytes) and the address-space limit, whichever is least. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "ddtrain/core.h"

/* A number from a file of one number (cgroup files); NAN if absent or "max". */
static double read_number(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NAN;
  char buf[64] = "";
  double v = NAN;
  if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) {
    unsigned long long u;
    if (sscanf(buf, "%llu", &u) == 1)
      v = (double)u;
  }
  fclose(f);
  return v;
}

/* key's value in kB from /proc/meminfo or /proc/self/status, in bytes; NAN if absent */
static double read_kb(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NAN;
  char line[256];
  double v = NAN;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0 && line[n] == ':') {
      unsigned long long kb;
      if (sscanf(line + n + 1, "%llu", &kb) == 1)
        v = (double)kb * 1024.0;
      break;
    }
  fclose(f);
  return v;
}

/* The directory of this process's memory cgroup (v2: the unified one; v1: the
 * memory controller's), or "" */
static void cgroup_dir(char *dir, size_t n, int *v2) {
  dir[0] = '\0';
  *v2 = 0;
  FILE *f = fopen("/proc/self/cgroup", "r");
  if (!f)
    return;
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
    if (!b)
      continue;
    *a = '\0';
    *b = '\0';
    const char *ctrl = a + 1, *path = b + 1;
    if (strcmp(line, "0") == 0 && ctrl[0] == '\0') {
      char probe[1200];
      snprintf(probe, sizeof probe, "/sys/fs/cgroup%s/memory.max", path);
      FILE *p = fopen(probe, "r");
      if (p) {
        fclose(p);
        snprintf(dir, n, "/sys/fs/cgroup%s", strcmp(path, "/") == 0 ? "" : path);
        *v2 = 1;
      }
    } else if (strstr(ctrl, "memory")) {
      snprintf(dir, n, "/sys/fs/cgroup/memory%s", strcmp(path, "/") == 0 ? "" : path);
      *v2 = 0;
      break;
    }
  }
  fclose(f);
}

double dd_mem_budget(int local_ranks, char *why, size_t n) {
  if (local_ranks < 1)
    local_ranks = 1;
  const double MiB = 1024.0 * 1024.0;
  double best = INFINITY;
  why[0] = '\0';
  double avail = read_kb("/proc/meminfo", "MemAvailable");
  if (isfinite(avail)) {
    best = avail / local_ranks;
    snprintf(why, n, "the node's available memory, %.0f MiB, shared by %d rank(s) on it", avail / MiB, local_ranks);
  }
  char dir[1100];
  int v2;
  cgroup_dir(dir, sizeof dir, &v2);
  if (dir[0]) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
    double lim = read_number(p);
    snprintf(p, sizeof p, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
    double used = read_number(p);
    /* v1 says "no limit" with a huge number (LONG_MAX rounded to pages) */
    if (isfinite(lim) && lim < 1e18 && isfinite(used)) {
      double room = (lim > used ? lim - used : 0) / local_ranks;
      if (room < best) {
        best = room;
        snprintf(why, n, "the memory cgroup's limit, %.0f MiB (%s), of which %.0f MiB are free, shared by %d rank(s)",
                 lim / MiB, v2 ? "memory.max" : "memory.limit_in_bytes", (lim > used ? lim - used : 0) / MiB,
                 local_ranks);
      }
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    double vm = read_kb("/proc/self/status", "VmSize");
    double room = (double)rl.rlim_cur - (isfinite(vm) ? vm : 0);
    if (room < 0)
      room = 0;
    if (room < best) {
      best = room;
      snprintf(why, n, "the address-space limit (ulimit -v) of %.0f MiB, of which %.0f MiB are unused",
               (double)rl.rlim_cur / MiB, room / MiB);
    }
  }
  return best;
}
