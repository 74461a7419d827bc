/* The in-tree fuzz driver: a main() for a libFuzzer-style target (LLVMFuzzerTestOneInput) that
 * needs neither clang nor libFuzzer, so the bounded run is a CTest test of the GCC ASan+UBSan build.
 *
 *   fuzz_TARGET [options] [FILE|DIR ...]
 *     FILE|DIR         inputs run once each, as they are (a crash found earlier, a corpus)
 *     --regressions D  crash inputs of earlier findings, replayed first: each must run clean (D may
 *                      not exist yet)
 *     --corpus D       seed inputs (valid files); mutated inputs are made from them
 *     --dict F         tokens in libFuzzer's dictionary format, inserted and overwritten by mutations
 *     --runs N         mutated inputs to run (0: replay only)          [env DD_FUZZ_RUNS]
 *     --seconds S      stop mutating after S seconds (0: no limit)     [env DD_FUZZ_SECONDS]
 *     --seed N         the mutations' random seed (default 1)          [env DD_FUZZ_SEED]
 *     --max-len N      longest input (default: twice the longest seed, at least 4096)
 *     --timeout S      one input longer than S seconds is a hang (default 20)
 *     --crash-dir D    where a crashing or hanging input is written (default .)
 *     --save-corpus D  also write the inputs kept for new behaviour there
 *     --keep-going     after a crash, start a new worker and go on (default: stop)
 *     --known-hdf5 F   crash signatures of HDF5 itself (below); such a crash is counted, not failed
 *     --known D        inputs that crash HDF5 itself: replayed, each must run clean or crash as known
 *   The environment overrides --runs, --seconds and --seed, so the CTest command runs longer as is.
 *
 * The inputs run in a worker process forked from this one: it initialises the target once (MPI, a
 * scratch directory) and runs input after input sent over a pipe, answering each with the target's
 * behaviour hash (dd_fuzz_feature). A worker that dies (an ASan or UBSan report, a signal, an abort
 * of a target's own check) or does not answer in time costs this process nothing: the input is
 * saved, the worker's log (its stderr: the sanitizer report) is shown, and the run fails or goes on
 * with a new worker. The same seed, corpus and run count give the same inputs in the same order
 * (there is no coverage feedback, only the behaviour hash, itself a function of the input), so a
 * CI failure replays exactly. At the end the worker exits normally: LeakSanitizer's check of the
 * whole run is its exit status.
 *
 * HDF5 1.10 (Debian 12's libhdf5) has memory errors of its own on crafted metadata (upstream CVEs
 * fixed in later releases) that no check of ddtrain's can reach first. A worker's death counts as
 * one of them, not as a finding, only if the sanitizer report's first frame past the sanitizer and
 * libc is in libhdf5, the frames up to ddtrain's call of the HDF5 API are all in libhdf5, a heap
 * block written past (if any) was allocated by libhdf5, and one of those frames names a function
 * listed in the --known-hdf5 file. Anything else, a crash in ddtrain's code or in a buffer ddtrain passed
 * to HDF5, is a finding; so is any crash of a --regressions input. */
#define _GNU_SOURCE /* pipe2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

typedef struct input {
  uint8_t *data;
  size_t n;
  char name[160];
} input;

typedef struct inputs {
  input *v;
  int n, cap;
} inputs;

static const char *g_prog = "fuzz";

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *xalloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p) {
    fprintf(stderr, "%s: out of memory\n", g_prog);
    exit(2);
  }
  return p;
}

static void add_input(inputs *s, const uint8_t *data, size_t n, const char *name) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    input *nv = xalloc(sizeof *nv * (size_t)s->cap);
    if (s->v)
      memcpy(nv, s->v, sizeof *nv * (size_t)s->n);
    free(s->v);
    s->v = nv;
  }
  input *in = &s->v[s->n++];
  in->data = xalloc(n);
  memcpy(in->data, data, n);
  in->n = n;
  snprintf(in->name, sizeof in->name, "%s", name);
}

