/* tensor: the BLAS kernel-set decision (CPU features x OpenBLAS's pick) and the GEMM self-check. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ddtrain/core.h"
#include "ddtrain/tensor.h"

DD_TEST_GLOBALS;

#define ALL_SETS "Prescott,Core2,Nehalem,Sandybridge,Bulldozer,Haswell,Zen,SkylakeX,Cooperlake,Excavator"

/* CPUs by what CPUID and XCR0 report */
static dd_cpu cpu(const char *vendor, int level, bool bf16) {
  dd_cpu c;
  memset(&c, 0, sizeof c);
  snprintf(c.vendor, sizeof c.vendor, "%s", vendor);
  c.family = 6;
  c.avx = c.os_avx = level >= DD_KL_AVX;
  c.avx2 = c.fma = level >= DD_KL_AVX2;
  c.avx512f = c.avx512bw = c.avx512vl = c.avx512dq = c.avx512cd = c.os_avx512 = level >= DD_KL_AVX512;
  c.avx512bf16 = bf16;
  return c;
}

#define CHECK_CHOICE(c, picked, avail, rejected, want)                                                                 \
  do {                                                                                                                 \
    const char *got_ = dd_tensor_kernel_choose(&(c), picked, avail, rejected);                                         \
    const char *want_ = (want);                                                                                        \
    if (!(got_ == NULL && want_ == NULL) && !(got_ && want_ && strcmp(got_, want_) == 0))                              \
      DD_FAIL_AT("choose(%s, picked %s, rejected '%s'): %s, expected %s", #c, picked, rejected, got_ ? got_ : "keep",  \
                 want_ ? want_ : "keep");                                                                              \
  } while (0)

static void choice_table(void) {
  dd_cpu emerald = cpu("GenuineIntel", DD_KL_AVX512, true); /* family 6 model 207: unknown to OpenBLAS 0.3.21 */
  emerald.model = 207;
  /* OpenBLAS fell back to SSE3: take the strongest set, then the next ones as each is rejected */
  CHECK_CHOICE(emerald, "Prescott", ALL_SETS, "", "Cooperlake");
  CHECK_CHOICE(emerald, "Prescott", ALL_SETS, "Cooperlake", "SkylakeX");
  CHECK_CHOICE(emerald, "Prescott", ALL_SETS, "Cooperlake,SkylakeX", "Haswell");
  CHECK_CHOICE(emerald, "Prescott", ALL_SETS, "Cooperlake,SkylakeX,Haswell", "Sandybridge");
  CHECK_CHOICE(emerald, "Prescott", ALL_SETS, "Cooperlake,SkylakeX,Haswell,Sandybridge", NULL);
  /* an older OpenBLAS without Cooperlake */
  CHECK_CHOICE(emerald, "Prescott", "Prescott,Haswell,SkylakeX", "", "SkylakeX");
  /* names are case-insensitive, as OPENBLAS_CORETYPE is */
  CHECK_CHOICE(emerald, "prescott", "PRESCOTT,COOPERLAKE", "", "Cooperlake");
  /* a recognised CPU: nothing changes */
  CHECK_CHOICE(emerald, "Cooperlake", ALL_SETS, "", NULL);
  dd_cpu zen4 = cpu("AuthenticAMD", DD_KL_AVX512, true);
  CHECK_CHOICE(zen4, "Cooperlake", ALL_SETS, "", NULL);
  CHECK_CHOICE(zen4, "Zen", ALL_SETS, "", "Cooperlake"); /* an OpenBLAS that maps Zen 4 to Zen */
  dd_cpu skx = cpu("GenuineIntel", DD_KL_AVX512, false);
  CHECK_CHOICE(skx, "SkylakeX", ALL_SETS, "", NULL);
  CHECK_CHOICE(skx, "Haswell", ALL_SETS, "", "SkylakeX");
  CHECK_CHOICE(skx, "Prescott", ALL_SETS, "SkylakeX", "Haswell");
  dd_cpu zen3 = cpu("AuthenticAMD", DD_KL_AVX2, false);
  CHECK_CHOICE(zen3, "Zen", ALL_SETS, "", NULL);
  CHECK_CHOICE(zen3, "Prescott", ALL_SETS, "", "Zen"); /* AMD gets the Zen set, not Haswell */
  CHECK_CHOICE(zen3, "Excavator", ALL_SETS, "", NULL); /* same level: leave it */
  dd_cpu hsw = cpu("GenuineIntel", DD_KL_AVX2, false);
  CHECK_CHOICE(hsw, "Haswell", ALL_SETS, "", NULL);
  CHECK_CHOICE(hsw, "Nehalem", ALL_SETS, "", "Haswell");
  CHECK_CHOICE(hsw, "Prescott", "Prescott,Nehalem", "", NULL); /* nothing better in this build */
  dd_cpu snb = cpu("GenuineIntel", DD_KL_AVX, false);
  CHECK_CHOICE(snb, "Prescott", ALL_SETS, "", "Sandybridge");
  dd_cpu bulldozer = cpu("AuthenticAMD", DD_KL_AVX, false);
  CHECK_CHOICE(bulldozer, "Barcelona", ALL_SETS, "", "Bulldozer");
  dd_cpu old = cpu("GenuineIntel", DD_KL_SSE, false);
  CHECK_CHOICE(old, "Prescott", ALL_SETS, "", NULL);
  /* never upgrade a kernel set we do not know (a newer OpenBLAS's own) */
  CHECK_CHOICE(emerald, "SapphireRapids", ALL_SETS, "", NULL);
  CHECK_CHOICE(emerald, "", ALL_SETS, "", NULL);
  /* not a DYNAMIC_ARCH build: OPENBLAS_CORETYPE would do nothing */
  CHECK_CHOICE(emerald, "Prescott", "", "", NULL);
  /* not x86, or nothing detected */
  dd_cpu none;
  memset(&none, 0, sizeof none);
  CHECK_CHOICE(none, "Prescott", ALL_SETS, "", NULL);
}

