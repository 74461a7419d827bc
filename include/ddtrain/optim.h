/* ddtrain optimizers: update rules over the flat parameter arena.
 *
 * Every piece of optimizer state is an arena shaped like the parameters
 * (momentum buffer, Adam moments, ...), so an update is one flat loop and
 * the checkpoint stores each state arena with the parameters' tensor names.
 * Update rules and defaults follow PyTorch's torch.optim documentation
 * (formulas in docs/optimizers.md). */
#ifndef DDTRAIN_OPTIM_H
#define DDTRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#define DD_OPTIM_MAX_STATE 4

enum { DD_OPTIM_SGD = 0, DD_OPTIM_ADAM, DD_OPTIM_ADAMW, DD_OPTIM_RMSPROP, DD_OPTIM_ADAGRAD, DD_OPTIM_NKINDS };

/* Which parameters weight decay applies to (optim.decay): every one, or
 * only the weight matrices (the model says which tensors those are; the
 * trainer marks the others with dd_optim_no_decay). */
enum { DD_DECAY_ALL = 0, DD_DECAY_WEIGHTS, DD_DECAY_NKINDS };

/* Hyperparameters. A NaN means "the optimizer's default" and a key that
 * does not apply to the kind must stay NaN (or false): dd_optim_resolve
 * fills the defaults and rejects the rest, naming the config key. */
typedef struct dd_optim_spec {
  int kind;                         /* DD_OPTIM_* */
  double lr;                        /* base learning rate (before schedule and scaling) */
  double momentum;                  /* sgd, rmsprop */
  double dampening;                 /* sgd */
  bool nesterov;                    /* sgd */
  double betas[2];                  /* adam, adamw */
  double eps;                       /* adam, adamw, rmsprop, adagrad */
  bool amsgrad;                     /* adam, adamw */
  double alpha;                     /* rmsprop smoothing constant */
  bool centered;                    /* rmsprop */
  double lr_decay;                  /* adagrad */
  double initial_accumulator_value; /* adagrad */
  double weight_decay;              /* all: L2 added to the gradient, or decoupled */
  bool decoupled_weight_decay;      /* p <- p (1 - lr wd) before the update (always for adamw) */
  int decay;                        /* DD_DECAY_*: all parameters (default) or weight matrices only */
  /* trainer options, any optimizer */
  double clip_norm;       /* clip the global gradient L2 norm to this (0 = off) */
  int64_t ref_batch_size; /* linear scaling rule: lr is for this global batch (0 = off) */
} dd_optim_spec;

/* kind sgd, every hyperparameter "default" (NaN), no clipping or scaling. */
void dd_optim_spec_defaults(dd_optim_spec *s);
/* Config name of a kind ("sgd"), and back (-1 if unknown). */
const char *dd_optim_name(int kind);
int dd_optim_find(const char *name);
/* Config name of a DD_DECAY_* value ("all", "weights"), and back (-1 if unknown). */
const char *dd_optim_decay_name(int decay);
int dd_optim_decay_find(const char *name);
/* "sgd, adam, adamw, rmsprop, adagrad" into buf; returns buf. */
char *dd_optim_names(char *buf, int n);
/* Fill the kind's defaults into NaN fields, reject keys that do not apply
 * to the kind and out-of-range values. Idempotent. Errors name the config
 * key ("optim.betas = [0.9, 1]: each beta must be in [0, 1)"). */
int dd_optim_resolve(dd_optim_spec *s);
/* The learning rate after the linear scaling rule:
 * lr * global_batch / ref_batch_size (lr itself when that is off). */
double dd_optim_scaled_lr(const dd_optim_spec *s, int64_t global_batch);

/* A run of the arena, [offset, offset + size). */
typedef struct dd_optim_range {
  int64_t offset, size;
} dd_optim_range;

typedef struct dd_optim {
  dd_optim_spec spec; /* resolved */
  int64_t n;          /* parameters */
  /* parameter groups: runs of the arena without weight decay, sorted,
   * disjoint, not adjacent (owned); everything else decays */
  int nno_decay;
  dd_optim_range *no_decay;
  int64_t t; /* updates applied so far (checkpointed; Adam's bias correction) */
  int nstate;
  const char *state_name[DD_OPTIM_MAX_STATE]; /* PyTorch's names: "exp_avg", ... */
  float *state[DD_OPTIM_MAX_STATE];           /* [n] each, owned */
} dd_optim;

/* Resolves a copy of *s. *out owned by the caller (dd_optim_free). State
 * starts at zero (Adagrad's sum at initial_accumulator_value). */
int dd_optim_create(const dd_optim_spec *s, int64_t n, dd_optim **out);
/* How many parameter-sized state arenas dd_optim_create will allocate (0 for a spec it would refuse). */
int dd_optim_state_count(const dd_optim_spec *s);
void dd_optim_free(dd_optim *o);

/* Take [offset, offset + size) out of weight decay (a parameter group with
 * weight_decay 0: biases, norms, embeddings under optim.decay: weights).
 * Call before the first step; ranges may touch or overlap earlier ones.
 * DD_EINVAL if the range is not inside [0, n). */
int dd_optim_no_decay(dd_optim *o, int64_t offset, int64_t size);

/* One update: g = grad_scale * grads[i] (the trainer passes 1 / global
 * count, times the clipping factor), then the rule with learning rate lr
 * (this step's scheduled value). Increments o->t. One flat loop. */
int dd_optim_step(dd_optim *o, float *params, const float *grads, float grad_scale, double lr);

/* Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
 * dd_optim_grad_norm: || grad_scale * grads[0..n) ||_2, accumulated in
 * double in a fixed order (the same value on every rank for the same
 * arena). dd_optim_clip_factor: min(1, max_norm / (norm + 1e-6)), or 1
 * when max_norm <= 0. */
double dd_optim_grad_norm(const float *grads, int64_t n, double grad_scale);
double dd_optim_clip_factor(double norm, double max_norm);

#endif
