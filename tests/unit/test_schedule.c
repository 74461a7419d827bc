/* schedule: LR at every step against torch.optim.lr_scheduler (optim_ref.h),
 * purity (resume), the run-length defaults, and errors naming the key. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ddtrain/config.h"
#include "ddtrain/schedule.h"
#include "optim_ref.h"

DD_TEST_GLOBALS;

static int parse(const char *yaml, dd_config **c) {
  char text[1024];
  snprintf(text, sizeof text, "model: {layers: [relu]}\n%s\n", yaml);
  return dd_config_parse(text, "sched.yaml", 0, NULL, c);
}

/* Bind a parsed config to a run of SCHED_EPOCHS x SCHED_SPE steps. */
static int bind(const dd_config *c, int64_t batch, dd_schedule *s) {
  return dd_schedule_init(&c->schedule, dd_optim_scaled_lr(&c->optim, batch), SCHED_EPOCHS, SCHED_SPE, s);
}

static void matches_pytorch(void) {
  for (size_t k = 0; k < sizeof sched_refs / sizeof sched_refs[0]; k++) {
    const sched_ref *r = &sched_refs[k];
    dd_config *c = NULL;
    dd_schedule s;
    CHECK_OK(parse(r->yaml, &c));
    if (!c)
      continue;
    CHECK_OK(bind(c, r->batch, &s));
    double worst = 0;
    for (int step = 0; step < SCHED_STEPS; step++) {
      double lr = dd_schedule_lr(&s, step, step / SCHED_SPE);
      double err = fabs(lr - r->lr[step]) / fmax(1e-12, fabs(r->lr[step]));
      worst = worst_of(worst, err);
      if (!(err <= 1e-9))
        DD_FAIL_AT("%s: step %d: lr %.17g, PyTorch %.17g", r->name, step, lr, r->lr[step]);
    }
    printf("  %-32s max rel err vs PyTorch %.2g\n", r->name, worst);
    dd_config_free(c);
  }
}

static void pure_function_of_step_and_epoch(void) {
  /* resume needs nothing but (step, epoch): two independently built
   * schedules agree everywhere, in any query order */
  dd_config *c = NULL;
  CHECK_OK(parse("optim: {lr: 0.3}\nschedule: {name: cosine, unit: epochs, warmup_epochs: 2}", &c));
  if (!c)
    return;
  dd_schedule a, b;
  CHECK_OK(bind(c, 32, &a));
  CHECK_OK(bind(c, 32, &b));
  for (int step = SCHED_STEPS - 1; step >= 0; step -= 3)
    CHECK(dd_schedule_lr(&a, step, step / SCHED_SPE) == dd_schedule_lr(&b, step, step / SCHED_SPE));
  CHECK_INT(a.warmup, 2 * SCHED_SPE);
  CHECK_INT(a.length, SCHED_EPOCHS); /* t_max defaults to the run's epochs */
  /* after t_max the cosine stays at its floor */
  CHECK_NEAR(dd_schedule_lr(&a, 10 * SCHED_STEPS, 5 * SCHED_EPOCHS), 0.0, 1e-15);
  dd_config_free(c);
  CHECK_OK(parse("schedule: {name: polynomial, unit: steps}", &c));
  if (c) {
    CHECK_OK(bind(c, 32, &a));
    CHECK_INT(a.length, SCHED_EPOCHS * SCHED_SPE); /* total defaults to the run's steps */
    char line[256];
    CHECK_CONTAINS(dd_schedule_describe(&a, line, sizeof line), "polynomial (power 1) over 200 steps");
  }
  dd_config_free(c);
}

static void expect_error(const char *yaml, const char *n1, const char *n2) {
  dd_config *c = NULL;
  dd_error_clear();
  int rc = parse(yaml, &c);
  if (rc == 0) {
    DD_FAIL_AT("'%s': expected an error containing '%s'", yaml, n1);
    dd_config_free(c);
    return;
  }
  CHECK_CONTAINS(dd_error_message(), n1);
  if (n2)
    CHECK_CONTAINS(dd_error_message(), n2);
  CHECK(strchr(dd_error_message(), '\n') == NULL); /* one line */
  dd_error_clear();
}

static void errors_name_the_key(void) {
  expect_error("schedule: {name: cosin, unit: steps}", "schedule.name", "did you mean 'cosine'");
  expect_error("schedule: {name: cosine}", "schedule.unit is missing", "unit: steps or unit: epochs");
  expect_error("schedule: {name: step, unit: hours}", "schedule.unit", "steps or epochs");
  expect_error("schedule: {name: step, unit: steps}", "schedule.step_size is missing", NULL);
  expect_error("schedule: {name: step, unit: steps, step_size: 0}", "schedule.step_size", NULL);
  expect_error("schedule: {name: exponential, unit: steps}", "schedule.gamma is missing", NULL);
  expect_error("schedule: {name: exponential, unit: steps, gamma: 0}", "schedule.gamma = 0", "> 0");
  expect_error("schedule: {name: exponential, unit: steps, gamma: -0.5}", "schedule.gamma", NULL);
  expect_error("schedule: {name: multistep, unit: epochs, milestones: [5, 3]}", "schedule.milestones", "increasing");
  expect_error("schedule: {name: multistep, unit: epochs}", "schedule.milestones is missing", NULL);
  expect_error("schedule: {name: cosine, unit: steps, step_size: 3}", "schedule.step_size does not apply", "cosine");
  expect_error("schedule: {name: cosine, unit: steps, eta_min: -1}", "schedule.eta_min", NULL);
  expect_error("schedule: {name: onecycle, unit: steps, pct_start: 1.5}", "schedule.pct_start", NULL);
  expect_error("schedule: {name: onecycle, unit: steps, div_factor: 0}", "schedule.div_factor", "> 0");
  expect_error("schedule: {warmup_steps: 5, warmup_epochs: 1}", "warmup_steps and schedule.warmup_epochs", NULL);
  expect_error("schedule: {warmup_start_factor: 0.1}", "schedule.warmup_start_factor has no effect", NULL);
  expect_error("schedule: {warmup_steps: 5, warmup_start_factor: 0}", "schedule.warmup_start_factor", "(0, 1]");
  expect_error("schedule: {warmup_steps: -5}", "schedule.warmup_steps", NULL);
  expect_error("schedule: {lr: 0.1}", "unknown key 'schedule.lr'", NULL);
}

static void names_round_trip(void) {
  for (int k = 0; k < DD_SCHED_NKINDS; k++)
    CHECK_INT(dd_schedule_find(dd_schedule_name(k)), k);
  CHECK_INT(dd_schedule_find("linear"), -1);
  CHECK_INT(dd_schedule_unit_find("epochs"), DD_SCHED_UNIT_EPOCHS);
  CHECK_INT(dd_schedule_unit_find("epoch"), -1);
}

int main(void) {
  RUN(matches_pytorch);
  RUN(pure_function_of_step_and_epoch);
  RUN(errors_name_the_key);
  RUN(names_round_trip);
  return dd_test_failures ? 1 : 0;
}
