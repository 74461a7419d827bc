/* Finite-difference gradient checker over real layer code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

void dd_gc_defaults(dd_gc_opts *o) {
  memset(o, 0, sizeof *o);
  o->B = 3;
  o->seed = 1;
  o->eps = 1e-2;
  o->tol = 2e-3;
  o->max_checks = 24;
  o->check_input = true;
}

static double objective(dd_model *m, const dd_pass *p, const float *x0, const float *w) {
  memcpy(m->acts[0], x0, sizeof(float) * (size_t)(p->B * m->in_size));
  if (dd_model_forward(m, p) != 0)
    return NAN;
  const float *y = m->acts[m->nlayers];
  double L = 0.0;
  for (int64_t i = 0; i < (int64_t)p->B * m->out_size; i++)
    L += (double)w[i] * (double)y[i];
  return L;
}

/* Backward through all layers, including d L / d x into dx0. */
static int backward_all(dd_model *m, const dd_pass *p, const float *w, float *dx0) {
  memcpy(m->dbuf[0], w, sizeof(float) * (size_t)(p->B * m->out_size));
  int cur = 0;
  for (int i = m->nlayers - 1; i >= 0; i--) {
    dd_layer *l = &m->layers[i];
    float *dx = i > 0 ? m->dbuf[cur ^ 1] : dx0;
    int rc = l->kind->backward(l, p, m->acts[i], m->acts[i + 1], m->dbuf[cur], dx);
    if (rc)
      return rc;
    cur ^= 1;
  }
  return 0;
}

/* Relative error with a floor: an entry far smaller than the largest
 * gradient of its tensor is dominated by float32 noise in L (about 1e-6),
 * so it is judged against a tenth of that scale instead of its own size. */
static double g_floor = 1e-2;
static double rel_err(double a, double n) {
  return fabs(a - n) / fmax(g_floor, fabs(a) + fabs(n));
}
static void set_floor(const float *g, int64_t n) {
  double mx = 0;
  for (int64_t i = 0; i < n; i++)
    mx = fmax(mx, fabs(g[i]));
  g_floor = fmax(1e-2, 0.1 * mx);
}

/* One-sided and central differences at step eps (in the float steps
 * actually taken). */
static void diffs(dd_model *m, const dd_pass *p, const float *x0, const float *w, float *v, double eps, double l0,
                  double *fwd, double *bwd, double *cen) {
  float keep = *v;
  *v = (float)(keep + eps);
  double lp = objective(m, p, x0, w);
  double up = (double)*v - (double)keep;
  *v = (float)(keep - eps);
  double lm = objective(m, p, x0, w);
  double down = (double)keep - (double)*v;
  *v = keep;
  *fwd = (lp - l0) / up;
  *bwd = (l0 - lm) / down;
  *cen = (lp - lm) / (up + down);
}

/* d L / d *v by Richardson extrapolation of central differences at eps and
 * eps/2 (error O(eps^4), so curvature of tanh/sigmoid stacks does not
 * masquerade as a bug). *kink is set when the estimates disagree by far
 * more than curvature explains: a ReLU/max kink lies inside the step (the
 * one-sided slopes differ even at the small step) and the function is not
 * differentiable there at float resolution. */
static double numeric(dd_model *m, const dd_pass *p, const float *x0, const float *w, float *v, double eps, double tol,
                      bool *kink) {
  double l0 = objective(m, p, x0, w), f1, b1, d1, f2, b2, d2;
  diffs(m, p, x0, w, v, eps, l0, &f1, &b1, &d1);
  diffs(m, p, x0, w, v, eps / 2, l0, &f2, &b2, &d2);
  *kink = rel_err(d1, d2) > 10 * tol || rel_err(f2, b2) > 10 * tol;
  return (4.0 * d2 - d1) / 3.0;
}

