/* Learning-rate schedules: pure functions of (step, epoch), PyTorch's closed forms. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/core.h"
#include "ddtrain/schedule.h"

#define DD_PI 3.14159265358979323846

static const char *const names[DD_SCHED_NKINDS] = {"constant", "step",       "multistep", "exponential",
                                                   "cosine",   "polynomial", "onecycle"};

void dd_schedule_spec_defaults(dd_schedule_spec *s) {
  memset(s, 0, sizeof *s);
  s->kind = DD_SCHED_CONSTANT;
  s->step_size = s->t_max = s->total = -1;
  s->gamma = s->eta_min = s->power = NAN;
  s->pct_start = s->div_factor = s->final_div_factor = NAN;
  s->warmup_start_factor = NAN;
}

const char *dd_schedule_name(int kind) {
  return kind >= 0 && kind < DD_SCHED_NKINDS ? names[kind] : "?";
}

int dd_schedule_find(const char *name) {
  for (int i = 0; i < DD_SCHED_NKINDS; i++)
    if (strcmp(names[i], name) == 0)
      return i;
  return -1;
}

char *dd_schedule_names(char *buf, int n) {
  int used = 0;
  buf[0] = '\0';
  for (int i = 0; i < DD_SCHED_NKINDS && used < n; i++)
    used += snprintf(buf + used, (size_t)(n - used), "%s%s", i ? ", " : "", names[i]);
  return buf;
}

const char *dd_schedule_unit_name(int unit) {
  return unit == DD_SCHED_UNIT_STEPS ? "steps" : unit == DD_SCHED_UNIT_EPOCHS ? "epochs" : "";
}

int dd_schedule_unit_find(const char *name) {
  if (strcmp(name, "steps") == 0)
    return DD_SCHED_UNIT_STEPS;
  if (strcmp(name, "epochs") == 0)
    return DD_SCHED_UNIT_EPOCHS;
  return -1;
}

/* ---- resolve --------------------------------------------------------------- */

#define K(k) (1u << (k))

/* Which schedules take which keys, for the "does not apply" error. */
static const struct {
  const char *key;
  unsigned kinds;
} takes[] = {
    {"step_size", K(DD_SCHED_STEP)},
    {"gamma", K(DD_SCHED_STEP) | K(DD_SCHED_MULTISTEP) | K(DD_SCHED_EXPONENTIAL)},
    {"milestones", K(DD_SCHED_MULTISTEP)},
    {"t_max", K(DD_SCHED_COSINE)},
    {"eta_min", K(DD_SCHED_COSINE)},
    {"total", K(DD_SCHED_POLYNOMIAL) | K(DD_SCHED_ONECYCLE)},
    {"power", K(DD_SCHED_POLYNOMIAL)},
    {"pct_start", K(DD_SCHED_ONECYCLE)},
    {"div_factor", K(DD_SCHED_ONECYCLE)},
    {"final_div_factor", K(DD_SCHED_ONECYCLE)},
};
#define NTAKES ((int)(sizeof takes / sizeof takes[0]))

static int check_applies(const dd_schedule_spec *s, const char *key, bool set) {
  int i = 0;
  while (i < NTAKES && strcmp(takes[i].key, key) != 0)
    i++;
  if (!set || (takes[i].kinds & K(s->kind)))
    return DD_OK;
  char keys[256] = "";
  int used = 0;
  for (int j = 0; j < NTAKES; j++)
    if (takes[j].kinds & K(s->kind))
      used += snprintf(keys + used, sizeof keys - (size_t)used, "%s, ", takes[j].key);
  return dd_error(DD_ECONFIG,
                  "schedule.%s does not apply to schedule.name %s; remove it. %s takes %sunit, warmup_steps, "
                  "warmup_epochs, warmup_start_factor",
                  key, names[s->kind], names[s->kind], keys);
}

/* x in [lo, hi], finite */
static bool in(double x, double lo, double hi) {
  return x >= lo && x <= hi && isfinite(x);
}

