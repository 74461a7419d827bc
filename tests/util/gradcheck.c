/* Finite-difference gradient checker over real layer code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

/* float32 unit roundoff: |fl(x) - x| <= U32 |x| */
#define U32 0x1p-24

void dd_gc_defaults(dd_gc_opts *o) {
  memset(o, 0, sizeof *o);
  o->B = 3;
  o->seed = 1;
  o->eps = 1e-2;
  o->tol = 2e-3;
  o->max_checks = 24;
  o->check_input = true;
}

double dd_gc_err(double a, double n, double tol, double scale, double floor) {
  double allowed = tol * scale + floor;
  if (!isfinite(a) || !isfinite(n) || !isfinite(allowed))
    return NAN;
  return fabs(a - n) / allowed;
}

/* Keep the worst error seen; a NaN, once seen, stays. */
static void note_worst(double *worst, double e) {
  if (!isnan(*worst) && !(e <= *worst))
    *worst = e;
}

/* One checker run: the model at its base point and what every check needs. */
typedef struct gc_run {
  dd_model *m;
  dd_pass p;
  float *x0;      /* [B * in_size] input; the input checks perturb its entries */
  const float *w; /* [B * out_size] projection defining L */
  const dd_gc_opts *o;
  const char *label;
  double noise;     /* N: bound on the rounding noise of one evaluation of L */
  double worst;     /* worst |a - n| / allowed */
  int skipped;      /* entries skipped at kinks */
  int skipped_dirs; /* directions with a kink at every step */
} gc_run;

static double objective(gc_run *g) {
  dd_model *m = g->m;
  memcpy(m->acts[0], g->x0, sizeof(float) * (size_t)(g->p.B * m->in_size));
  if (dd_model_forward(m, &g->p) != 0)
    return NAN;
  const float *y = m->acts[m->nlayers];
  double L = 0.0;
  for (int64_t i = 0; i < (int64_t)g->p.B * m->out_size; i++)
    L += (double)g->w[i] * (double)y[i];
  return L;
}

/* Backward through all layers, including d L / d x into dx0. */
static int backward_all(dd_model *m, const dd_pass *p, const float *w, float *dx0) {
  memcpy(m->dbuf[0], w, sizeof(float) * (size_t)(p->B * m->out_size));
  return dd_model_backward_input(m, p, dx0);
}

/* ---- the noise floor -------------------------------------------------------
 * The computed L is a smooth function of the parameters plus rounding noise.
 * L = sum_i w_i y_i is summed in double, but every y_i comes out of a float32
 * forward pass and carries its rounding: about U32 times the magnitudes that
 * flowed into it, in an order that depends on the BLAS kernel set (the SSE3
 * and AVX-512 kernels sum in different orders, so they round differently).
 * The noise is not smooth: a step of h moves every downstream value by far
 * more than an ulp, so the roundings at L(v + h) and L(v - h) are unrelated.
 * With |noise| <= N in every evaluation, a central difference over the span
 * s = up + down is off by up to 2N/s, and Richardson's (4 d(h/2) - d(h)) / 3
 * by up to (4 * 2N/h + 2N/(2h)) / 3 = 3N/h. An entry whose true gradient is
 * zero or tiny (a bias before batch norm) has a numeric value of about that
 * size and an analytic one of about U32, so no relative measure can judge
 * it: an entry passes when |a - n| <= tol * |a| + 3N/h (with the actual
 * steps), the same rule for every kernel set.
 *
 * N is the larger of two estimates:
 *   scale     NOISE_ULPS * U32 * sum_i |w_i y_i|: the final rounding of every
 *             output (at most U32 |y_i|) and as much again for what it
 *             inherits; it keeps N from 0 where the probes see no noise;
 *   measured  NOISE_SAFETY * max over NOISE_PROBES random perturbations d of
 *             1 to 4 ulps of every parameter and input of
 *             |L(t + d) + L(t - d) - 2 L(t)| / 2. The second difference has
 *             no first-order term and a second-order one of order U32^2, so
 *             it is the rounding noise of this model at this point with this
 *             kernel set; four probes see a sample of it, the checks see
 *             hundreds of evaluations, hence the safety factor.
 * Measured over every gradient check in the suite under Prescott, Haswell,
 * SkylakeX, Cooperlake and Zen: the largest error beyond tol * |a| was 0.34
 * of the floor (an MLP bias entry, Prescott), the largest |a - n| 0.43 of
 * what was allowed; the measured estimate is the larger one for the deep
 * recurrent stacks (internal rounding that the outputs do not show). The
 * analytic gradient's own rounding, about U32 times the terms it sums, is
 * far below 3N/h since h is 1e-2. */