static int read_file(const char *path, uint8_t **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  size_t cap = 4096, len = 0;
  uint8_t *buf = xalloc(cap);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      uint8_t *nb = xalloc(2 * cap);
      memcpy(nb, buf, len);
      free(buf);
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  *data = buf;
  *n = len;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* a file, or every regular file of a directory (sorted: the order is part of the seed) */
static void load_path(inputs *s, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "%s: cannot read '%s': %s\n", g_prog, path, strerror(errno));
    exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    uint8_t *d;
    size_t n;
    if (read_file(path, &d, &n)) {
      fprintf(stderr, "%s: cannot read '%s'\n", g_prog, path);
      exit(2);
    }
    add_input(s, d, n, path);
    free(d);
    return;
  }
  DIR *dir = opendir(path);
  if (!dir)
    return;
  char **names = NULL;
  int count = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (e->d_name[0] == '.')
      continue;
    if (count == cap) {
      cap = cap ? 2 * cap : 32;
      char **nn = xalloc(sizeof *nn * (size_t)cap);
      if (names)
        memcpy(nn, names, sizeof *nn * (size_t)count);
      free(names);
      names = nn;
    }
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    names[count] = xalloc(len);
    snprintf(names[count++], len, "%s/%s", path, e->d_name);
  }
  closedir(dir);
  qsort(names, (size_t)count, sizeof *names, by_name);
  for (int i = 0; i < count; i++) {
    if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
      load_path(s, names[i]);
    free(names[i]);
  }
  free(names);
}

/* libFuzzer's dictionary format: name="value" or "value" per line, \\ \" \xNN escapes, # comments */
static void load_dict(inputs *d, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "%s: cannot read dictionary '%s'\n", g_prog, path);
    exit(2);
  }
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    char *q = strchr(line, '"');
    if (line[strspn(line, " \t")] == '#' || !q)
      continue;
    uint8_t tok[2048];
    size_t n = 0;
    for (char *p = q + 1; *p && *p != '"' && n < sizeof tok; p++) {
      if (*p == '\\' && p[1] == 'x' && p[2] && p[3]) {
        char hex[3] = {p[2], p[3], 0};
        tok[n++] = (uint8_t)strtoul(hex, NULL, 16);
        p += 3;
      } else if (*p == '\\' && p[1]) {
        tok[n++] = (uint8_t) * ++p;
      } else {
        tok[n++] = (uint8_t)*p;
      }
    }
    if (n)
      add_input(d, tok, n, "dict");
  }
  fclose(f);
}

/* ---- mutations (splitmix64: the same seed, the same inputs) ---- */

static uint64_t g_rng;

static uint64_t rnd(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static size_t below(size_t n) {
  return n ? (size_t)(rnd() % n) : 0;
}

/* values that cross limits: sizes, signs, the issue's 2^64 + 16 factors, powers of two */
static const uint64_t interesting[] = {0,
                                       1,
                                       2,
                                       3,
                                       4,
                                       7,
                                       8,
                                       16,
                                       32,
                                       64,
                                       100,
                                       127,
                                       128,
                                       255,
                                       256,
                                       1000,
                                       1024,
                                       4096,
                                       32767,
                                       32768,
                                       65535,
                                       65536,
                                       1048576,
                                       1048577,
                                       0x7fffffffULL,
                                       0x80000000ULL,
                                       0xffffffffULL,
                                       0x100000000ULL,
                                       1099510579201ULL,
                                       0x10000000000ULL,
                                       0x4000000000000000ULL,
                                       0x7fffffffffffffffULL,
                                       0x8000000000000000ULL,
                                       0xffffffffffffffffULL,
                                       0xfffffffffffffffeULL};

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void put_int(buf *b, size_t at, int width, uint64_t v, bool big) {
  for (int i = 0; i < width && at + (size_t)i < b->n; i++)
    b->p[at + (size_t)i] = (uint8_t)(v >> (8 * (big ? width - 1 - i : i)));
}

static uint64_t get_int(const buf *b, size_t at, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width && at + (size_t)i < b->n; i++)
    v |= (uint64_t)b->p[at + (size_t)i] << (8 * i);
  return v;
}

