/* Which OpenBLAS kernel set runs here: CPU features, the choice, and the GEMM self-check. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <cblas.h>
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ddtrain/core.h"
#include "ddtrain/tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define DD_X86 1
#else
#define DD_X86 0
#endif

/* Every x86-64 kernel set of OpenBLAS's DYNAMIC_ARCH builds, by the widest
 * instructions it uses (dd_tensor_kernel_level). A name we do not know (a newer
 * OpenBLAS) is never replaced: we cannot tell whether it is weaker. */
static const struct {
  const char *name;
  int level;
} k_sets[] = {
    {"Katmai", DD_KL_SSE},
    {"Coppermine", DD_KL_SSE},
    {"Northwood", DD_KL_SSE},
    {"Banias", DD_KL_SSE},
    {"Athlon", DD_KL_SSE},
    {"Opteron", DD_KL_SSE},
    {"Opteron_SSE3", DD_KL_SSE},
    {"Prescott", DD_KL_SSE},
    {"Core2", DD_KL_SSE},
    {"Penryn", DD_KL_SSE},
    {"Dunnington", DD_KL_SSE},
    {"Nehalem", DD_KL_SSE},
    {"Atom", DD_KL_SSE},
    {"Nano", DD_KL_SSE},
    {"Barcelona", DD_KL_SSE},
    {"Bobcat", DD_KL_SSE},
    {"Sandybridge", DD_KL_AVX},
    {"Bulldozer", DD_KL_AVX},
    {"Piledriver", DD_KL_AVX},
    {"Steamroller", DD_KL_AVX},
    {"Haswell", DD_KL_AVX2},
    {"Zen", DD_KL_AVX2},
    {"Excavator", DD_KL_AVX2},
    {"SkylakeX", DD_KL_AVX512},
    {"Cooperlake", DD_KL_AVX512_BF16},
};

int dd_tensor_kernel_level(const char *name) {
  if (!name)
    return -1;
  for (size_t i = 0; i < sizeof k_sets / sizeof k_sets[0]; i++)
    if (strcasecmp(name, k_sets[i].name) == 0)
      return k_sets[i].level;
  return -1;
}

const char *dd_tensor_kernel_level_name(int level) {
  switch (level) {
  case DD_KL_SSE:
    return "SSE3";
  case DD_KL_AVX:
    return "AVX";
  case DD_KL_AVX2:
    return "AVX2+FMA";
  case DD_KL_AVX512:
    return "AVX-512 (F/BW/VL/DQ/CD)";
  case DD_KL_AVX512_BF16:
    return "AVX-512 with BF16";
  default:
    return "unknown";
  }
}

#if DD_X86
static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
#endif

void dd_tensor_cpu_detect(dd_cpu *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->vendor, sizeof c->vendor, "unknown");
#if DD_X86
  unsigned a, b, cx, d;
  if (!__get_cpuid(0, &a, &b, &cx, &d))
    return;
  unsigned max = a;
  memcpy(c->vendor, &b, 4);
  memcpy(c->vendor + 4, &d, 4);
  memcpy(c->vendor + 8, &cx, 4);
  c->vendor[12] = '\0';
  __get_cpuid(1, &a, &b, &cx, &d);
  unsigned fam = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
  if (fam == 0xf)
    fam += (a >> 20) & 0xff;
  if (fam == 6 || fam >= 0xf)
    model |= ((a >> 16) & 0xf) << 4;
  c->family = (int)fam;
  c->model = (int)model;
  c->avx = cx & (1u << 28);
  c->fma = cx & (1u << 12);
  if (cx & (1u << 27)) { /* OSXSAVE: the OS manages the extended register state */
    uint64_t xcr0 = xgetbv0();
    c->os_avx = (xcr0 & 0x6) == 0x6;      /* XMM + YMM */
    c->os_avx512 = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
  }
  if (max >= 7) {
    __cpuid_count(7, 0, a, b, cx, d);
    unsigned sub = a;
    c->avx2 = b & (1u << 5);
    c->avx512f = b & (1u << 16);
    c->avx512dq = b & (1u << 17);
    c->avx512cd = b & (1u << 28);
    c->avx512bw = b & (1u << 30);
    c->avx512vl = b & (1u << 31);
    if (sub >= 1) {
      __cpuid_count(7, 1, a, b, cx, d);
      c->avx512bf16 = a & (1u << 5);
    }
  }
