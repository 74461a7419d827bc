/* ddtrain optimizers: update rules over the flat parameter arena.
 *
 * Every piece of optimizer state is an arena shaped like the parameters
 * (momentum buffer, Adam moments, ...), so an update is one flat loop and
 * the checkpoint stores each state arena with the parameters' tensor names.
 * Update rules and defaults follow PyTorch's torch.optim documentation. */
#ifndef DDTRAIN_OPTIM_H
#define DDTRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#define DD_OPTIM_MAX_STATE 4

enum { DD_OPTIM_SGD = 0 };

typedef struct dd_optim_spec {
  int kind;            /* DD_OPTIM_* */
  double lr;           /* base learning rate */
  double momentum;     /* SGD */
  double dampening;    /* SGD */
  bool nesterov;       /* SGD */
  double weight_decay; /* L2 penalty added to the gradient */
} dd_optim_spec;

void dd_optim_spec_defaults(dd_optim_spec *s);
/* Config name of a kind ("sgd"), and back (-1 if unknown). */
const char *dd_optim_name(int kind);
int dd_optim_find(const char *name);
/* Check hyperparameters; errors name the config key ("optim.momentum"). */
int dd_optim_validate(const dd_optim_spec *s);

typedef struct dd_optim {
  dd_optim_spec spec;
  int64_t n; /* parameters */
  int64_t t; /* updates applied so far (checkpointed) */
  int nstate;
  const char *state_name[DD_OPTIM_MAX_STATE]; /* "momentum_buffer", ... */
  float *state[DD_OPTIM_MAX_STATE];           /* [n] each, owned */
} dd_optim;

/* *out owned by the caller (dd_optim_free). State starts at zero. */
int dd_optim_create(const dd_optim_spec *s, int64_t n, dd_optim **out);
void dd_optim_free(dd_optim *o);

/* One update: g = grad_scale * grads[i] (the trainer passes 1 / global
 * count to turn summed gradients into means), then the rule with learning
 * rate lr. Increments o->t. */
void dd_optim_step(dd_optim *o, float *params, const float *grads, float grad_scale, double lr);

#endif