/* Compare one entry; returns 1 if it is wrong, 0 if right, 0 with (*skipped)++ at a kink. */
static int check_entry(const char *label, const char *what, int64_t i, double a, dd_model *m, const dd_pass *p,
                       const float *x0, const float *w, float *v, const dd_gc_opts *o, double *max_err, int *skipped) {
  bool kink;
  double num = numeric(m, p, x0, w, v, o->eps, o->tol, &kink);
  if (kink) /* try a smaller step before giving up on this point */
    num = numeric(m, p, x0, w, v, o->eps / 16, o->tol, &kink);
  if (kink) {
    (*skipped)++;
    return 0;
  }
  double e = rel_err(a, num);
  *max_err = fmax(*max_err, e / 10);
  if (e <= 10 * o->tol) /* per entry: structural bugs (indexing, transposes) */
    return 0;
  fprintf(stderr, "gradcheck %s: %s[%lld]: analytic %.6g numeric %.6g (rel err %.3g)\n", label, what, (long long)i, a,
          num, e);
  return 1;
}

/* Directional derivative along a random direction u over all entries of v:
 * numeric (Richardson on L(v + t u)) vs analytic sum(g u). This sums many
 * entries, so float noise and the odd kink are diluted, and it is where the
 * strict tolerance applies (a gradient off by 1% fails it). */
static int check_direction(const char *label, const char *what, int dir, float *v, const float *g, int64_t n,
                           dd_model *m, const dd_pass *p, const float *x0, const float *w, const dd_gc_opts *o,
                           dd_rng *r, double *max_err) {
  float *keep = dd_alloc((size_t)n, sizeof(float));
  double *u = dd_alloc((size_t)n, sizeof(double));
  memcpy(keep, v, sizeof(float) * (size_t)n);
  double norm = 0, an = 0, gn = 0;
  for (int64_t i = 0; i < n; i++) {
    u[i] = dd_rng_normal(r);
    norm += u[i] * u[i];
  }
  norm = sqrt(norm);
  for (int64_t i = 0; i < n; i++) {
    u[i] /= norm;
    an += u[i] * g[i];
    gn += (double)g[i] * g[i];
  }
  double num = 0;
  bool kink = true;
  for (double eps = o->eps; kink && eps >= o->eps / 64; eps /= 8) {
    double L[5], ts[5] = {eps, -eps, eps / 2, -eps / 2, 0};
    for (int k = 0; k < 5; k++) {
      for (int64_t i = 0; i < n; i++)
        v[i] = (float)(keep[i] + ts[k] * u[i]);
      L[k] = objective(m, p, x0, w);
    }
    memcpy(v, keep, sizeof(float) * (size_t)n);
    double d1 = (L[0] - L[1]) / (2 * eps), d2 = (L[2] - L[3]) / eps;
    double f2 = (L[2] - L[4]) / (eps / 2), b2 = (L[4] - L[3]) / (eps / 2);
    num = (4 * d2 - d1) / 3;
    kink = rel_err(d1, d2) > 10 * o->tol || rel_err(f2, b2) > 10 * o->tol;
  }
  if (kink) { /* a kink at every step size: this direction proves nothing */
    dd_free(keep);
    dd_free(u);
    return 0;
  }
  /* judged against the gradient's norm: |g . u| can be near 0 by chance */
  double e = fabs(an - num) / fmax(1e-3, fmax(fabs(an) + fabs(num), 0.3 * sqrt(gn)));
  *max_err = fmax(*max_err, e);
  dd_free(keep);
  dd_free(u);
  if (e <= o->tol)
    return 0;
  fprintf(stderr, "gradcheck %s: %s along direction %d: analytic %.6g numeric %.6g (rel err %.3g)\n", label, what, dir,
          an, num, e);
  return 1;
}

