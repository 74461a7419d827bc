/* optim: every update rule against PyTorch (optim_ref.h, from gen_optim_ref.py),
 * SGD by hand, state arenas, hyperparameter errors, clipping helpers. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "ddtrain/config.h"
#include "ddtrain/core.h"
#include "ddtrain/optim.h"
#include "optim_ref.h"

DD_TEST_GLOBALS;

/* Run `steps` updates on one parameter with gradient sequence g[]. */
static double run_sgd(dd_optim_spec s, double p0, const double *g, int steps, double scale) {
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&s, 1, &o));
  if (!o)
    return NAN;
  float p = (float)p0;
  for (int t = 0; t < steps; t++) {
    float gr = (float)g[t];
    dd_optim_step(o, &p, &gr, (float)scale, s.lr);
  }
  CHECK_INT(o->t, steps);
  dd_optim_free(o);
  return p;
}

static void plain_sgd(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  double g[3] = {1.0, -2.0, 0.5};
  /* p = 1 - 0.1 * (1 - 2 + 0.5) = 1.05 */
  CHECK_NEAR(run_sgd(s, 1.0, g, 3, 1.0), 1.05, 1e-6);
  /* grad_scale divides summed gradients: scale 0.5 halves every step */
  CHECK_NEAR(run_sgd(s, 1.0, g, 3, 0.5), 1.025, 1e-6);
}

static void weight_decay(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.weight_decay = 0.5;
  double g[2] = {0.0, 0.0};
  /* p <- p - lr * wd * p = 0.95 p, twice: 2 * 0.9025 */
  CHECK_NEAR(run_sgd(s, 2.0, g, 2, 1.0), 1.805, 1e-6);
  /* decoupled: the same without momentum */
  s.decoupled_weight_decay = true;
  CHECK_NEAR(run_sgd(s, 2.0, g, 2, 1.0), 1.805, 1e-6);
}

static void momentum_pytorch_semantics(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.momentum = 0.9;
  double g[3] = {1.0, 1.0, 1.0};
  /* PyTorch: buf1 = g = 1; buf2 = 0.9 + 1 = 1.9; buf3 = 1.71 + 1 = 2.71
   * p = 0 - 0.1 * (1 + 1.9 + 2.71) = -0.561 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 3, 1.0), -0.561, 1e-6);
  s.dampening = 0.5;
  /* buf1 = 1 (no dampening on the first step); buf2 = 0.9 + 0.5 = 1.4; buf3 = 1.26 + 0.5 = 1.76
   * p = -0.1 * (1 + 1.4 + 1.76) = -0.416 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 3, 1.0), -0.416, 1e-6);
}

static void nesterov(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  s.momentum = 0.9;
  s.nesterov = true;
  double g[2] = {1.0, 1.0};
  /* step 1: buf = 1, d = 1 + 0.9 * 1 = 1.9; step 2: buf = 1.9, d = 1 + 0.9 * 1.9 = 2.71
   * p = -0.1 * (1.9 + 2.71) = -0.461 */
  CHECK_NEAR(run_sgd(s, 0.0, g, 2, 1.0), -0.461, 1e-6);
}

static void adam_by_hand(void) {
  /* Adam's first step moves every coordinate by lr * sign(g) (up to eps):
   * m1 = (1 - b1) g, v1 = (1 - b2) g^2, m1 / (1 - b1) / sqrt(v1 / (1 - b2)) = sign(g) */
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_ADAM;
  dd_optim *o = NULL;
  CHECK_OK(dd_optim_create(&s, 3, &o));
  if (!o)
    return;
  CHECK_NEAR(o->spec.lr, 1e-3, 1e-15);
  float p[3] = {0, 0, 0}, g[3] = {4.0f, -0.01f, 0.0f};
  dd_optim_step(o, p, g, 1.0f, 0.5);
  CHECK_NEAR(p[0], -0.5, 1e-6);
  CHECK_NEAR(p[1], 0.5, 1e-5);
  CHECK(p[2] == 0.0f); /* no gradient, no move */
  dd_optim_free(o);
}

/* Parse an optim section as a config file would have it. */
static int parse_optim(const char *yaml, dd_config **c) {
  char text[512];
  snprintf(text, sizeof text, "model: {layers: [relu]}\noptim: %s\n", yaml);
  return dd_config_parse(text, "ref.yaml", 0, NULL, c);
}