#endif
}

int dd_tensor_cpu_level(const dd_cpu *c) {
  bool avx = c->avx && c->os_avx, avx2 = avx && c->avx2 && c->fma;
  bool avx512 = avx2 && c->os_avx512 && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq && c->avx512cd;
  if (avx512 && c->avx512bf16)
    return DD_KL_AVX512_BF16;
  if (avx512)
    return DD_KL_AVX512;
  if (avx2)
    return DD_KL_AVX2;
  if (avx)
    return DD_KL_AVX;
  return DD_KL_SSE;
}

/* name is an entry of the comma-separated list (case-insensitive)? */
static bool in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncasecmp(p, name, n) == 0)
      return true;
    p = e ? e + 1 : NULL;
  }
  return false;
}

static bool is_amd(const dd_cpu *c) {
  return strcmp(c->vendor, "AuthenticAMD") == 0 || strcmp(c->vendor, "HygonGenuine") == 0;
}

/* The kernel set of each level for this vendor, strongest first. */
static const char *set_for_level(const dd_cpu *c, int level) {
  switch (level) {
  case DD_KL_AVX512_BF16:
    return "Cooperlake";
  case DD_KL_AVX512:
    return "SkylakeX";
  case DD_KL_AVX2:
    return is_amd(c) ? "Zen" : "Haswell";
  case DD_KL_AVX:
    return is_amd(c) ? "Bulldozer" : "Sandybridge";
  default:
    return NULL;
  }
}

const char *dd_tensor_kernel_choose(const dd_cpu *c, const char *picked, const char *available, const char *rejected) {
  int have = dd_tensor_kernel_level(picked);
  if (have < 0) /* a kernel set we do not know: leave OpenBLAS's choice alone */
    return NULL;
  for (int level = dd_tensor_cpu_level(c); level > have; level--) {
    const char *s = set_for_level(c, level);
    if (s && in_list(available, s) && !in_list(rejected, s))
      return s;
  }
  return NULL;
}

/* ---- the linked OpenBLAS ---- */

const char *dd_tensor_kernel_current(void) {
  const char *n = openblas_get_corename();
  return n && *n ? n : "unknown";
}