static void cpu_levels(void) {
  /* AVX-512 needs every subset ddtrain's kernels use, and the OS must save ZMM state */
  dd_cpu c = cpu("GenuineIntel", DD_KL_AVX512, true);
  CHECK_INT(dd_tensor_cpu_level(&c), DD_KL_AVX512_BF16);
  c.os_avx512 = false;
  CHECK_INT(dd_tensor_cpu_level(&c), DD_KL_AVX2);
  c = cpu("GenuineIntel", DD_KL_AVX512, false);
  c.avx512bw = false; /* Knights Landing: F and CD, no BW/VL/DQ */
  CHECK_INT(dd_tensor_cpu_level(&c), DD_KL_AVX2);
  c = cpu("GenuineIntel", DD_KL_AVX2, false);
  c.fma = false;
  CHECK_INT(dd_tensor_cpu_level(&c), DD_KL_AVX);
  c.os_avx = false;
  CHECK_INT(dd_tensor_cpu_level(&c), DD_KL_SSE);
  CHECK_INT(dd_tensor_kernel_level("Prescott"), DD_KL_SSE);
  CHECK_INT(dd_tensor_kernel_level("haswell"), DD_KL_AVX2);
  CHECK_INT(dd_tensor_kernel_level("Zen"), DD_KL_AVX2);
  CHECK_INT(dd_tensor_kernel_level("SkylakeX"), DD_KL_AVX512);
  CHECK_INT(dd_tensor_kernel_level("COOPERLAKE"), DD_KL_AVX512_BF16);
  CHECK_INT(dd_tensor_kernel_level("Nonesuch"), -1);
  CHECK_INT(dd_tensor_kernel_level(NULL), -1);
  /* this machine: detection agrees with itself and names a vendor */
  dd_cpu here;
  dd_tensor_cpu_detect(&here);
  CHECK(here.vendor[0] != '\0');
  CHECK(dd_tensor_cpu_level(&here) >= DD_KL_SSE);
}

static void linked_openblas(void) {
  char avail[512];
  dd_tensor_kernels_available(avail, sizeof avail);
  const char *cur = dd_tensor_kernel_current();
  CHECK(cur[0] != '\0');
  /* Debian's OpenBLAS is a DYNAMIC_ARCH build: the running set is one of its sets */
  if (strstr(dd_tensor_blas_info(), "DYNAMIC_ARCH"))
    CHECK_CONTAINS(avail, cur);
  char small[8]; /* a short buffer truncates at a name boundary, never overflows */
  dd_tensor_kernels_available(small, sizeof small);
  CHECK(strlen(small) < sizeof small);
}