enum { NOISE_PROBES = 4, NOISE_ULPS = 2, NOISE_SAFETY = 4 };

static double noise_level(gc_run *g, double L0, double *scale_part, double *measured_part) {
  dd_model *m = g->m;
  const float *y = m->acts[m->nlayers];
  double S = 0;
  for (int64_t i = 0; i < (int64_t)g->p.B * m->out_size; i++)
    S += fabs((double)g->w[i] * (double)y[i]);
  int64_t nx = g->o->token_vocab > 0 ? 0 : (int64_t)g->p.B * m->in_size; /* ids are not perturbed */
  int64_t n = m->nparams + nx;
  float *keep = dd_alloc((size_t)(n ? n : 1), sizeof(float));
  float *d = dd_alloc((size_t)(n ? n : 1), sizeof(float));
  memcpy(keep, m->params, sizeof(float) * (size_t)m->nparams);
  memcpy(keep + m->nparams, g->x0, sizeof(float) * (size_t)nx);
  dd_rng r;
  dd_rng_seed(&r, g->o->seed, 7);
  double measured = 0;
  for (int k = 0; k < NOISE_PROBES; k++) {
    for (int64_t i = 0; i < n; i++) {
      float a = fabsf(keep[i]), ulp = nextafterf(a, INFINITY) - a;
      d[i] = (float)(1 + dd_rng_below(&r, 4)) * ulp * (dd_rng_below(&r, 2) ? 1.0f : -1.0f);
    }
    double Ls[2];
    for (int s = 0; s < 2; s++) {
      for (int64_t i = 0; i < m->nparams; i++)
        m->params[i] = s ? keep[i] - d[i] : keep[i] + d[i];
      for (int64_t i = 0; i < nx; i++)
        g->x0[i] = s ? keep[m->nparams + i] - d[m->nparams + i] : keep[m->nparams + i] + d[m->nparams + i];
      Ls[s] = objective(g);
    }
    note_worst(&measured, fabs(Ls[0] + Ls[1] - 2 * L0) / 2);
  }
  memcpy(m->params, keep, sizeof(float) * (size_t)m->nparams);
  memcpy(g->x0, keep + m->nparams, sizeof(float) * (size_t)nx);
  dd_free(keep);
  dd_free(d);
  *scale_part = NOISE_ULPS * U32 * S;
  *measured_part = NOISE_SAFETY * measured;
  if (isnan(*scale_part) || isnan(*measured_part)) /* fmax would drop it */
    return NAN;
  return fmax(*scale_part, *measured_part);
}

/* ---- one finite-difference estimate -----------------------------------------
 * From L at t = 0, +-h and +-h/2 (t the steps actually taken):
 *   d1, d2  central differences at h and h/2; R = (4 d2 - d1) / 3 has error
 *           O(h^4), so curvature of tanh/sigmoid stacks does not masquerade
 *           as a bug;
 *   k1 = |d1 - d2|          smooth L: about h^2 |L'''| / 8;
 *   k2 = h |c1 - c2|        c1, c2 the second differences at h and h/2;
 *                           smooth L: about h^3 |L''''| / 16.
 * A kink with slope jump J inside the step (a ReLU unit crossing 0, a max
 * changing its winner) leaves R off by at most 1.17 max(k1, k2) wherever it
 * sits (k2 = J for a kink at t = 0 exactly, a tie), so an entry is a kink
 * when k1 or k2 exceeds what the relative tolerance and the noise allow (N
 * times the sum of the combination's coefficients). The one-sided slopes
 * are not the test: they differ by h |L''| on any curved function. */
typedef struct fd_est {
  double rich;      /* R */
  double floor;     /* bound on R's rounding noise */
  double k[2];      /* k1, k2 */
  double knoise[2]; /* their rounding-noise bounds */
} fd_est;

/* L[0] = L(0), L[1], L[2] = L(+h), L(-h), L[3], L[4] = L(+h/2), L(-h/2);
 * st[] the positive steps up, down at h and at h/2. */
static fd_est combine(const double L[5], const double st[4], double N) {
  fd_est e;
  double s1 = st[0] + st[1], s2 = st[2] + st[3], h = s1 / 2;
  double d1 = (L[1] - L[2]) / s1, d2 = (L[3] - L[4]) / s2;
  e.rich = (4 * d2 - d1) / 3;
  e.floor = N * (4 * 2 / s2 + 2 / s1) / 3;
  /* c = 2 ((L+ - L0) / up - (L0 - L-) / down) / s */
  double cu1 = 2 / (st[0] * s1), cd1 = 2 / (st[1] * s1), cu2 = 2 / (st[2] * s2), cd2 = 2 / (st[3] * s2);
  double c1 = cu1 * (L[1] - L[0]) - cd1 * (L[0] - L[2]);
  double c2 = cu2 * (L[3] - L[0]) - cd2 * (L[0] - L[4]);
  e.k[0] = fabs(d1 - d2);
  e.knoise[0] = N * (2 / s1 + 2 / s2);
  e.k[1] = h * fabs(c1 - c2);
  e.knoise[1] = N * h * (cu1 + cd1 + cu2 + cd2 + fabs(cu1 + cd1 - cu2 - cd2));
  return e;
}

