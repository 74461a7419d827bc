/* ddtrain learning-rate schedules (part of the optim module).
 *
 * The LR of a step is a pure function of (step, epoch) and the config:
 *
 *   lr = warmup(step) * main(t),   t = step or epoch (schedule.unit)
 *
 * main(t) starts from the base LR (optim.lr after the linear scaling rule)
 * and follows PyTorch's closed forms (StepLR, MultiStepLR, ExponentialLR,
 * CosineAnnealingLR, PolynomialLR, OneCycleLR); warmup is PyTorch's LinearLR
 * applied per optimizer step and multiplied in (ChainedScheduler). Milestones,
 * t_max and total count from the start of the run, warmup included. Nothing
 * but the step and epoch counters is needed to resume exactly. Formulas and
 * keys: docs/optimizers.md. */
#ifndef DDTRAIN_SCHEDULE_H
#define DDTRAIN_SCHEDULE_H

#include <stdint.h>

enum {
  DD_SCHED_CONSTANT = 0,
  DD_SCHED_STEP,
  DD_SCHED_MULTISTEP,
  DD_SCHED_EXPONENTIAL,
  DD_SCHED_COSINE,
  DD_SCHED_POLYNOMIAL,
  DD_SCHED_ONECYCLE,
  DD_SCHED_NKINDS
};
enum { DD_SCHED_UNIT_UNSET = 0, DD_SCHED_UNIT_STEPS, DD_SCHED_UNIT_EPOCHS };

#define DD_SCHED_MAX_MILESTONES 32

/* As configured. Unset keys: -1 (integers), NaN (numbers), 0 milestones;
 * dd_schedule_resolve fills defaults and rejects keys of other schedules. */
typedef struct dd_schedule_spec {
  int kind; /* DD_SCHED_* */
  int unit; /* DD_SCHED_UNIT_*: what t counts (required unless constant) */
  int64_t step_size;
  double gamma;
  int nmilestones;
  int64_t milestones[DD_SCHED_MAX_MILESTONES];
  int64_t t_max; /* cosine; -1 = the run's length */
  double eta_min;
  int64_t total; /* polynomial, onecycle; -1 = the run's length */
  double power;
  double pct_start, div_factor, final_div_factor; /* onecycle */
  int64_t warmup_steps;                           /* 0 = none */
  double warmup_epochs;                           /* 0 = none; converted to steps */
  double warmup_start_factor;
} dd_schedule_spec;

void dd_schedule_spec_defaults(dd_schedule_spec *s);
const char *dd_schedule_name(int kind);
int dd_schedule_find(const char *name);
/* "constant, step, ..." into buf; returns buf. */
char *dd_schedule_names(char *buf, int n);
const char *dd_schedule_unit_name(int unit); /* "steps", "epochs", "" */
int dd_schedule_unit_find(const char *name); /* -1 if unknown */
/* Defaults, applicability and ranges; errors name the key
 * ("schedule.gamma = 0: must be > 0"). Idempotent. */
int dd_schedule_resolve(dd_schedule_spec *s);

/* A schedule bound to a run. */
typedef struct dd_schedule {
  dd_schedule_spec spec;   /* resolved */
  double base_lr;          /* peak LR: optim.lr after the linear scaling rule */
  int64_t steps_per_epoch; /* for warmup_epochs */
  int64_t length;          /* t_max (cosine) or total (polynomial, onecycle), in spec.unit */
  int64_t warmup;          /* warmup length in optimizer steps (0 = none) */
} dd_schedule;

/* epochs and steps_per_epoch give the run's length (the default t_max or
 * total): train.epochs, or train.epochs * steps_per_epoch with unit steps. */
int dd_schedule_init(const dd_schedule_spec *s, double base_lr, int64_t epochs, int64_t steps_per_epoch,
                     dd_schedule *out);
/* LR of the optimizer step that follows `step` completed steps, during
 * 0-based epoch `epoch`. */
double dd_schedule_lr(const dd_schedule *s, int64_t step, int64_t epoch);
/* One line: "cosine over 90 epochs to 0, warmup 390 steps from 0.333x". */
char *dd_schedule_describe(const dd_schedule *s, char *buf, int n);

#endif