int dd_schedule_resolve(dd_schedule_spec *s) {
  char all[128];
  if (s->kind < 0 || s->kind >= DD_SCHED_NKINDS)
    return dd_error(DD_ECONFIG, "schedule.name: unknown schedule #%d; known: %s", s->kind,
                    dd_schedule_names(all, sizeof all));
  int rc = check_applies(s, "step_size", s->step_size >= 0);
  if (!rc)
    rc = check_applies(s, "gamma", !isnan(s->gamma));
  if (!rc)
    rc = check_applies(s, "milestones", s->nmilestones > 0);
  if (!rc)
    rc = check_applies(s, "t_max", s->t_max >= 0);
  if (!rc)
    rc = check_applies(s, "eta_min", !isnan(s->eta_min));
  if (!rc)
    rc = check_applies(s, "total", s->total >= 0);
  if (!rc)
    rc = check_applies(s, "power", !isnan(s->power));
  if (!rc)
    rc = check_applies(s, "pct_start", !isnan(s->pct_start));
  if (!rc)
    rc = check_applies(s, "div_factor", !isnan(s->div_factor));
  if (!rc)
    rc = check_applies(s, "final_div_factor", !isnan(s->final_div_factor));
  if (rc)
    return rc;

  const char *name = names[s->kind];
  if (s->kind != DD_SCHED_CONSTANT && s->unit == DD_SCHED_UNIT_UNSET)
    return dd_error(DD_ECONFIG,
                    "schedule.unit is missing: say whether the times of schedule.name %s count optimizer steps or "
                    "epochs (unit: steps or unit: epochs)",
                    name);
  switch (s->kind) {
  case DD_SCHED_STEP:
    if (s->step_size < 1)
      return dd_error(DD_ECONFIG, "schedule.step_size is missing: the step schedule decays every step_size %s",
                      dd_schedule_unit_name(s->unit));
    break;
  case DD_SCHED_MULTISTEP:
    if (s->nmilestones < 1)
      return dd_error(DD_ECONFIG, "schedule.milestones is missing: the multistep schedule decays at each milestone "
                                  "(e.g. milestones: [30, 60, 80])");
    for (int i = 0; i < s->nmilestones; i++)
      if (s->milestones[i] < 1 || (i > 0 && s->milestones[i] <= s->milestones[i - 1]))
        return dd_error(DD_ECONFIG, "schedule.milestones[%d] = %lld: milestones must be positive and increasing", i,
                        (long long)s->milestones[i]);
    break;
  case DD_SCHED_EXPONENTIAL:
    if (isnan(s->gamma))
      return dd_error(DD_ECONFIG, "schedule.gamma is missing: the exponential schedule multiplies the LR by gamma "
                                  "every unit (e.g. gamma: 0.95)");
    break;
  default:
    break;
  }
  if (isnan(s->gamma) && (s->kind == DD_SCHED_STEP || s->kind == DD_SCHED_MULTISTEP))
    s->gamma = 0.1; /* StepLR, MultiStepLR */
  if (!isnan(s->gamma) && !(s->gamma > 0.0 && isfinite(s->gamma)))
    return dd_error(DD_ECONFIG, "schedule.gamma = %g: must be a finite number > 0", s->gamma);
  if (s->kind == DD_SCHED_COSINE && isnan(s->eta_min))
    s->eta_min = 0.0;
  if (!isnan(s->eta_min) && !in(s->eta_min, 0.0, INFINITY))
    return dd_error(DD_ECONFIG, "schedule.eta_min = %g: the cosine floor must be a finite LR >= 0", s->eta_min);
  if (s->t_max == 0 || s->total == 0)
    return dd_error(DD_ECONFIG, "schedule.%s = 0: must be >= 1 (leave it out for the run's length)",
                    s->t_max == 0 ? "t_max" : "total");
  if (s->kind == DD_SCHED_POLYNOMIAL && isnan(s->power))
    s->power = 1.0;
  if (!isnan(s->power) && !in(s->power, 0.0, 1e6))
    return dd_error(DD_ECONFIG, "schedule.power = %g: must be a number >= 0", s->power);
  if (s->kind == DD_SCHED_ONECYCLE) {
    if (isnan(s->pct_start))
      s->pct_start = 0.3;
    if (isnan(s->div_factor))
      s->div_factor = 25.0;
    if (isnan(s->final_div_factor))
      s->final_div_factor = 1e4;
    if (!in(s->pct_start, 0.0, 1.0))
      return dd_error(DD_ECONFIG, "schedule.pct_start = %g: must be in [0, 1]", s->pct_start);
    if (!(s->div_factor > 0.0 && isfinite(s->div_factor)))
      return dd_error(DD_ECONFIG, "schedule.div_factor = %g: must be a finite number > 0", s->div_factor);
    if (!(s->final_div_factor > 0.0 && isfinite(s->final_div_factor)))
      return dd_error(DD_ECONFIG, "schedule.final_div_factor = %g: must be a finite number > 0", s->final_div_factor);
  }
  if (s->warmup_steps < 0)
    return dd_error(DD_ECONFIG, "schedule.warmup_steps = %lld: must be >= 0", (long long)s->warmup_steps);
  if (!in(s->warmup_epochs, 0.0, 1e9))
    return dd_error(DD_ECONFIG, "schedule.warmup_epochs = %g: must be a number >= 0", s->warmup_epochs);
  if (s->warmup_steps > 0 && s->warmup_epochs > 0)
    return dd_error(DD_ECONFIG, "schedule.warmup_steps and schedule.warmup_epochs are both set; use one of them");
  const bool warm = s->warmup_steps > 0 || s->warmup_epochs > 0;
  if (!isnan(s->warmup_start_factor) && !warm)
    return dd_error(DD_ECONFIG, "schedule.warmup_start_factor has no effect without schedule.warmup_steps or "
                                "schedule.warmup_epochs; set one or remove it");
  if (warm && isnan(s->warmup_start_factor))
    s->warmup_start_factor = 1.0 / 3.0; /* LinearLR's start_factor */
  if (warm && !(s->warmup_start_factor > 0.0 && s->warmup_start_factor <= 1.0))
    return dd_error(DD_ECONFIG, "schedule.warmup_start_factor = %g: must be in (0, 1]", s->warmup_start_factor);
  return DD_OK;
}