static void matches_pytorch(void) {
  int ncases = (int)(sizeof optim_refs / sizeof optim_refs[0]);
  for (int k = 0; k < ncases; k++) {
    const optim_ref *r = &optim_refs[k];
    dd_config *c = NULL;
    dd_optim *o = NULL;
    CHECK_OK(parse_optim(r->yaml, &c));
    if (c)
      CHECK_OK(dd_optim_create(&c->optim, REF_N, &o));
    if (!o) {
      DD_FAIL_AT("%s: no optimizer", r->name);
      dd_config_free(c);
      continue;
    }
    CHECK_NEAR(o->spec.lr, r->lr, 1e-15); /* defaults too */
    float p[REF_N];
    memcpy(p, ref_p0, sizeof p);
    double worst = 0.0;
    for (int t = 0; t < REF_STEPS; t++) {
      dd_optim_step(o, p, ref_grads[t], ref_grad_scale, o->spec.lr * ref_lr_factor[t]);
      for (int i = 0; i < REF_N; i++) {
        /* float32 on both sides; PyTorch's kernels may round differently
         * (fused multiply-add, operation order) by an ulp or so per step */
        double err = fabs((double)p[i] - (double)r->p[t][i]) / fmax(1.0, fabs((double)r->p[t][i]));
        worst = worst_of(worst, err);
        if (!(err <= 5e-7))
          DD_FAIL_AT("%s: step %d, p[%d] = %.9g, PyTorch %.9g", r->name, t + 1, i, (double)p[i], (double)r->p[t][i]);
      }
    }
    printf("  %-30s max rel err vs PyTorch %.2g\n", r->name, worst);
    CHECK_INT(o->t, REF_STEPS);
    dd_optim_free(o);
    dd_config_free(c);
  }
}

/* Parameter groups (optim.decay: weights): the runs of ref_no_decay take
 * weight_decay 0, as torch.optim param groups do. */
static void groups_match_pytorch(void) {
  for (int k = 0; k < (int)(sizeof group_refs / sizeof group_refs[0]); k++) {
    const optim_ref *r = &group_refs[k];
    dd_config *c = NULL;
    dd_optim *o = NULL;
    CHECK_OK(parse_optim(r->yaml, &c));
    if (c) {
      CHECK_INT(c->optim.decay, DD_DECAY_WEIGHTS);
      CHECK_OK(dd_optim_create(&c->optim, REF_N, &o));
    }
    if (!o) {
      DD_FAIL_AT("%s: no optimizer", r->name);
      dd_config_free(c);
      continue;
    }
    for (int g = 0; g < (int)(sizeof ref_no_decay / sizeof ref_no_decay[0]); g++)
      CHECK_OK(dd_optim_no_decay(o, ref_no_decay[g][0], ref_no_decay[g][1]));
    float p[REF_N];
    memcpy(p, ref_p0, sizeof p);
    double worst = 0.0;
    for (int t = 0; t < REF_STEPS; t++) {
      dd_optim_step(o, p, ref_grads[t], ref_grad_scale, o->spec.lr * ref_lr_factor[t]);
      for (int i = 0; i < REF_N; i++) {
        double err = fabs((double)p[i] - (double)r->p[t][i]) / fmax(1.0, fabs((double)r->p[t][i]));
        worst = worst_of(worst, err);
        if (!(err <= 5e-7))
          DD_FAIL_AT("%s: step %d, p[%d] = %.9g, PyTorch %.9g", r->name, t + 1, i, (double)p[i], (double)r->p[t][i]);
      }
    }
    printf("  %-30s max rel err vs PyTorch %.2g\n", r->name, worst);
    dd_optim_free(o);
    dd_config_free(c);
  }
}

/* By hand: AdamW with zero gradients moves nothing but the decay, so a
 * decaying entry becomes p (1 - lr wd) and a no-decay one stays bit for bit;
 * decay: all (the default, no groups) is the arithmetic of before. Ranges
 * merge, and one outside the arena is refused. */