static void insert(buf *b, size_t at, const uint8_t *src, size_t len) {
  if (b->n + len > b->cap)
    len = b->cap - b->n;
  memmove(b->p + at + len, b->p + at, b->n - at);
  memcpy(b->p + at, src, len);
  b->n += len;
}

static void mutate_once(buf *b, const inputs *corpus, const inputs *dict) {
  static const int widths[] = {1, 2, 4, 8};
  uint8_t tmp[64];
  const int op = (int)below(b->n ? 11 : 1);
  switch (op) {
  case 0: { /* insert random bytes (the only choice for an empty input) */
    size_t len = 1 + below(8);
    for (size_t i = 0; i < len; i++)
      tmp[i] = (uint8_t)rnd();
    insert(b, below(b->n + 1), tmp, len);
    break;
  }
  case 1: /* flip a bit */
    b->p[below(b->n)] ^= (uint8_t)(1u << below(8));
    break;
  case 2: /* a random byte */
    b->p[below(b->n)] = (uint8_t)rnd();
    break;
  case 3:
  case 4: { /* an interesting integer, little-endian (HDF5) or big (IDX), often aligned */
    int w = widths[below(4)];
    size_t at = below(b->n);
    if (below(2))
      at -= at % (size_t)w;
    put_int(b, at, w, interesting[below(sizeof interesting / sizeof interesting[0])], below(4) == 0);
    break;
  }
  case 5: { /* arithmetic on an integer field */
    int w = widths[below(4)];
    size_t at = below(b->n);
    int64_t delta = (int64_t)below(35) - 17;
    put_int(b, at, w, get_int(b, at, w) + (uint64_t)delta, false);
    break;
  }
  case 6: { /* delete a range */
    size_t at = below(b->n), len = 1 + below(below(2) ? 8 : 128);
    if (len > b->n - at)
      len = b->n - at;
    memmove(b->p + at, b->p + at + len, b->n - at - len);
    b->n -= len;
    break;
  }
  case 7: { /* copy a block elsewhere (overwrite) */
    size_t from = below(b->n), to = below(b->n), len = 1 + below(64);
    if (len > b->n - from)
      len = b->n - from;
    if (len > b->n - to)
      len = b->n - to;
    memmove(b->p + to, b->p + from, len);
    break;
  }
  case 8:
  case 9: { /* a dictionary token, inserted or written over */
    if (!dict->n)
      break;
    const input *t = &dict->v[below((size_t)dict->n)];
    size_t at = below(b->n + 1);
    if (below(2)) {
      insert(b, at, t->data, t->n);
    } else {
      size_t len = t->n < b->n - (at < b->n ? at : b->n) ? t->n : b->n - at;
      if (at < b->n)
        memcpy(b->p + at, t->data, len);
    }
    break;
  }
  default: { /* splice: this input's head, another's tail */
    const input *o = &corpus->v[below((size_t)corpus->n)];
    if (!o->n)
      break;
    size_t cut = below(b->n), from = below(o->n), len = o->n - from;
    if (cut + len > b->cap)
      len = b->cap - cut;
    memcpy(b->p + cut, o->data + from, len);
    b->n = cut + len;
    break;
  }
  }
}

static void mutate(buf *b, const input *base, const inputs *corpus, const inputs *dict) {
  b->n = base->n < b->cap ? base->n : b->cap;
  memcpy(b->p, base->data, b->n);
  int k = 1 + (int)below(below(4) ? 2 : 8);
  for (int i = 0; i < k; i++)
    mutate_once(b, corpus, dict);
}

/* ---- crashes of HDF5 itself ---- */

static char **g_known; /* function names, from the --known-hdf5 file */
static int g_nknown;