int dd_schedule_init(const dd_schedule_spec *s, double base_lr, int64_t epochs, int64_t steps_per_epoch,
                     dd_schedule *out) {
  memset(out, 0, sizeof *out);
  out->spec = *s;
  int rc = dd_schedule_resolve(&out->spec);
  if (rc)
    return rc;
  const dd_schedule_spec *r = &out->spec;
  out->base_lr = base_lr;
  out->steps_per_epoch = steps_per_epoch;
  int64_t run = r->unit == DD_SCHED_UNIT_STEPS ? epochs * steps_per_epoch : epochs;
  int64_t len = r->kind == DD_SCHED_COSINE ? r->t_max : r->total;
  out->length = len > 0 ? len : (run > 0 ? run : 1);
  out->warmup = r->warmup_steps > 0 ? r->warmup_steps : (int64_t)llround(r->warmup_epochs * (double)steps_per_epoch);
  if (r->warmup_epochs > 0 && out->warmup < 1)
    out->warmup = 1;
  return DD_OK;
}

/* OneCycleLR (cycle_momentum=False, cosine annealing, two phases). */
static double onecycle(const dd_schedule *s, double t) {
  const double T = (double)s->length;
  const double max_lr = s->base_lr, initial = max_lr / s->spec.div_factor;
  const double min_lr = initial / s->spec.final_div_factor;
  const double end1 = s->spec.pct_start * T - 1.0, end2 = T - 1.0;
  if (t > end2) /* PyTorch raises past total_steps; ddtrain stays at the end */
    t = end2;
  double start, end, lo, hi;
  if (t <= end1) {
    start = initial, end = max_lr, lo = 0.0, hi = end1;
  } else {
    start = max_lr, end = min_lr, lo = end1, hi = end2;
  }
  double pct = hi > lo ? (t - lo) / (hi - lo) : 1.0;
  return end + (start - end) / 2.0 * (cos(DD_PI * pct) + 1.0);
}