static void groups_by_hand(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_ADAMW;
  s.lr = 0.1;
  s.weight_decay = 0.5;
  enum { N = 40 };
  dd_optim *o = NULL, *all = NULL;
  CHECK_OK(dd_optim_create(&s, N, &o));
  CHECK_OK(dd_optim_create(&s, N, &all));
  if (!o || !all)
    return;
  CHECK_OK(dd_optim_no_decay(o, 10, 5));
  CHECK_OK(dd_optim_no_decay(o, 30, 10));
  CHECK_OK(dd_optim_no_decay(o, 15, 3)); /* touches [10, 15): merged */
  CHECK_OK(dd_optim_no_decay(o, 12, 2)); /* inside: nothing new */
  CHECK_INT(o->nno_decay, 2);
  CHECK_INT(o->no_decay[0].offset, 10);
  CHECK_INT(o->no_decay[0].size, 8);
  CHECK_INT(o->no_decay[1].offset, 30);
  CHECK_INT(o->no_decay[1].size, 10);
  CHECK(dd_optim_no_decay(o, 35, 6) == DD_EINVAL);
  dd_error_clear();
  float p[N], q[N], p0[N], g[N] = {0};
  for (int i = 0; i < N; i++)
    p[i] = q[i] = p0[i] = (float)sin(0.3 * i + 0.1);
  dd_optim_step(o, p, g, 1.0f, s.lr);
  dd_optim_step(all, q, g, 1.0f, s.lr);
  const float f = (float)(1.0 - 0.1 * 0.5);
  for (int i = 0; i < N; i++) {
    const bool decays = !((i >= 10 && i < 18) || i >= 30);
    if (decays && p[i] != p0[i] * f)
      DD_FAIL_AT("entry %d decays: %.9g, want %.9g", i, (double)p[i], (double)(p0[i] * f));
    if (!decays && p[i] != p0[i])
      DD_FAIL_AT("entry %d must not decay: %.9g, was %.9g", i, (double)p[i], (double)p0[i]);
    if (q[i] != p0[i] * f)
      DD_FAIL_AT("decay all, entry %d: %.9g, want %.9g", i, (double)q[i], (double)(p0[i] * f));
  }
  dd_optim_free(o);
  dd_optim_free(all);
}

/* Same rule on a long arena (the vectorised body plus a scalar tail) and
 * element by element on one-float arenas: identical bits. */
static void long_arena_matches_scalar(void) {
  const char *yamls[] = {"{name: adam, amsgrad: true, weight_decay: 0.1}", "{name: adamw}",
                         "{name: rmsprop, momentum: 0.5, centered: true}", "{name: adagrad, lr_decay: 0.1}",
                         "{name: sgd, momentum: 0.9, nesterov: true, weight_decay: 0.01}"};
  enum { N = 67 };
  for (int k = 0; k < 5; k++) {
    dd_config *c = NULL;
    CHECK_OK(parse_optim(yamls[k], &c));
    if (!c)
      continue;
    dd_optim *big = NULL, *one[N];
    CHECK_OK(dd_optim_create(&c->optim, N, &big));
    float p[N], q[N], g[N];
    for (int i = 0; i < N; i++) {
      p[i] = q[i] = (float)sin(0.37 * i);
      CHECK_OK(dd_optim_create(&c->optim, 1, &one[i]));
    }
    for (int t = 0; t < 4; t++) {
      for (int i = 0; i < N; i++)
        g[i] = (float)cos(0.11 * i * (t + 1) + t);
      dd_optim_step(big, p, g, 0.5f, 0.01);
      for (int i = 0; i < N; i++)
        dd_optim_step(one[i], &q[i], &g[i], 0.5f, 0.01);
    }
    CHECK(memcmp(p, q, sizeof p) == 0);
    for (int i = 0; i < N; i++)
      dd_optim_free(one[i]);
    dd_optim_free(big);
    dd_config_free(c);
  }
}

static void validation_errors(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  dd_optim *o = NULL;
  s.lr = -1;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.lr");
  dd_optim_spec_defaults(&s);
  s.momentum = 1.0;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.momentum");
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_ADAM;
  s.betas[1] = 1.0;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.betas");
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_RMSPROP;
  s.eps = 0.0;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.eps");
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_ADAM;
  s.momentum = 0.9; /* not an Adam hyperparameter */
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.momentum does not apply to optim.name adam");
  CHECK_CONTAINS(dd_error_message(), "betas");
  dd_optim_spec_defaults(&s);
  s.centered = true;
  dd_error_clear();
  CHECK(dd_optim_create(&s, 1, &o) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "optim.centered");
  CHECK(o == NULL);
  dd_error_clear();
  CHECK_INT(dd_optim_find("sgd"), DD_OPTIM_SGD);
  CHECK_INT(dd_optim_find("adamw"), DD_OPTIM_ADAMW);
  CHECK_INT(dd_optim_find("nope"), -1);
}