static void selfcheck_passes_and_catches(void) {
  char why[400];
  CHECK_INT(dd_tensor_kernel_selfcheck(why, sizeof why), 0);
  CHECK(why[0] == '\0');
  /* the test hook corrupts one entry of one GEMM: the check must see it and say where */
  setenv("DD_BLAS_FAULT", dd_tensor_kernel_current(), 1);
  CHECK(dd_tensor_kernel_selfcheck(why, sizeof why) != 0);
  CHECK_CONTAINS(why, "exact value");
  setenv("DD_BLAS_FAULT", "NotThisOne", 1);
  CHECK_INT(dd_tensor_kernel_selfcheck(why, sizeof why), 0);
  unsetenv("DD_BLAS_FAULT");
  /* the check restores the thread count it changed */
  dd_tensor_set_threads(2);
  int before = dd_tensor_threads();
  dd_tensor_kernel_selfcheck(why, sizeof why);
  CHECK_INT(dd_tensor_threads(), before);
}

static void clear_env(void) {
  const char *vars[] = {"OPENBLAS_CORETYPE", "DD_BLAS_AUTO",   "DD_BLAS_CHOSEN", "DD_BLAS_DEFAULT",
                        "DD_BLAS_REJECTED",  "DD_BLAS_REASON", "DD_BLAS_EXECS",  "DD_BLAS_FAULT"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    unsetenv(vars[i]);
}

/* The environment protocol of dd_tensor_kernel_select, without the exec. */
static void select_protocol(void) {
  dd_blas_kernels k;
  char sum[800];
  const char *cur = dd_tensor_kernel_current();
  clear_env();
  setenv("OPENBLAS_CORETYPE", cur, 1); /* set by the user: respected, no re-execution */
  CHECK_INT(dd_tensor_kernel_select(), 0);
  dd_tensor_kernel_info(&k);
  CHECK(strcmp(k.origin, "user") == 0);
  CHECK_CONTAINS(dd_tensor_kernel_summary(sum, sizeof sum), "from OPENBLAS_CORETYPE");
  clear_env();
  setenv("DD_BLAS_AUTO", "0", 1); /* turned off */
  CHECK_INT(dd_tensor_kernel_select(), 0);
  dd_tensor_kernel_info(&k);
  CHECK(strcmp(k.origin, "off") == 0);
  CHECK_CONTAINS(dd_tensor_kernel_summary(sum, sizeof sum), "DD_BLAS_AUTO=0");
  clear_env();
  dd_cpu here;
  dd_tensor_cpu_detect(&here);
  char avail[512];
  dd_tensor_kernels_available(avail, sizeof avail);
  const char *want = dd_tensor_kernel_choose(&here, cur, avail, "");
  int again = dd_tensor_kernel_select();
  CHECK_INT(again, want != NULL);
  if (!want) {
    dd_tensor_kernel_info(&k);
    CHECK(strcmp(k.origin, "default") == 0);
    printf("     (this CPU runs OpenBLAS's own choice %s: no re-execution to test)\n", cur);
    clear_env();
    return;
  }
  /* the first process planned a re-execution with the choice */
  CHECK(getenv("OPENBLAS_CORETYPE") && strcmp(getenv("OPENBLAS_CORETYPE"), want) == 0);
  CHECK(getenv("DD_BLAS_CHOSEN") && strcmp(getenv("DD_BLAS_CHOSEN"), want) == 0);
  CHECK(getenv("DD_BLAS_DEFAULT") && strcmp(getenv("DD_BLAS_DEFAULT"), cur) == 0);
  /* this process did not re-execute, so it still runs `cur`: as the
   * re-executed process it must notice that OpenBLAS ignored the choice,
   * reject it and plan the next one */
  CHECK_INT(dd_tensor_kernel_select(), 1);
  CHECK(getenv("DD_BLAS_REJECTED") && strstr(getenv("DD_BLAS_REJECTED"), want));
  CHECK(getenv("DD_BLAS_REASON") && strstr(getenv("DD_BLAS_REASON"), "did not load"));
  const char *next = getenv("OPENBLAS_CORETYPE");
  CHECK(!next || strcmp(next, want) != 0);
  /* a failed exec leaves OpenBLAS's choice and says why */
  dd_tensor_kernel_exec_failed("testing");
  CHECK(getenv("OPENBLAS_CORETYPE") == NULL);
  CHECK_CONTAINS(dd_tensor_kernel_summary(sum, sizeof sum), "testing");
  /* a bounded number of re-executions, whatever the environment says */
  clear_env();
  setenv("DD_BLAS_EXECS", "8", 1);
  CHECK_INT(dd_tensor_kernel_select(), 0);
  clear_env();
}

int main(void) {
  RUN(choice_table);
  RUN(cpu_levels);
  RUN(linked_openblas);
  RUN(selfcheck_passes_and_catches);
  RUN(select_protocol);
  return dd_test_failures ? 1 : 0;
}