/* Is there a kink inside the step? rel is the relative part of the allowance.
 * A non-finite estimate is never a kink: it must reach the comparison and fail. */
static bool is_kink(const fd_est *e, double rel) {
  if (!isfinite(e->rich))
    return false;
  return e->k[0] > rel + e->knoise[0] || e->k[1] > rel + e->knoise[1];
}

/* After a kink at step h, at the smaller step: a kink at t = 0 itself (a
 * tie) does not shrink with the step while the noise allowance grows, so a
 * tie measure that stays at least half of what flagged it still counts. */
static bool still_kink(const fd_est *big, double rel_big, const fd_est *e, double rel) {
  if (!isfinite(e->rich))
    return false;
  return is_kink(e, rel) || (big->k[1] > rel_big + big->knoise[1] && !(e->k[1] < big->k[1] / 2));
}

/* L at v = keep, keep +- h, keep +- h/2 (float steps), v restored. */
static fd_est numeric(gc_run *g, float *v, double h) {
  double L[5], st[4];
  float keep = *v;
  L[0] = objective(g);
  for (int k = 0; k < 2; k++) {
    double hk = k ? h / 2 : h;
    *v = (float)(keep + hk);
    st[2 * k] = (double)*v - (double)keep;
    L[1 + 2 * k] = objective(g);
    *v = (float)(keep - hk);
    st[2 * k + 1] = (double)keep - (double)*v;
    L[2 + 2 * k] = objective(g);
  }
  *v = keep;
  return combine(L, st, g->noise);
}

/* Compare one entry; returns 1 if it is wrong, 0 if right, 0 with a skip at a kink. */
static int check_entry(gc_run *g, const char *what, int64_t i, double a, float *v) {
  const double tol = g->o->tol;
  fd_est e = numeric(g, v, g->o->eps);
  if (is_kink(&e, tol * fabs(e.rich))) { /* try a smaller step before giving up on this point */
    fd_est big = e;
    e = numeric(g, v, g->o->eps / 16);
    if (still_kink(&big, tol * fabs(big.rich), &e, tol * fabs(e.rich))) {
      g->skipped++;
      return 0;
    }
  }
  double err = dd_gc_err(a, e.rich, tol, fabs(a), e.floor);
  note_worst(&g->worst, err);
  if (err <= 1)
    return 0;
  fprintf(stderr, "gradcheck %s: %s[%lld]: analytic %.6g numeric %.6g (|diff| %.3g > %g * |analytic| + noise %.3g)\n",
          g->label, what, (long long)i, a, e.rich, fabs(a - e.rich), tol, e.floor);
  return 1;
}

/* Directional derivative along a random unit direction u over all n entries
 * of v: Richardson on L(v + t u) against the analytic value. The steps
 * actually taken, fl(v_i + t u_i) - v_i, are not exactly t u_i; the analytic
 * side is the same Richardson combination of sum_i g_i step_i, so their
 * rounding cancels instead of adding noise. This sees a gradient that is off
 * in many entries at once; it is judged against the gradient's norm as well,
 * since |g . u| can be near 0 by chance. */