static void resolve_is_idempotent(void) {
  for (int k = 0; k < DD_OPTIM_NKINDS; k++) {
    dd_optim_spec s;
    dd_optim_spec_defaults(&s);
    s.kind = k;
    CHECK_OK(dd_optim_resolve(&s));
    dd_optim_spec again = s;
    CHECK_OK(dd_optim_resolve(&again));
    CHECK(memcmp(&s, &again, sizeof s) == 0);
    CHECK(s.lr > 0);
  }
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.kind = DD_OPTIM_ADAMW;
  CHECK_OK(dd_optim_resolve(&s));
  CHECK_NEAR(s.weight_decay, 0.01, 1e-15); /* PyTorch's AdamW default */
  CHECK(s.decoupled_weight_decay);
  CHECK_NEAR(s.betas[1], 0.999, 1e-15);
}

static void state_shapes(void) {
  static const struct {
    const char *yaml;
    int nstate;
    const char *first, *last;
  } want[] = {
      {"{name: sgd}", 0, NULL, NULL},
      {"{name: sgd, momentum: 0.5}", 1, "momentum_buffer", "momentum_buffer"},
      {"{name: adam}", 2, "exp_avg", "exp_avg_sq"},
      {"{name: adamw, amsgrad: true}", 3, "exp_avg", "max_exp_avg_sq"},
      {"{name: rmsprop}", 1, "square_avg", "square_avg"},
      {"{name: rmsprop, momentum: 0.1, centered: true}", 3, "square_avg", "grad_avg"},
      {"{name: adagrad, initial_accumulator_value: 0.5}", 1, "sum", "sum"},
  };
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    dd_config *c = NULL;
    dd_optim *o = NULL;
    CHECK_OK(parse_optim(want[k].yaml, &c));
    if (c)
      CHECK_OK(dd_optim_create(&c->optim, 10, &o));
    if (o) {
      CHECK_INT(o->nstate, want[k].nstate);
      if (want[k].nstate) {
        CHECK(strcmp(o->state_name[0], want[k].first) == 0);
        CHECK(strcmp(o->state_name[o->nstate - 1], want[k].last) == 0);
      }
      if (o->spec.kind == DD_OPTIM_ADAGRAD)
        CHECK(o->state[0][9] == 0.5f);
    }
    dd_optim_free(o);
    dd_config_free(c);
  }
  dd_optim_free(NULL);
}

static void clipping_helpers(void) {
  float g[11];
  double ss = 0;
  for (int i = 0; i < 11; i++) {
    g[i] = (float)(i - 5);
    ss += (double)g[i] * g[i];
  }
  CHECK_NEAR(dd_optim_grad_norm(g, 11, 1.0), sqrt(ss), 1e-12);
  CHECK_NEAR(dd_optim_grad_norm(g, 11, 0.5), 0.5 * sqrt(ss), 1e-12);
  CHECK(dd_optim_grad_norm(g, 0, 1.0) == 0.0);
  /* torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), applied if < 1 */
  CHECK_NEAR(dd_optim_clip_factor(10.0, 1.0), 1.0 / (10.0 + 1e-6), 1e-15);
  CHECK(dd_optim_clip_factor(0.5, 1.0) == 1.0);
  CHECK(dd_optim_clip_factor(100.0, 0.0) == 1.0); /* off */
}

static void linear_scaling_rule(void) {
  dd_optim_spec s;
  dd_optim_spec_defaults(&s);
  s.lr = 0.1;
  CHECK_OK(dd_optim_resolve(&s));
  CHECK_NEAR(dd_optim_scaled_lr(&s, 1024), 0.1, 1e-15); /* off */
  s.ref_batch_size = 256;
  CHECK_NEAR(dd_optim_scaled_lr(&s, 1024), 0.4, 1e-15);
  CHECK_NEAR(dd_optim_scaled_lr(&s, 64), 0.025, 1e-15);
}

int main(void) {
  RUN(plain_sgd);
  RUN(weight_decay);
  RUN(momentum_pytorch_semantics);
  RUN(nesterov);
  RUN(adam_by_hand);
  RUN(matches_pytorch);
  RUN(groups_match_pytorch);
  RUN(groups_by_hand);
  RUN(long_arena_matches_scalar);
  RUN(validation_errors);
  RUN(resolve_is_idempotent);
  RUN(state_shapes);
  RUN(clipping_helpers);
  RUN(linear_scaling_rule);
  return dd_test_failures ? 1 : 0;
}
