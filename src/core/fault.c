/* Test-only fault injection: DD_FAULT=KIND@RANK:STEP[,...] makes a rank fail in a chosen way at a chosen step. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddtrain/core.h"

enum { MAX_FAULTS = 16 };

static struct {
  int parsed, n;
  struct {
    char kind[16];
    int rank;
    long long step;
    int fired;
  } f[MAX_FAULTS];
} g_faults;

static void parse(void) {
  g_faults.parsed = 1;
  const char *v = getenv("DD_FAULT");
  if (!v)
    return;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && g_faults.n < MAX_FAULTS;
       t = strtok_r(NULL, ",", &save)) {
    char kind[16];
    int rank;
    long long step;
    if (sscanf(t, "%15[a-z]@%d:%lld", kind, &rank, &step) != 3)
      continue;
    snprintf(g_faults.f[g_faults.n].kind, sizeof g_faults.f[0].kind, "%s", kind);
    g_faults.f[g_faults.n].rank = rank;
    g_faults.f[g_faults.n].step = step;
    g_faults.n++;
  }
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

bool dd_fault(const char *kind, int rank, int64_t step) {
  pthread_once(&g_once, parse);
  for (int i = 0; i < g_faults.n; i++)
    if (!g_faults.f[i].fired && g_faults.f[i].rank == rank && g_faults.f[i].step == step &&
        strcmp(g_faults.f[i].kind, kind) == 0) {
      g_faults.f[i].fired = 1;
      return true;
    }
  return false;
}