void dd_tensor_kernels_available(char *buf, size_t n) {
  buf[0] = '\0';
  /* OPENBLAS_CORETYPE works only in a DYNAMIC_ARCH build; which kernel
   * sets it holds shows in its exported per-core parameter tables
   * (gotoblas_HASWELL, ...). Nothing else tells, and a build without
   * them is left alone. */
  const char *cfg = openblas_get_config();
  if (!cfg || !strstr(cfg, "DYNAMIC_ARCH"))
    return;
  size_t used = 0;
  for (size_t i = 0; i < sizeof k_sets / sizeof k_sets[0]; i++) {
    char sym[64] = "gotoblas_";
    size_t j = strlen(sym);
    for (const char *p = k_sets[i].name; *p && j + 1 < sizeof sym; p++)
      sym[j++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    sym[j] = '\0';
    if (!dlsym(RTLD_DEFAULT, sym))
      continue;
    int w = snprintf(buf + used, n - used, "%s%s", used ? "," : "", k_sets[i].name);
    if (w < 0 || (size_t)w >= n - used)
      break;
    used += (size_t)w;
  }
}

/* ---- self-check: every sgemm variant ddtrain calls against exact integer arithmetic ---- */

/* Shapes (M, N, K): small ones (OpenBLAS's small-matrix kernels), the
 * reference models' layers (MLP output layer, both CNN convolutions as
 * GEMMs, an LSTM gate block), and shapes past the cache blocking in K and M
 * with ragged edges, where packing bugs live; each has more than 100^3
 * multiply-adds, which takes it off the small-matrix path. */
static const int k_shapes[][3] = {{1, 1, 1},      {2, 3, 4},      {7, 13, 9},    {17, 9, 33},
                                  {33, 70, 65},   {64, 10, 512},  {16, 576, 25}, {48, 128, 64},
                                  {32, 128, 400}, {70, 35, 1030}, {1030, 24, 48}};
#define K_BETA_BOTH_MAX (1 << 20) /* beta 0 and 1 below this many multiply-adds, beta 1 above */

static sigjmp_buf k_jmp;
static volatile sig_atomic_t k_sig;
static void on_fault(int sig) {
  k_sig = sig;
  siglongjmp(k_jmp, 1);
}

/* Entries are small integers (|a|, |b|, |c| <= 8, K <= 1030), so every
 * product and partial sum is an integer below 2^24, exactly representable
 * in float32: a correct sgemm gives the exact answer whatever its summation
 * order or FMA use, the reference loop (in float, vectorisable) gives it
 * too, and the check needs no tolerance. */
static float small_int(uint64_t *s) {
  *s ^= *s << 13; /* xorshift64 */
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (float)((int)(*s % 17) - 8);
}

static int check_shape(int M, int N, int K, bool ta, bool tb, float beta, const float *A, const float *B, float *C,
                       float *Bop, float *R, uint64_t *seed, bool corrupt, char *why, size_t nwhy) {
  int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 3, ldc = N + 2; /* padded strides */
  int64_t nc = (int64_t)ldc * M;
  for (int64_t i = 0; i < nc; i++)
    C[i] = small_int(seed);
  /* R = op(A) op(B) + beta C, row by row over op(B) as Bop[K][N] */
  for (int k = 0; k < K; k++)
    for (int j = 0; j < N; j++)
      Bop[(int64_t)k * N + j] = tb ? B[(int64_t)j * ldb + k] : B[(int64_t)k * ldb + j];
  for (int i = 0; i < M; i++) {
    float *r = R + (int64_t)i * N;
    for (int j = 0; j < N; j++)
      r[j] = beta == 0.0f ? 0.0f : C[(int64_t)i * ldc + j];
    for (int k = 0; k < K; k++) {
      float a = ta ? A[(int64_t)k * lda + i] : A[(int64_t)i * lda + k];
      const float *b = Bop + (int64_t)k * N;
      for (int j = 0; j < N; j++)
        r[j] += a * b[j];
    }
  }
  dd_tensor_gemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
  if (corrupt) /* test hook: a kernel that is wrong in one entry */
    C[(int64_t)(M / 2) * ldc + N / 2] += 1.0f;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float got = C[(int64_t)i * ldc + j], want = R[(int64_t)i * N + j];
      if (!(got == want)) {
        snprintf(why, nwhy, "sgemm %s%s M=%d N=%d K=%d beta=%g gave C[%d,%d] = %.9g, exact value %.9g",
                 ta ? "A^T" : "A", tb ? "B^T" : "B", M, N, K, (double)beta, i, j, (double)got, (double)want);
        return DD_ENUMERIC;
      }
    }
  return DD_OK;
}