static void load_known(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "%s: cannot read '%s'\n", g_prog, path);
    exit(2);
  }
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    size_t n = strcspn(line, " \t\r\n");
    if (line[0] == '#' || n == 0)
      continue;
    line[n] = '\0';
    char **nk = xalloc(sizeof *nk * (size_t)(g_nknown + 1));
    if (g_known)
      memcpy(nk, g_known, sizeof *nk * (size_t)g_nknown);
    free(g_known);
    g_known = nk;
    g_known[g_nknown++] = strdup(line);
  }
  fclose(f);
}

static bool in_hdf5(const char *frame) {
  return strstr(frame, "libhdf5") != NULL;
}

/* sanitizer and libc frames above the code that made the access */
static bool runtime_frame(const char *frame) {
  return strstr(frame, "libsanitizer") || strstr(frame, "/libasan") || strstr(frame, "/libubsan") ||
         strstr(frame, "sysdeps/") || strstr(frame, "/libc.so") || strstr(frame, "__interceptor_") ||
         strstr(frame, "__asan_");
}

/* The known HDF5 function the worker's report puts the crash in, or NULL (see the top of this file). */
static const char *known_hdf5_crash(const char *log) {
  FILE *f = fopen(log, "r");
  if (!f)
    return NULL;
  char line[4096];
  bool report = false, past_runtime = false, hdf5_top = false, above_ours = true, done_first = false;
  bool heap = false, read = false, alloc_stack = false, alloc_seen = false, heap_hdf5 = false;
  const char *found = NULL;
  while (fgets(line, sizeof line, f)) {
    if (!report && strstr(line, "ERROR: AddressSanitizer:")) {
      report = true;
      heap = strstr(line, "heap-buffer-overflow") || strstr(line, "heap-use-after-free");
      continue;
    }
    if (!report)
      continue;
    if (strncmp(line, "READ of size", 12) == 0)
      read = true;
    const bool frame = strncmp(line, "    #", 5) == 0;
    if (!done_first && frame) {
      if (!past_runtime && runtime_frame(line))
        continue;
      if (!past_runtime) {
        past_runtime = true;
        hdf5_top = in_hdf5(line);
      }
      if (above_ours && in_hdf5(line)) {
        for (int i = 0; i < g_nknown && !found; i++)
          if (strstr(line, g_known[i]))
            found = g_known[i];
      } else {
        above_ours = false;
      }
      continue;
    }
    if (past_runtime && !frame)
      done_first = true;
    if (strstr(line, "is located") && strstr(line, "region"))
      alloc_stack = true;
    else if (alloc_stack && frame && !alloc_seen && !runtime_frame(line)) {
      heap_hdf5 = in_hdf5(line);
      alloc_seen = true;
    }
  }
  fclose(f);
  /* a read by HDF5's own decoding far past a block can land nearer one of ddtrain's: what is
   * written out of bounds must be HDF5's own memory */
  return report && hdf5_top && found && (!heap || read || heap_hdf5) ? found : NULL;
}

/* ---- the worker ---- */

typedef struct worker {
  pid_t pid;
  int to, from; /* pipe ends: inputs out, answers in */
  char log[1024];
} worker;

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static int worker_loop(int in, int out, const char *log) {
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  int null = open("/dev/null", O_RDONLY);
  if (fd < 0 || null < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0 || dup2(null, STDIN_FILENO) < 0)
    return 3;
  close(null);
  int argc = 1;
  char *args[] = {(char *)g_prog, NULL}, **argv = args;
  if (LLVMFuzzerInitialize(&argc, &argv) != 0)
    return 3;
  uint8_t ready = 1;
  if (write_all(out, &ready, 1))
    return 3;
  size_t cap = 0;
  uint8_t *data = NULL;
  uint64_t n;
  while (read_all(in, &n, sizeof n) == 0) {
    if (n > cap) {
      free(data);
      cap = (size_t)n;
      data = xalloc(cap);
    }
    if (read_all(in, data, (size_t)n))
      break;
    fflush(stdout);
    if (ftruncate(fd, 0) != 0) /* the log holds the last input's output: its report, if it dies */
      return 3;
    LLVMFuzzerTestOneInput(data, (size_t)n);
    fflush(stdout);
    fflush(stderr);
    if (write_all(out, &dd_fuzz_feature, sizeof dd_fuzz_feature))
      break;
  }
  free(data);
  return 0; /* exit: the atexit handlers, then LeakSanitizer over the whole run */
}