double dd_schedule_lr(const dd_schedule *s, int64_t step, int64_t epoch) {
  const dd_schedule_spec *r = &s->spec;
  const int64_t ti = r->unit == DD_SCHED_UNIT_EPOCHS ? epoch : step;
  const double t = (double)ti, base = s->base_lr;
  double lr = base;
  switch (r->kind) {
  case DD_SCHED_CONSTANT:
    break;
  case DD_SCHED_STEP:
    lr = base * pow(r->gamma, (double)(ti / r->step_size));
    break;
  case DD_SCHED_MULTISTEP: {
    int k = 0; /* milestones passed: bisect_right(milestones, t) */
    while (k < r->nmilestones && r->milestones[k] <= ti)
      k++;
    lr = base * pow(r->gamma, (double)k);
    break;
  }
  case DD_SCHED_EXPONENTIAL:
    lr = base * pow(r->gamma, t);
    break;
  case DD_SCHED_COSINE: { /* after t_max the LR stays at eta_min */
    const double tc = fmin(t, (double)s->length);
    lr = r->eta_min + (base - r->eta_min) * (1.0 + cos(DD_PI * tc / (double)s->length)) / 2.0;
    break;
  }
  case DD_SCHED_POLYNOMIAL:
    lr = base * pow(1.0 - fmin(t, (double)s->length) / (double)s->length, r->power);
    break;
  case DD_SCHED_ONECYCLE:
    lr = onecycle(s, t);
    break;
  }
  if (s->warmup > 0 && step < s->warmup) {
    const double f = r->warmup_start_factor;
    lr *= f + (1.0 - f) * (double)step / (double)s->warmup;
  }
  return lr;
}

char *dd_schedule_describe(const dd_schedule *s, char *buf, int n) {
  const dd_schedule_spec *r = &s->spec;
  const char *u = dd_schedule_unit_name(r->unit);
  int used = 0;
  switch (r->kind) {
  case DD_SCHED_CONSTANT:
    used = snprintf(buf, (size_t)n, "constant");
    break;
  case DD_SCHED_STEP:
    used = snprintf(buf, (size_t)n, "step: x%g every %lld %s", r->gamma, (long long)r->step_size, u);
    break;
  case DD_SCHED_MULTISTEP:
    used = snprintf(buf, (size_t)n, "multistep: x%g at %lld", r->gamma, (long long)r->milestones[0]);
    for (int i = 1; i < r->nmilestones && used < n; i++)
      used += snprintf(buf + used, (size_t)(n - used), ", %lld", (long long)r->milestones[i]);
    if (used < n)
      used += snprintf(buf + used, (size_t)(n - used), " %s", u);
    break;
  case DD_SCHED_EXPONENTIAL:
    used = snprintf(buf, (size_t)n, "exponential: x%g per %s", r->gamma,
                    r->unit == DD_SCHED_UNIT_STEPS ? "step" : "epoch");
    break;
  case DD_SCHED_COSINE:
    used = snprintf(buf, (size_t)n, "cosine over %lld %s down to %g", (long long)s->length, u, r->eta_min);
    break;
  case DD_SCHED_POLYNOMIAL:
    used = snprintf(buf, (size_t)n, "polynomial (power %g) over %lld %s", r->power, (long long)s->length, u);
    break;
  case DD_SCHED_ONECYCLE:
    used = snprintf(buf, (size_t)n, "onecycle over %lld %s (peak at %g, div %g, final div %g)", (long long)s->length, u,
                    r->pct_start, r->div_factor, r->final_div_factor);
    break;
  }
  if (s->warmup > 0 && used < n)
    snprintf(buf + used, (size_t)(n - used), ", linear warmup over %lld steps from %.3gx", (long long)s->warmup,
             r->warmup_start_factor);
  return buf;
}