static int check_direction(gc_run *g, const char *what, int dir, float *v, const float *gr, int64_t n, dd_rng *r) {
  const double tol = g->o->tol;
  float *keep = dd_alloc((size_t)n, sizeof(float));
  double *u = dd_alloc((size_t)n, sizeof(double));
  memcpy(keep, v, sizeof(float) * (size_t)n);
  double norm = 0, gn = 0;
  for (int64_t i = 0; i < n; i++) {
    u[i] = dd_rng_normal(r);
    norm += u[i] * u[i];
  }
  norm = sqrt(norm);
  for (int64_t i = 0; i < n; i++) {
    u[i] /= norm;
    gn += (double)gr[i] * gr[i];
  }
  gn = sqrt(gn);
  fd_est e = {0}, big = {0};
  double an = 0, rel_big = 0;
  bool kink = true, flagged = false;
  for (double h = g->o->eps; kink && h >= g->o->eps / 64; h /= 8) {
    /* t = 0, +h, -h, +h/2, -h/2; A[k] = sum_i g_i step_i, L's first-order change */
    double L[5], A[5], st[4] = {h, h, h / 2, h / 2};
    const double ts[5] = {0, h, -h, h / 2, -h / 2};
    for (int k = 0; k < 5; k++) {
      A[k] = 0;
      for (int64_t i = 0; i < n; i++) {
        v[i] = (float)(keep[i] + ts[k] * u[i]);
        A[k] += (double)gr[i] * ((double)v[i] - (double)keep[i]);
      }
      L[k] = objective(g);
    }
    memcpy(v, keep, sizeof(float) * (size_t)n);
    e = combine(L, st, g->noise);
    an = combine(A, st, 0).rich;
    double rel = tol * fmax(fabs(e.rich), 0.3 * gn);
    kink = flagged ? still_kink(&big, rel_big, &e, rel) : is_kink(&e, rel);
    if (kink && !flagged) {
      big = e;
      rel_big = rel;
      flagged = true;
    }
  }
  dd_free(keep);
  dd_free(u);
  if (kink) { /* a kink at every step size: this direction proves nothing */
    g->skipped_dirs++;
    return 0;
  }
  double scale = fmax(fabs(an), 0.3 * gn);
  double err = dd_gc_err(an, e.rich, tol, scale, e.floor);
  note_worst(&g->worst, err);
  if (err <= 1)
    return 0;
  fprintf(stderr,
          "gradcheck %s: %s along direction %d: analytic %.6g numeric %.6g (|diff| %.3g > %g * %.3g + noise %.3g)\n",
          g->label, what, dir, an, e.rich, fabs(an - e.rich), tol, scale, e.floor);
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
  gc_run g = {.m = m,
              .p = {.B = o->B, .B_global = o->B, .train = o->train, .seed = o->seed, .step = 3, .lengths = o->lengths},
              .x0 = x0,
              .w = w,
              .o = o,
              .label = label};
  int fails = 0, checked = 0;
  double n_scale = NAN, n_meas = NAN;
  const bool verbose = getenv("DD_GRADCHECK_VERBOSE") != NULL;
  dd_model_zero_grad(m);
  double L0 = objective(&g);
  if (backward_all(m, &g.p, w, dx) != 0) {
    fprintf(stderr, "gradcheck %s: backward failed: %s\n", label, dd_error_message());
    fails++;
    goto out;
  }
  memcpy(ga, m->grads, sizeof(float) * (size_t)m->nparams);
  if (o->tamper)
    o->tamper(m, ga, dx, o->tamper_ctx);
  g.noise = noise_level(&g, L0, &n_scale, &n_meas);
  for (int t = 0; t < m->ntensors; t++) {
    dd_tensor_ref *tr = &m->tensors[t];
    if (tr->is_buffer)
      continue;
    dd_param *pp = tr->param;
    int n = pp->size < o->max_checks ? (int)pp->size : o->max_checks;
    for (int k = 0; k < n; k++, checked++) {
      int64_t i = pp->size <= o->max_checks ? k : (int64_t)dd_rng_below(&r, (uint64_t)pp->size);
      fails += check_entry(&g, tr->name, i, ga[pp->offset + i], &pp->data[i]);
    }
    for (int d = 0; d < 3; d++)
      fails += check_direction(&g, tr->name, d, pp->data, ga + pp->offset, pp->size, &r);
  }
  if (o->check_input && o->token_vocab == 0) {
    int n = nx < o->max_checks ? (int)nx : o->max_checks;
    for (int k = 0; k < n; k++, checked++) {
      int64_t i = nx <= o->max_checks ? k : (int64_t)dd_rng_below(&r, (uint64_t)nx);
      fails += check_entry(&g, "input", i, dx[i], &x0[i]);
    }
    for (int d = 0; d < 3; d++)
      fails += check_direction(&g, "input", d, x0, dx, nx, &r);
  }
  if (g.skipped * 5 > checked) { /* kinks everywhere means the check proved nothing */
    fprintf(stderr, "gradcheck %s: %d of %d entries sit on kinks; use smoother inputs\n", label, g.skipped, checked);
    fails++;
  }
  if (o->skipped)
    *o->skipped = g.skipped;
  if (verbose && (g.skipped || g.skipped_dirs))
    fprintf(stderr, "gradcheck %s: skipped %d of %d entries and %d directions at kinks\n", label, g.skipped, checked,
            g.skipped_dirs);
  *max_err = g.worst;
out:
  if (verbose)
    fprintf(stderr, "gradcheck %s: noise N %.3g (scale %.3g, measured %.3g), worst error %.3g of allowed\n", label,
            g.noise, n_scale, n_meas, g.worst);
  dd_free(x0);
  dd_free(w);
  dd_free(dx);
  dd_free(ga);
  dd_model_free(m);
  return fails;
}