static int selfcheck_gemms(bool corrupt, char *why, size_t nwhy) {
  int64_t maxab = 0, maxc = 0, maxop = 0;
  for (size_t s = 0; s < sizeof k_shapes / sizeof k_shapes[0]; s++) {
    int64_t M = k_shapes[s][0], N = k_shapes[s][1], K = k_shapes[s][2];
    int64_t ab = ((M > N ? M : N) + 3) * (K + 3); /* either operand, either layout, padded */
    maxab = ab > maxab ? ab : maxab;
    maxc = M * (N + 2) > maxc ? M * (N + 2) : maxc;
    maxop = N * K > maxop ? N * K : maxop;
  }
  /* A and B are windows of one random pool, at an offset that moves with
   * every case (filling them afresh each time cost more than the GEMMs) */
  float *pool = dd_alloc((size_t)(2 * maxab + 128), sizeof(float));
  float *C = dd_alloc((size_t)maxc, sizeof(float)), *R = dd_alloc((size_t)maxc, sizeof(float));
  float *Bop = dd_alloc((size_t)maxop, sizeof(float));
  int rc = DD_OK;
  if (!pool || !C || !R || !Bop) {
    snprintf(why, nwhy, "out of memory for the BLAS self-check");
    rc = DD_ENOMEM;
  }
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (int64_t i = 0; pool && i < 2 * maxab + 128; i++)
    pool[i] = small_int(&seed);
  int64_t shift = 0;
  for (size_t s = 0; rc == DD_OK && s < sizeof k_shapes / sizeof k_shapes[0]; s++) {
    int M = k_shapes[s][0], N = k_shapes[s][1], K = k_shapes[s][2];
    bool both = (int64_t)M * N * K <= K_BETA_BOTH_MAX;
    for (int t = 0; rc == DD_OK && t < 4; t++)
      for (int bi = both ? 0 : 1; rc == DD_OK && bi < 2; bi++) {
        shift = (shift + 37) % 128;
        rc = check_shape(M, N, K, t & 1, t & 2, (float)bi, pool + shift, pool + maxab + 127 - shift, C, Bop, R, &seed,
                         corrupt && s + 1 == sizeof k_shapes / sizeof k_shapes[0], why, nwhy);
      }
  }
  dd_free(pool);
  dd_free(C);
  dd_free(R);
  dd_free(Bop);
  return rc;
}

int dd_tensor_kernel_selfcheck(char *why, size_t nwhy) {
  why[0] = '\0';
  const char *name = dd_tensor_kernel_current();
  dd_cpu cpu;
  dd_tensor_cpu_detect(&cpu);
  int need = dd_tensor_kernel_level(name), have = dd_tensor_cpu_level(&cpu);
  if (DD_X86 && need > have) {
    snprintf(why, nwhy, "the %s kernels need %s, this CPU (or its OS) offers %s", name,
             dd_tensor_kernel_level_name(need), dd_tensor_kernel_level_name(have));
    return DD_EINVAL;
  }
  /* DD_BLAS_FAULT=name[,name...]: test-only; the check sees a wrong entry
   * from those kernel sets, to exercise the fallback for real. */
  const char *fault = getenv("DD_BLAS_FAULT");
  bool corrupt = fault && in_list(fault, name);
  /* One BLAS thread, so an illegal instruction or a bad access inside a
   * kernel happens on this thread and is caught here rather than ending
   * the process. */
  int threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  struct sigaction sa, old[4];
  const int sigs[4] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE};
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < 4; i++)
    sigaction(sigs[i], &sa, &old[i]);
  int rc;
  k_sig = 0;
  if (sigsetjmp(k_jmp, 1) == 0) {
    rc = selfcheck_gemms(corrupt, why, nwhy);
  } else {
    snprintf(why, nwhy, "sgemm with the %s kernels raised %s", name, strsignal(k_sig));
    rc = DD_ENUMERIC;
  }
  for (int i = 0; i < 4; i++)
    sigaction(sigs[i], &old[i], NULL);
  openblas_set_num_threads(threads);
  return rc;
}

/* ---- the choice for this process ---- */

/* What dd_tensor_kernel_select decided, for dd_tensor_kernel_info. The environment
 * carries it across the re-execution (DD_BLAS_CHOSEN: the value ddtrain put
 * in OPENBLAS_CORETYPE; DD_BLAS_DEFAULT: OpenBLAS's own pick;
 * DD_BLAS_REJECTED / DD_BLAS_REASON: sets that failed the self-check). */
static struct {
  bool selected;
  char origin[16];
  char picked[32];
  char rejected[160];
  char reason[400];
  bool verified;
} g_k;

static void copy_env(char *dst, size_t n, const char *name) {
  const char *v = getenv(name);
  snprintf(dst, n, "%s", v ? v : "");
}