int dd_gradcheck(const char *label, const dd_layer_spec *specs, int nlayers, dd_shape input, const dd_gc_opts *o,
                 double *max_err) {
  dd_model_spec spec = {.input = input, .nlayers = nlayers, .layers = (dd_layer_spec *)specs, .loss = DD_LOSS_MSE};
  dd_model *m = NULL;
  *max_err = 0.0;
  if (dd_model_build(&spec, o->B, 0, &m) != 0) {
    fprintf(stderr, "gradcheck %s: build failed: %s\n", label, dd_error_message());
    return 1;
  }
  dd_model_init_params(m, o->seed);
  dd_rng r;
  dd_rng_seed(&r, o->seed, 99);
  if (o->param_scale > 0)
    for (int64_t i = 0; i < m->nparams; i++)
      m->params[i] += (float)(o->param_scale * dd_rng_normal(&r));
  int64_t nx = (int64_t)o->B * m->in_size, ny = (int64_t)o->B * m->out_size;
  float *x0 = dd_alloc((size_t)nx, sizeof(float));
  float *w = dd_alloc((size_t)ny, sizeof(float));
  float *dx = dd_alloc((size_t)nx, sizeof(float));
  float *ga = dd_alloc((size_t)(m->nparams ? m->nparams : 1), sizeof(float));
  for (int64_t i = 0; i < nx; i++) {
    if (o->x) {
      x0[i] = o->x[i];
    } else if (o->token_vocab > 0) {
      x0[i] = (float)dd_rng_below(&r, (uint64_t)o->token_vocab);
    } else {
      /* keep inputs away from 0 so ReLU-like kinks are not straddled */
      double v = dd_rng_normal(&r);
      x0[i] = (float)(v >= 0 ? v + 0.05 : v - 0.05);
    }
  }
  for (int64_t i = 0; i < ny; i++)
    w[i] = (float)dd_rng_normal(&r);
  dd_pass p = {.B = o->B, .B_global = o->B, .train = o->train, .seed = o->seed, .step = 3, .lengths = o->lengths};
  int fails = 0;
  const bool verbose = getenv("DD_GRADCHECK_VERBOSE") != NULL;
  dd_model_zero_grad(m);
  objective(m, &p, x0, w);
  if (backward_all(m, &p, w, dx) != 0) {
    fprintf(stderr, "gradcheck %s: backward failed: %s\n", label, dd_error_message());
    fails++;
    goto out;
  }
  memcpy(ga, m->grads, sizeof(float) * (size_t)m->nparams);
  int skipped = 0, checked = 0;
  for (int t = 0; t < m->ntensors; t++) {
    dd_tensor_ref *tr = &m->tensors[t];
    if (tr->is_buffer)
      continue;
    dd_param *pp = tr->param;
    set_floor(ga + pp->offset, pp->size);
    int n = pp->size < o->max_checks ? (int)pp->size : o->max_checks;
    for (int k = 0; k < n; k++, checked++) {
      int64_t i = pp->size <= o->max_checks ? k : (int64_t)dd_rng_below(&r, (uint64_t)pp->size);
      fails += check_entry(label, tr->name, i, ga[pp->offset + i], m, &p, x0, w, &pp->data[i], o, max_err, &skipped);
    }
    for (int d = 0; d < 3; d++)
      fails += check_direction(label, tr->name, d, pp->data, ga + pp->offset, pp->size, m, &p, x0, w, o, &r, max_err);
  }
  if (o->check_input && o->token_vocab == 0) {
    int n = nx < o->max_checks ? (int)nx : o->max_checks;
    set_floor(dx, nx);
    for (int k = 0; k < n; k++, checked++) {
      int64_t i = nx <= o->max_checks ? k : (int64_t)dd_rng_below(&r, (uint64_t)nx);
      fails += check_entry(label, "input", i, dx[i], m, &p, x0, w, &x0[i], o, max_err, &skipped);
    }
    for (int d = 0; d < 3; d++)
      fails += check_direction(label, "input", d, x0, dx, nx, m, &p, x0, w, o, &r, max_err);
  }
  if (skipped * 5 > checked) { /* kinks everywhere means the check proved nothing */
    fprintf(stderr, "gradcheck %s: %d of %d entries sit on kinks; use smoother inputs\n", label, skipped, checked);
    fails++;
  }
  if (o->skipped)
    *o->skipped = skipped;
  if (verbose && skipped)
    fprintf(stderr, "gradcheck %s: skipped %d of %d entries at kinks\n", label, skipped, checked);
out:
  if (verbose)
    fprintf(stderr, "gradcheck %s: worst rel err %.3g\n", label, *max_err);
  dd_free(x0);
  dd_free(w);
  dd_free(dx);
  dd_free(ga);
  dd_model_free(m);
  return fails;
}