static int start_worker(worker *w, const char *crash_dir) {
  int a[2], b[2];
  if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC))
    return -1;
  snprintf(w->log, sizeof w->log, "%s/%s.log", crash_dir, g_prog);
  fflush(stdout);
  fflush(stderr);
  w->pid = fork();
  if (w->pid < 0)
    return -1;
  if (w->pid == 0) {
    close(a[1]);
    close(b[0]);
    exit(worker_loop(a[0], b[1], w->log));
  }
  close(a[0]);
  close(b[1]);
  w->to = a[1];
  w->from = b[0];
  struct pollfd p = {w->from, POLLIN, 0};
  uint8_t ready;
  if (poll(&p, 1, 300000) != 1 || read_all(w->from, &ready, 1))
    return -1;
  return 0;
}

/* 0: the input ran; 1: the worker died on it; 2: it hung. */
static int run_input(worker *w, const uint8_t *data, size_t n, double timeout, uint64_t *feature, int *status) {
  uint64_t len = n;
  if (write_all(w->to, &len, sizeof len) == 0 && write_all(w->to, data, n) == 0) {
    struct pollfd p = {w->from, POLLIN, 0};
    int r;
    while ((r = poll(&p, 1, (int)(timeout * 1000))) < 0 && errno == EINTR)
      ;
    if (r == 0) {
      kill(w->pid, SIGKILL);
      waitpid(w->pid, status, 0);
      return 2;
    }
    if (read_all(w->from, feature, sizeof *feature) == 0)
      return 0;
  }
  waitpid(w->pid, status, 0);
  return 1;
}

static void stop_worker(worker *w) {
  close(w->to);
  close(w->from);
}

static uint64_t fnv(const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

static void show_log(const char *log) {
  FILE *f = fopen(log, "r");
  if (!f)
    return;
  char *lines[80] = {0};
  char line[2048];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    free(lines[n % 80]);
    lines[n % 80] = strdup(line);
    n++;
  }
  fclose(f);
  printf("--- the worker's last output (%s):\n", log);
  for (int i = n > 80 ? n - 80 : 0; i < n; i++)
    fputs(lines[i % 80] ? lines[i % 80] : "", stdout);
  for (int i = 0; i < 80; i++)
    free(lines[i]);
  printf("---\n");
}

static void save(const char *dir, const char *kind, const uint8_t *data, size_t n, char *path, size_t pn) {
  snprintf(path, pn, "%s/%s-%016llx", dir, kind, (unsigned long long)fnv(data, n));
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n)
    snprintf(path, pn, "(could not be written to %s)", dir);
  if (f)
    fclose(f);
}

/* seen behaviours: open addressing over 64-bit hashes */
typedef struct seen {
  uint64_t *v;
  size_t cap, n;
} seen;

static bool seen_add(seen *s, uint64_t h) {
  if (2 * (s->n + 1) > s->cap) {
    seen g = {xalloc(sizeof(uint64_t) * (s->cap ? 2 * s->cap : 1024)), s->cap ? 2 * s->cap : 1024, 0};
    for (size_t i = 0; i < s->cap; i++)
      if (s->v[i])
        seen_add(&g, s->v[i]);
    free(s->v);
    *s = g;
  }
  h |= 1; /* 0 marks an empty slot */
  for (size_t i = (size_t)(h % s->cap);; i = (i + 1) % s->cap) {
    if (s->v[i] == h)
      return false;
    if (!s->v[i]) {
      s->v[i] = h;
      s->n++;
      return true;
    }
  }
}