static bool auto_off(void) {
  const char *a = getenv("DD_BLAS_AUTO");
  return a &&
         (strcmp(a, "0") == 0 || strcasecmp(a, "off") == 0 || strcasecmp(a, "no") == 0 || strcasecmp(a, "false") == 0);
}

/* Point OPENBLAS_CORETYPE at `set` (NULL: OpenBLAS's own choice) for the
 * next execution. */
static int plan_exec(const char *set) {
  /* a bound on re-executions, whatever happens to the environment */
  const char *e = getenv("DD_BLAS_EXECS");
  int n = e ? atoi(e) : 0;
  if (n >= 8) {
    snprintf(g_k.origin, sizeof g_k.origin, "default");
    return 0;
  }
  char v[16];
  snprintf(v, sizeof v, "%d", n + 1);
  setenv("DD_BLAS_EXECS", v, 1);
  if (set) {
    setenv("OPENBLAS_CORETYPE", set, 1);
    setenv("DD_BLAS_CHOSEN", set, 1);
  } else {
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv("DD_BLAS_CHOSEN");
  }
  return 1;
}

int dd_tensor_kernel_select(void) {
  memset(&g_k, 0, sizeof g_k);
  g_k.selected = true;
  const char *cur = dd_tensor_kernel_current();
  const char *ct = getenv("OPENBLAS_CORETYPE"), *chosen = getenv("DD_BLAS_CHOSEN");
  copy_env(g_k.picked, sizeof g_k.picked, "DD_BLAS_DEFAULT");
  if (!g_k.picked[0])
    snprintf(g_k.picked, sizeof g_k.picked, "%s", cur);
  copy_env(g_k.rejected, sizeof g_k.rejected, "DD_BLAS_REJECTED");
  copy_env(g_k.reason, sizeof g_k.reason, "DD_BLAS_REASON");
  bool ours = ct && chosen && strcasecmp(ct, chosen) == 0;
  if (ct && !ours) {
    snprintf(g_k.origin, sizeof g_k.origin, "user");
    return 0;
  }
  if (auto_off() && !ours) {
    snprintf(g_k.origin, sizeof g_k.origin, "off");
    return 0;
  }
  dd_cpu cpu;
  dd_tensor_cpu_detect(&cpu);
  char avail[512];
  dd_tensor_kernels_available(avail, sizeof avail);
  if (ours) { /* the re-executed process: verify the choice before trusting it */
    char why[300];
    int rc;
    if (dd_tensor_blas_memory_check(0, why, sizeof why) != 0) {
      /* no BLAS call can work here: do not start one (it would never return); training says why */
      snprintf(g_k.origin, sizeof g_k.origin, "auto");
      snprintf(g_k.reason, sizeof g_k.reason, "not self-checked: %s", why);
      return 0;
    }
    if (strcasecmp(cur, chosen) != 0) {
      snprintf(why, sizeof why, "OpenBLAS did not load them (it runs %s)", cur);
      rc = DD_EINVAL;
    } else {
      rc = dd_tensor_kernel_selfcheck(why, sizeof why);
    }
    if (rc == DD_OK) {
      snprintf(g_k.origin, sizeof g_k.origin, "auto");
      g_k.verified = true;
      return 0;
    }
    size_t n = strlen(g_k.rejected);
    snprintf(g_k.rejected + n, sizeof g_k.rejected - n, "%s%s", n ? "," : "", chosen);
    if (!g_k.reason[0])
      snprintf(g_k.reason, sizeof g_k.reason, "%s", why);
    setenv("DD_BLAS_REJECTED", g_k.rejected, 1);
    setenv("DD_BLAS_REASON", g_k.reason, 1);
    setenv("DD_BLAS_DEFAULT", g_k.picked, 1);
    return plan_exec(dd_tensor_kernel_choose(&cpu, g_k.picked, avail, g_k.rejected));
  }
  const char *next = dd_tensor_kernel_choose(&cpu, cur, avail, g_k.rejected);
  snprintf(g_k.origin, sizeof g_k.origin, "default");
  if (!next)
    return 0;
  setenv("DD_BLAS_DEFAULT", cur, 1);
  return plan_exec(next);
}

void dd_tensor_kernel_exec_failed(const char *why) {
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("DD_BLAS_CHOSEN");
  snprintf(g_k.origin, sizeof g_k.origin, "default");
  snprintf(g_k.reason, sizeof g_k.reason, "could not re-execute ddtrain to load other kernels: %s", why);
}

void dd_tensor_kernel_info(dd_blas_kernels *k) {
  memset(k, 0, sizeof *k);
  snprintf(k->name, sizeof k->name, "%s", dd_tensor_kernel_current());
  if (g_k.selected) {
    snprintf(k->origin, sizeof k->origin, "%s", g_k.origin);
    snprintf(k->picked, sizeof k->picked, "%s", g_k.picked);
    snprintf(k->rejected, sizeof k->rejected, "%s", g_k.rejected);
    snprintf(k->reason, sizeof k->reason, "%s", g_k.reason);
    k->verified = g_k.verified;
  } else { /* a program that embeds the library and never selected */
    snprintf(k->origin, sizeof k->origin, "%s", getenv("OPENBLAS_CORETYPE") ? "user" : "default");
    snprintf(k->picked, sizeof k->picked, "%s", k->name);
  }
  dd_cpu cpu;
  dd_tensor_cpu_detect(&cpu);
  k->cpu_level = dd_tensor_cpu_level(&cpu);
  const char *best = set_for_level(&cpu, k->cpu_level);
  snprintf(k->cpu_best, sizeof k->cpu_best, "%s", best ? best : "");
  snprintf(k->cpu, sizeof k->cpu, "%s family %d model %d", cpu.vendor, cpu.family, cpu.model);
}

__attribute__((format(printf, 4, 5))) static void app(char *buf, size_t n, size_t *used, const char *fmt, ...) {
  if (*used + 1 >= n)
    return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *used, n - *used, fmt, ap);
  va_end(ap);
  if (w > 0)
    *used = *used + (size_t)w < n ? *used + (size_t)w : n - 1;
}

const char *dd_tensor_kernel_summary(char *buf, size_t n) {
  dd_blas_kernels k;
  dd_tensor_kernel_info(&k);
  size_t used = 0;
  buf[0] = '\0';
  int lvl = dd_tensor_kernel_level(k.name);
  const char *how = getenv("DD_BLAS_AUTO");
  if (strcmp(k.origin, "auto") == 0)
    app(buf, n, &used, "%s, chosen by ddtrain (OpenBLAS picked %s; this CPU supports %s%s", k.name, k.picked,
        dd_tensor_kernel_level_name(k.cpu_level), k.verified ? "; self-check passed" : "");
  else if (strcmp(k.origin, "user") == 0)
    app(buf, n, &used, "%s, from OPENBLAS_CORETYPE (set by the user", k.name);
  else if (strcmp(k.origin, "off") == 0)
    app(buf, n, &used, "%s, OpenBLAS's choice (automatic choice off: DD_BLAS_AUTO=%s%s%s", k.name, how ? how : "",
        lvl >= 0 && lvl < k.cpu_level ? "; this CPU supports " : "",
        lvl >= 0 && lvl < k.cpu_level ? dd_tensor_kernel_level_name(k.cpu_level) : "");
  else if (lvl >= 0 && lvl >= k.cpu_level)
    app(buf, n, &used, "%s, OpenBLAS's choice (matches this CPU", k.name);
  else
    app(buf, n, &used, "%s, OpenBLAS's choice (this CPU supports %s", k.name, dd_tensor_kernel_level_name(k.cpu_level));
  if (k.rejected[0])
    app(buf, n, &used, "; rejected by the self-check: %s (first: %s)", k.rejected, k.reason);
  else if (k.reason[0])
    app(buf, n, &used, "; %s", k.reason);
  app(buf, n, &used, ")");
  return buf;
}