static double env_num(const char *name, double def) {
  const char *v = getenv(name);
  return v && *v ? strtod(v, NULL) : def;
}

static void usage(void) {
  fprintf(stderr,
          "usage: %s [--regressions DIR] [--corpus DIR] [--dict FILE] [--runs N] [--seconds S] [--seed N]\n"
          "       [--max-len N] [--timeout S] [--crash-dir DIR] [--save-corpus DIR] [--keep-going] [FILE|DIR ...]\n",
          g_prog);
  exit(2);
}

/* the run's state, global: reachable from a worker too (forked from here), whose leak check at exit
 * would otherwise count the inputs as its own leaks */
static inputs regress, known, seeds, dict;
static seen behaviours;
static buf g_buf;

static void free_inputs(inputs *s) {
  for (int i = 0; i < s->n; i++)
    free(s->v[i].data);
  free(s->v);
  memset(s, 0, sizeof *s);
}

int main(int argc, char **argv) {
  const char *slash = strrchr(argv[0], '/');
  g_prog = slash ? slash + 1 : argv[0];
  double runs = 0, seconds = 0, seed = 1, timeout = 20;
  size_t max_len = 0;
  const char *crash_dir = ".", *save_dir = NULL;
  bool keep_going = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const bool more = i + 1 < argc;
    struct stat st;
    if (strcmp(a, "--regressions") == 0 && more && stat(argv[i + 1], &st) != 0)
      i++; /* no finding yet for this target */
    else if (strcmp(a, "--regressions") == 0 && more)
      load_path(&regress, argv[++i]);
    else if (strcmp(a, "--corpus") == 0 && more)
      load_path(&seeds, argv[++i]);
    else if (strcmp(a, "--dict") == 0 && more)
      load_dict(&dict, argv[++i]);
    else if (strcmp(a, "--runs") == 0 && more)
      runs = strtod(argv[++i], NULL);
    else if (strcmp(a, "--seconds") == 0 && more)
      seconds = strtod(argv[++i], NULL);
    else if (strcmp(a, "--seed") == 0 && more)
      seed = strtod(argv[++i], NULL);
    else if (strcmp(a, "--max-len") == 0 && more)
      max_len = (size_t)strtoull(argv[++i], NULL, 10);
    else if (strcmp(a, "--timeout") == 0 && more)
      timeout = strtod(argv[++i], NULL);
    else if (strcmp(a, "--crash-dir") == 0 && more)
      crash_dir = argv[++i];
    else if (strcmp(a, "--save-corpus") == 0 && more)
      save_dir = argv[++i];
    else if (strcmp(a, "--keep-going") == 0)
      keep_going = true;
    else if (strcmp(a, "--known-hdf5") == 0 && more)
      load_known(argv[++i]);
    else if (strcmp(a, "--known") == 0 && more && stat(argv[i + 1], &st) != 0)
      i++;
    else if (strcmp(a, "--known") == 0 && more)
      load_path(&known, argv[++i]);
    else if (a[0] == '-')
      usage();
    else
      load_path(&regress, a);
  }
  runs = env_num("DD_FUZZ_RUNS", runs);
  seconds = env_num("DD_FUZZ_SECONDS", seconds);
  seed = env_num("DD_FUZZ_SEED", seed);
  if (runs > 0 && seeds.n == 0)
    add_input(&seeds, (const uint8_t *)"", 0, "(empty)");
  for (int i = 0; i < seeds.n; i++)
    if (!max_len || seeds.v[i].n * 2 > max_len)
      max_len = seeds.v[i].n * 2;
  if (max_len < 4096)
    max_len = 4096;
  signal(SIGPIPE, SIG_IGN);
  g_rng = (uint64_t)seed;

  worker w;
  if (start_worker(&w, crash_dir)) {
    fprintf(stderr, "%s: the worker did not start\n", g_prog);
    show_log(w.log);
    return 1;
  }
  const double t0 = now_s();
  g_buf = (buf){xalloc(max_len), 0, max_len};
  long done = 0, mutated = 0, crashes = 0, kept = 0, known_crashes = 0;
  const int nseeds = seeds.n, nfixed = regress.n + known.n + seeds.n;
  for (long k = 0; k < nfixed || mutated < (long)runs; k++) {
    const bool fixed = k < nfixed;
    if (!fixed && seconds > 0 && now_s() - t0 > seconds)
      break;
    const uint8_t *data;
    size_t n;
    const char *what;
    if (fixed) {
      const input *in = k < regress.n             ? &regress.v[k]
                        : k < regress.n + known.n ? &known.v[k - regress.n]
                                                  : &seeds.v[k - regress.n - known.n];
      data = in->data;
      n = in->n;
      what = in->name;
    } else {
      mutate(&g_buf, &seeds.v[below((size_t)seeds.n)], &seeds, &dict);
      data = g_buf.p;
      n = g_buf.n;
      what = "a mutated input";
      mutated++;
    }
    uint64_t feature = 0;
    int status = 0;
    const int r = run_input(&w, data, n, timeout, &feature, &status);
    done++;
    if (r == 0) {
      if (seen_add(&behaviours, feature) && !fixed) {
        add_input(&seeds, data, n, "kept");
        kept++;
        if (save_dir) {
          char p[1200];
          save(save_dir, "kept", data, n, p, sizeof p);
        }
      }
      continue;
    }
    char path[1200];
    const char *sig = r == 1 && k >= regress.n ? known_hdf5_crash(w.log) : NULL;
    if (sig) {
      save(crash_dir, "known-hdf5", data, n, path, sizeof path);
      known_crashes++;
      printf("%s: known crash of HDF5 itself (in %s) on %s; saved as %s; a new worker goes on\n", g_prog, sig, what,
             path);
      fflush(stdout);
      stop_worker(&w);
      if (start_worker(&w, crash_dir))
        return 1;
      continue;
    }
    save(crash_dir, r == 2 ? "timeout" : "crash", data, n, path, sizeof path);
    crashes++;
    if (r == 2)
      printf("%s: HANG: %s ran longer than %g s; saved as %s\n", g_prog, what, timeout, path);
    else if (WIFSIGNALED(status))
      printf("%s: CRASH: signal %d on %s; saved as %s\n", g_prog, WTERMSIG(status), what, path);
    else
      printf("%s: CRASH: the worker exited with status %d on %s; saved as %s\n", g_prog, WEXITSTATUS(status), what,
             path);
    show_log(w.log);
    printf("%s: replay it: %s %s\n", g_prog, argv[0], path);
    fflush(stdout);
    stop_worker(&w);
    if (!keep_going || start_worker(&w, crash_dir))
      return 1;
  }
  const double dt = now_s() - t0;
  stop_worker(&w);
  int status = 0;
  waitpid(w.pid, &status, 0);
  const bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!clean_exit) {
    printf("%s: the worker's exit failed (status %d: LeakSanitizer found leaks, or an error at exit)\n", g_prog,
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    show_log(w.log);
  }
  printf("%s: %ld inputs (%d regressions, %d known HDF5 crashes, %d seeds, %ld mutated, seed %.0f) in %.1f s, %.0f "
         "inputs/s; %zu behaviours, %ld mutated inputs kept; %ld known crash(es) of HDF5 itself, %ld crash(es)\n",
         g_prog, done, regress.n, known.n, nseeds, mutated, seed, dt, dt > 0 ? (double)done / dt : 0.0, behaviours.n,
         kept, known_crashes, crashes);
  free_inputs(&regress);
  free_inputs(&known);
  free_inputs(&seeds);
  free_inputs(&dict);
  free(behaviours.v);
  free(g_buf.p);
  return crashes || !clean_exit ? 1 : 0;
}
