/* image layers: conv2d and pooling against naive loops and PyTorch (conv_ref.h), finite-difference
 * checks of conv2d, pools, dropout, batch norm and small CNNs, dropout and
 * batch-norm semantics, setup errors. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "conv_ref.h"
#include "ddtrain/model.h"
#include "gradcheck.h"
#include "specs.h"

DD_TEST_GLOBALS;

/* mark key `name` as given, as the config parser does */
static void given(dd_layer_spec *s, const char *name) {
  s->set |= (uint64_t)1 << dd_layer_key_find(name);
}

/* kernel kh x kw, stride sh, sw, padding ph, pw: [height, width] as in the config */
static dd_layer_spec conv_hw(int filters, int kh, int kw, int sh, int sw, int ph, int pw, bool bias) {
  dd_layer_spec s = tu_spec("conv2d");
  s.filters = filters;
  s.kernel[0] = kh, s.kernel[1] = kw;
  s.stride[0] = sh, s.stride[1] = sw;
  s.padding[0] = ph, s.padding[1] = pw;
  s.bias = bias;
  given(&s, "filters");
  given(&s, "kernel");
  given(&s, "stride");
  given(&s, "padding");
  return s;
}

static dd_layer_spec conv(int filters, int kernel, int stride, int padding, bool bias) {
  return conv_hw(filters, kernel, kernel, stride, stride, padding, padding, bias);
}

/* sh < 0: stride not given (defaults to the kernel) */
static dd_layer_spec pool_hw(const char *type, int kh, int kw, int sh, int sw, int ph, int pw) {
  dd_layer_spec s = tu_spec(type);
  s.kernel[0] = kh, s.kernel[1] = kw;
  given(&s, "kernel");
  if (sh > 0) {
    s.stride[0] = sh, s.stride[1] = sw;
    given(&s, "stride");
  }
  s.padding[0] = ph, s.padding[1] = pw;
  return s;
}

static dd_layer_spec pool(const char *type, int kernel, int stride, int padding) {
  return pool_hw(type, kernel, kernel, stride, stride, padding, padding);
}

static dd_layer_spec dropout(double p) {
  dd_layer_spec s = tu_spec("dropout");
  s.p = p;
  return s;
}

static dd_model *build(const dd_layer_spec *s, int n, dd_shape in, int B) {
  dd_model_spec spec = {.input = in, .nlayers = n, .layers = (dd_layer_spec *)s, .loss = DD_LOSS_MSE};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, B, 0, &m));
  if (m)
    dd_model_init_params(m, 3);
  return m;
}

static void fill_normal(float *x, int64_t n, uint64_t seed) {
  dd_rng r;
  dd_rng_seed(&r, seed, 0);
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)dd_rng_normal(&r);
}

/* ---- forward against naive loops --------------------------------------- */

/* y[b, o, oh, ow] = bias[o] + sum_{c,ki,kj} W[o, c, ki, kj] x[b, c, oh*sh - ph + ki, ow*sw - pw + kj] */
static void conv_case_hw(int B, int C, int H, int W, int O, int kh, int kw, int sh, int sw, int ph, int pw, bool bias) {
  dd_layer_spec sp[] = {conv_hw(O, kh, kw, sh, sw, ph, pw, bias)};
  dd_shape in = {3, {C, H, W}};
  dd_model *m = build(sp, 1, in, B);
  if (!m)
    return;
  const int Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  CHECK(m->layers[0].param[0].dims[2] == kh && m->layers[0].param[0].dims[3] == kw);
  CHECK_INT(m->layers[0].out.d[0], O);
  CHECK_INT(m->layers[0].out.d[1], Ho);
  CHECK_INT(m->layers[0].out.d[2], Wo);
  const float *Wt = m->layers[0].param[0].data, *bs = bias ? m->layers[0].param[1].data : NULL;
  if (bias) /* zero-initialised: make it matter */
    fill_normal(m->layers[0].param[1].data, O, 9);
  fill_normal(m->acts[0], (int64_t)B * C * H * W, 4);
  const float *x = m->acts[0];
  dd_pass ps = {.B = B, .B_global = B};
  CHECK_OK(dd_model_forward(m, &ps));
  const float *y = m->acts[1];
  double worst = 0;
  for (int b = 0; b < B; b++)
    for (int o = 0; o < O; o++)
      for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
          double acc = bs ? bs[o] : 0.0;
          for (int c = 0; c < C; c++)
            for (int ki = 0; ki < kh; ki++)
              for (int kj = 0; kj < kw; kj++) {
                int ih = oh * sh - ph + ki, iw = ow * sw - pw + kj;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                  acc += (double)Wt[((o * C + c) * kh + ki) * kw + kj] * x[((b * C + c) * H + ih) * W + iw];
              }
          double got = y[((b * O + o) * Ho + oh) * Wo + ow];
          worst = worst_of(worst, fabs(got - acc) / fmax(1.0, fabs(acc)));
        }
  if (!(worst <= 1e-5))
    DD_FAIL_AT("conv %dx%dx%d k[%d,%d] s[%d,%d] p[%d,%d]: max error %.3g vs naive loops", C, H, W, kh, kw, sh, sw, ph,
               pw, worst);
  dd_model_free(m);
}

static void conv_case(int B, int C, int H, int W, int O, int k, int s, int p, bool bias) {
  conv_case_hw(B, C, H, W, O, k, k, s, s, p, p, bias);
}

static void conv_forward_matches_naive(void) {
  conv_case(4, 3, 7, 6, 5, 3, 1, 0, true);
  conv_case(3, 2, 9, 8, 4, 3, 2, 1, false);
  conv_case(2, 1, 6, 6, 3, 5, 1, 2, true);   /* padding wider than the valid part */
  conv_case(3, 2, 5, 7, 2, 2, 3, 1, true);   /* stride larger than the kernel */
  conv_case(7, 2, 6, 6, 3, 3, 1, 0, true);   /* 16 output pixels: chunks of 4 samples, the last one short */
  conv_case(3, 2, 22, 22, 3, 3, 1, 0, true); /* one sample per GEMM */
  /* non-square kernels, strides and paddings ([height, width]) */
  conv_case_hw(3, 2, 7, 9, 4, 2, 3, 1, 2, 1, 0, true);
  conv_case_hw(2, 3, 5, 8, 2, 1, 3, 1, 1, 0, 1, false); /* (1, 3), the lean stride-1 path in width */
  conv_case_hw(2, 2, 9, 6, 3, 3, 1, 2, 1, 0, 0, true);  /* (3, 1), stride only in height */
  conv_case_hw(7, 1, 4, 6, 2, 3, 2, 1, 1, 1, 0, true);  /* chunks of several samples */
}

/* Forward keeps the patches for backward when they fit a budget, and
 * rebuilds them in backward when not (a model for large batches): the two
 * must give the same bits. */
static void conv_workspace_strategies_agree(void) {
  enum { B = 3, C = 4, H = 16, N = B * C * H * H };
  dd_layer_spec s[] = {conv(2, 3, 1, 1, true)};
  dd_shape in = {3, {C, H, H}};
  dd_model *keep = build(s, 1, in, B), *rebuild = build(s, 1, in, 4096);
  if (!keep || !rebuild)
    return;
  CHECK(keep->layers[0].ws_per_sample > 0);     /* patches kept */
  CHECK(rebuild->layers[0].ws_per_sample == 0); /* 4096 samples' patches exceed the budget */
  fill_normal(keep->layers[0].param[1].data, 2, 5);
  memcpy(rebuild->params, keep->params, sizeof(float) * (size_t)keep->nparams);
  dd_model *ms[2] = {keep, rebuild};
  float *dx[2];
  for (int i = 0; i < 2; i++) {
    dd_model *m = ms[i];
    fill_normal(m->acts[0], N, 7);
    fill_normal(m->dbuf[0], (int64_t)B * m->out_size, 8);
    dd_pass p = {.B = B, .B_global = B, .train = true};
    dd_model_zero_grad(m);
    CHECK_OK(dd_model_forward(m, &p));
    dx[i] = m->dbuf[1];
    CHECK_OK(m->layers[0].kind->backward(&m->layers[0], &p, m->acts[0], m->acts[1], m->dbuf[0], dx[i]));
  }
  CHECK(memcmp(keep->acts[1], rebuild->acts[1], sizeof(float) * (size_t)(B * keep->out_size)) == 0);
  CHECK(memcmp(keep->grads, rebuild->grads, sizeof(float) * (size_t)keep->nparams) == 0);
  CHECK(memcmp(dx[0], dx[1], sizeof(float) * (size_t)N) == 0);
  dd_model_free(keep);
  dd_model_free(rebuild);
}

static void pool_case_hw(const char *type, int B, int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) {
  dd_layer_spec sp[] = {pool_hw(type, kh, kw, sh, sw, ph, pw)};
  dd_shape in = {3, {C, H, W}};
  dd_model *m = build(sp, 1, in, B);
  if (!m)
    return;
  if (sh <= 0)
    sh = kh, sw = kw;
  const int Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
  CHECK_INT(m->layers[0].out.d[1], Ho);
  CHECK_INT(m->layers[0].out.d[2], Wo);
  fill_normal(m->acts[0], (int64_t)B * C * H * W, 6);
  const float *x = m->acts[0];
  dd_pass ps = {.B = B, .B_global = B};
  CHECK_OK(dd_model_forward(m, &ps));
  const bool is_max = strcmp(type, "maxpool2d") == 0;
  double worst = 0;
  for (int bc = 0; bc < B * C; bc++)
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++) {
        double acc = is_max ? -INFINITY : 0.0;
        for (int ki = 0; ki < kh; ki++)
          for (int kj = 0; kj < kw; kj++) {
            int ih = oh * sh - ph + ki, iw = ow * sw - pw + kj;
            double v = ih >= 0 && ih < H && iw >= 0 && iw < W ? x[(bc * H + ih) * W + iw] : (is_max ? -INFINITY : 0);
            acc = is_max ? fmax(acc, v) : acc + v;
          }
        if (!is_max)
          acc /= kh * kw;
        worst = worst_of(worst, fabs(m->acts[1][(bc * Ho + oh) * Wo + ow] - acc));
      }
  if (!(worst <= 1e-6))
    DD_FAIL_AT("%s %dx%d k[%d,%d] s[%d,%d] p[%d,%d]: max error %.3g vs naive loops", type, H, W, kh, kw, sh, sw, ph, pw,
               worst);
  dd_model_free(m);
}

static void pool_case(const char *type, int B, int C, int H, int W, int k, int s, int p) {
  pool_case_hw(type, B, C, H, W, k, k, s, s, p, p);
}

static void pool_forward_matches_naive(void) {
  const char *types[] = {"maxpool2d", "avgpool2d"};
  for (int t = 0; t < 2; t++) {
    pool_case(types[t], 2, 3, 8, 8, 2, -1, 0); /* stride defaults to the kernel */
    pool_case(types[t], 2, 2, 7, 9, 3, 2, 1);
    pool_case(types[t], 1, 2, 5, 6, 2, 1, 1);
    pool_case(types[t], 2, 1, 7, 7, 3, -1, 0);              /* a remainder row and column are dropped */
    pool_case_hw(types[t], 2, 2, 7, 9, 2, 3, 1, 2, 1, 0);   /* non-square kernel, stride and padding */
    pool_case_hw(types[t], 2, 2, 6, 9, 2, 3, -1, -1, 0, 1); /* stride defaults to the kernel, (2, 3) */
    pool_case_hw(types[t], 1, 3, 8, 8, 2, 2, 2, 1, 0, 0);   /* 2 x 2 windows that are not the fast path */
  }
  dd_layer_spec sp[] = {tu_spec("global_avgpool")};
  dd_shape in = {3, {3, 4, 5}};
  dd_model *m = build(sp, 1, in, 2);
  if (!m)
    return;
  fill_normal(m->acts[0], 2 * 60, 8);
  dd_pass ps = {.B = 2, .B_global = 2};
  CHECK_OK(dd_model_forward(m, &ps));
  CHECK_INT(m->layers[0].out_size, 3);
  for (int bc = 0; bc < 6; bc++) {
    double s = 0;
    for (int i = 0; i < 20; i++)
      s += m->acts[0][bc * 20 + i];
    CHECK_NEAR(m->acts[1][bc], s / 20, 1e-6);
  }
  dd_model_free(m);
}

/* ---- against PyTorch (conv_ref.h, from gen_conv_ref.py) ---------------- */

/* nn.Conv2d(C, O, (2, 3), stride=(1, 2), padding=(1, 0)) with its weight
 * copied one to one into ours: the layout [O, C, kh, kw], the geometry and
 * the gradients of sum(w * y) as PyTorch computes them. */
static void conv_matches_torch(void) {
  dd_layer_spec sp[] = {conv_hw(REF_O, REF_KH, REF_KW, REF_SH, REF_SW, REF_PH, REF_PW, true)};
  dd_model *m = build(sp, 1, (dd_shape){3, {REF_C, REF_H, REF_W}}, REF_B);
  if (!m)
    return;
  dd_layer *l = &m->layers[0];
  CHECK(l->out.d[0] == REF_O && l->out.d[1] == CONV_HO && l->out.d[2] == CONV_WO);
  CHECK_INT(l->param[0].size, (int64_t)(sizeof CONV_weight / sizeof(float)));
  CHECK(l->param[0].dims[2] == REF_KH && l->param[0].dims[3] == REF_KW);
  memcpy(l->param[0].data, CONV_weight, sizeof CONV_weight);
  memcpy(l->param[1].data, CONV_bias, sizeof CONV_bias);
  memcpy(m->acts[0], REF_x, sizeof REF_x);
  dd_pass p = {.B = REF_B, .B_global = REF_B};
  CHECK_OK(dd_model_forward(m, &p));
  check_close("conv2d y", m->acts[1], CONV_y, (int64_t)(sizeof CONV_y / sizeof(float)), 1e-5);
  dd_model_zero_grad(m);
  float dx[sizeof REF_x / sizeof(float)];
  CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], CONV_w, dx));
  check_close("conv2d d weight", l->param[0].grad, CONV_dweight, (int64_t)(sizeof CONV_dweight / sizeof(float)), 1e-5);
  check_close("conv2d d bias", l->param[1].grad, CONV_dbias, REF_O, 1e-5);
  check_close("conv2d d x", dx, CONV_dx, (int64_t)(sizeof CONV_dx / sizeof(float)), 1e-5);
  dd_model_free(m);
}

/* nn.MaxPool2d and nn.AvgPool2d (count_include_pad=True) with the same window */
static void pools_match_torch(void) {
  const struct {
    const char *type;
    const float *y, *dx;
  } refs[] = {{"maxpool2d", MAXPOOL_y, MAXPOOL_dx}, {"avgpool2d", AVGPOOL_y, AVGPOOL_dx}};
  enum { N = REF_B * REF_C * REF_H * REF_W };
  for (int t = 0; t < 2; t++) {
    dd_layer_spec sp[] = {pool_hw(refs[t].type, REF_KH, REF_KW, REF_SH, REF_SW, REF_PH, REF_PW)};
    dd_model *m = build(sp, 1, (dd_shape){3, {REF_C, REF_H, REF_W}}, REF_B);
    if (!m)
      return;
    dd_layer *l = &m->layers[0];
    CHECK(l->out.d[1] == POOL_HO && l->out.d[2] == POOL_WO);
    memcpy(m->acts[0], POOL_x, sizeof POOL_x);
    dd_pass p = {.B = REF_B, .B_global = REF_B};
    CHECK_OK(dd_model_forward(m, &p));
    char what[64];
    snprintf(what, sizeof what, "%s y", refs[t].type);
    check_close(what, m->acts[1], refs[t].y, REF_B * REF_C * POOL_HO * POOL_WO, 1e-6);
    float dx[N];
    CHECK_OK(l->kind->backward(l, &p, m->acts[0], m->acts[1], POOL_w, dx));
    snprintf(what, sizeof what, "%s d x", refs[t].type);
    check_close(what, dx, refs[t].dx, N, 1e-6);
    dd_model_free(m);
  }
}

/* ---- finite-difference checks ------------------------------------------ */

static void conv_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {3, {3, 6, 7}};
  dd_layer_spec a[] = {conv(4, 3, 1, 0, true)};
  CHECK_GRADS("conv2d", a, 1, in, &o);
  dd_layer_spec b[] = {conv(3, 3, 2, 1, false)};
  CHECK_GRADS("conv2d stride 2 padding 1 without bias", b, 1, in, &o);
  dd_layer_spec c[] = {conv(2, 2, 3, 2, true)};
  CHECK_GRADS("conv2d stride 3 padding 2", c, 1, in, &o);
  dd_layer_spec hw[] = {conv_hw(3, 2, 3, 1, 2, 1, 0, true)};
  CHECK_GRADS("conv2d kernel [2, 3] stride [1, 2] padding [1, 0]", hw, 1, in, &o);
  dd_layer_spec hw2[] = {conv_hw(2, 3, 1, 2, 1, 0, 1, false)};
  CHECK_GRADS("conv2d kernel [3, 1] stride [2, 1] padding [0, 1]", hw2, 1, in, &o);
  /* 16 output pixels: chunks of 4 samples then 3, the batched GEMM path */
  o.B = 7;
  dd_shape small = {3, {2, 6, 6}};
  dd_layer_spec d[] = {conv(3, 3, 1, 0, true)};
  CHECK_GRADS("conv2d in chunks", d, 1, small, &o);
}

static void pool_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  dd_shape in = {3, {2, 6, 7}};
  const char *types[] = {"maxpool2d", "avgpool2d"};
  for (int t = 0; t < 2; t++) {
    dd_layer_spec a[] = {pool(types[t], 2, -1, 0)};
    CHECK_GRADS(types[t], a, 1, in, &o);
    dd_layer_spec b[] = {pool(types[t], 3, 2, 1)}; /* overlapping windows, padding */
    CHECK_GRADS(types[t], b, 1, in, &o);
    dd_layer_spec c[] = {pool_hw(types[t], 2, 3, 1, 2, 1, 0)}; /* kernel [2, 3] stride [1, 2] padding [1, 0] */
    CHECK_GRADS(types[t], c, 1, in, &o);
  }
  dd_shape even = {3, {2, 6, 8}}; /* 2 x 2 windows tiling the input: the fast path */
  dd_layer_spec m[] = {pool("maxpool2d", 2, -1, 0)};
  CHECK_GRADS("maxpool2d 2x2 tiling", m, 1, even, &o);
  dd_layer_spec g[] = {tu_spec("global_avgpool")};
  CHECK_GRADS("global_avgpool", g, 1, in, &o);
}

/* Exact ties in a max window: the derivative does not exist there, and the
 * checker must say it skipped those entries instead of failing them. */
static void maxpool_ties_are_skipped(void) {
  enum { B = 2, C = 2, H = 4, W = 4, N = B * C * H * W };
  float x[N];
  fill_normal(x, N, 12);
  x[0] = x[1] = 2.5f; /* sample 0, channel 0: window (0, 0) */
  x[N - 1] = x[N - 2] = 3.0f;
  dd_gc_opts o;
  dd_gc_defaults(&o);
  int skipped = -1;
  o.B = B;
  o.x = x;
  o.max_checks = N; /* every input entry */
  o.skipped = &skipped;
  dd_layer_spec a[] = {pool("maxpool2d", 2, -1, 0)};
  dd_shape in = {3, {C, H, W}};
  CHECK_GRADS("maxpool2d with ties", a, 1, in, &o);
  CHECK_INT(skipped, 4);
}

static void dropout_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.train = true; /* fixed (seed, step): the same mask in every evaluation */
  dd_shape in = {1, {12}};
  dd_layer_spec a[] = {tu_dense(10), dropout(0.3), tu_dense(4)};
  CHECK_GRADS("dropout train", a, 3, in, &o);
  o.train = false;
  CHECK_GRADS("dropout eval", a, 3, in, &o);
}

static void batchnorm_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.B = 6;
  o.param_scale = 0.3; /* gamma, beta away from 1, 0 */
  dd_shape flat = {1, {5}};
  dd_layer_spec a[] = {tu_dense(4), tu_spec("batchnorm"), tu_spec("tanh"), tu_dense(3)};
  o.train = true;
  CHECK_GRADS("batchnorm 1d train", a, 4, flat, &o);
  o.train = false;
  CHECK_GRADS("batchnorm 1d eval", a, 4, flat, &o);
  o.B = 3;
  dd_shape img = {3, {3, 4, 5}};
  dd_layer_spec b[] = {tu_spec("batchnorm")};
  o.train = true;
  CHECK_GRADS("batchnorm 2d train", b, 1, img, &o);
  o.train = false;
  CHECK_GRADS("batchnorm 2d eval", b, 1, img, &o);
}

static void cnn_stack_gradients(void) {
  dd_gc_opts o;
  dd_gc_defaults(&o);
  o.B = 4;
  o.train = true;
  o.param_scale = 0.1;
  dd_shape in = {3, {2, 8, 8}};
  /* Smooth: the chain rule through every image layer at the default step.
   * The conv bias is there on purpose: batch norm removes any per-channel
   * shift, so its true gradient is exactly 0 and the checker must judge
   * pure rounding noise (its noise floor) on every kernel set. */
  dd_layer_spec a[] = {conv(4, 3, 1, 1, true), tu_spec("batchnorm"), tu_spec("tanh"), pool("avgpool2d", 2, -1, 0),
                       tu_spec("flatten"),     dropout(0.25),        tu_dense(3)};
  CHECK_GRADS("conv-bn-tanh-avgpool-flatten-dropout-dense", a, 7, in, &o);
  /* The usual CNN: moving a batch-norm parameter moves a whole channel, so
   * some of its ReLU units cross 0 within the finite step and directional
   * derivatives carry an error proportional to the step; a smaller step
   * keeps that below the tolerance. */
  o.eps = 3e-3;
  dd_layer_spec b[] = {conv(4, 3, 1, 1, true), tu_spec("batchnorm"), tu_spec("relu"), pool("maxpool2d", 2, -1, 0),
                       tu_spec("flatten"),     dropout(0.25),        tu_dense(3)};
  CHECK_GRADS("conv-bn-relu-maxpool-flatten-dropout-dense", b, 7, in, &o);
}

/* ---- semantics --------------------------------------------------------- */

/* The mask of a sample depends on its position in the global batch, not
 * on how the batch is cut into passes; evaluation is the identity. */
static void dropout_mask_is_split_invariant(void) {
  enum { B = 8, D = 500 };
  dd_layer_spec s[] = {dropout(0.4)};
  dd_shape in = {1, {D}};
  dd_model *m = build(s, 1, in, B);
  if (!m)
    return;
  static float x[B * D], whole[B * D];
  fill_normal(x, B * D, 2);
  memcpy(m->acts[0], x, sizeof x);
  dd_pass p = {.B = B, .B_global = B, .train = true, .seed = 11, .step = 5};
  CHECK_OK(dd_model_forward(m, &p));
  memcpy(whole, m->acts[1], sizeof whole);
  int zeros = 0;
  for (int i = 0; i < B * D; i++) {
    if (whole[i] == 0.0f)
      zeros++;
    else
      CHECK_NEAR(whole[i], x[i] / 0.6, 1e-6);
  }
  CHECK_NEAR(zeros / (double)(B * D), 0.4, 0.03);
  /* the same batch as passes of 3 and 5 samples */
  for (int part = 0; part < 2; part++) {
    int lo = part ? 3 : 0, n = part ? 5 : 3;
    memcpy(m->acts[0], x + lo * D, sizeof(float) * (size_t)(n * D));
    dd_pass q = p;
    q.B = n;
    q.sample0 = lo;
    CHECK_OK(dd_model_forward(m, &q));
    CHECK(memcmp(m->acts[1], whole + lo * D, sizeof(float) * (size_t)(n * D)) == 0);
  }
  /* another step draws another mask */
  memcpy(m->acts[0], x, sizeof x);
  p.step = 6;
  CHECK_OK(dd_model_forward(m, &p));
  CHECK(memcmp(m->acts[1], whole, sizeof whole) != 0);
  p.train = false;
  CHECK_OK(dd_model_forward(m, &p));
  CHECK(memcmp(m->acts[1], x, sizeof x) == 0);
  dd_model_free(m);
}

/* Train: per-channel mean 0 / variance 1 over all samples and pixels, the
 * running stats move by momentum towards the batch mean and UNBIASED
 * variance; eval: normalised by the running stats. */
static void batchnorm_statistics(void) {
  enum { B = 4, C = 3, S = 10 };
  dd_layer_spec s[] = {tu_spec("batchnorm")};
  s[0].momentum = 0.2;
  dd_shape in = {3, {C, 2, 5}};
  dd_model *m = build(s, 1, in, B);
  if (!m)
    return;
  dd_layer *l = &m->layers[0];
  CHECK_INT(l->nbuf, 2);
  CHECK(strcmp(l->buf[0].name, "running_mean") == 0 && strcmp(l->buf[1].name, "running_var") == 0);
  CHECK(l->param[0].data[0] == 1.0f && l->param[1].data[0] == 0.0f && l->buf[1].data[0] == 1.0f);
  float *x = m->acts[0];
  fill_normal(x, B * C * S, 3);
  for (int i = 0; i < B * C * S; i++)
    x[i] = 2.0f * x[i] + 1.5f;
  dd_pass p = {.B = B, .B_global = B, .train = true};
  CHECK_OK(dd_model_forward(m, &p));
  for (int c = 0; c < C; c++) {
    double mean = 0, m2 = 0, ym = 0, yv = 0;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < S; i++) {
        mean += x[(b * C + c) * S + i];
        ym += m->acts[1][(b * C + c) * S + i];
      }
    mean /= B * S;
    ym /= B * S;
    for (int b = 0; b < B; b++)
      for (int i = 0; i < S; i++) {
        m2 += pow(x[(b * C + c) * S + i] - mean, 2);
        yv += pow(m->acts[1][(b * C + c) * S + i] - ym, 2);
      }
    CHECK_NEAR(ym, 0.0, 1e-5);
    CHECK_NEAR(yv / (B * S), 1.0 - 1e-5 / (m2 / (B * S)), 1e-4); /* eps in the denominator */
    CHECK_NEAR(l->buf[0].data[c], 0.2 * mean, 1e-5);
    CHECK_NEAR(l->buf[1].data[c], 0.8 + 0.2 * m2 / (B * S - 1), 1e-5);
  }
  p.train = false;
  CHECK_OK(dd_model_forward(m, &p));
  for (int i = 0; i < B * C * S; i++) {
    int c = (i / S) % C;
    CHECK_NEAR(m->acts[1][i], (x[i] - l->buf[0].data[c]) / sqrt(l->buf[1].data[c] + 1e-5), 1e-5);
  }
  dd_model_free(m);
}

/* ---- setup errors ------------------------------------------------------ */

static void expect_build_error(dd_layer_spec *s, int n, dd_shape in, const char *needle) {
  dd_model_spec spec = {.input = in, .nlayers = n, .layers = s};
  dd_model *m = NULL;
  dd_error_clear();
  int rc = dd_model_build(&spec, 2, 0, &m);
  CHECK_INT(rc, DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), needle);
  dd_model_free(m);
}

static void setup_errors(void) {
  dd_shape flat = {1, {784}}, img = {3, {1, 6, 6}};
  dd_layer_spec a[] = {conv(4, 3, 1, 0, true)};
  expect_build_error(a, 1, flat, "model.layers[0] (conv2d): needs a [C, H, W] input but gets 784");
  expect_build_error(a, 1, flat, "model.input: [1, 28, 28]");
  dd_layer_spec b[] = {conv(4, 7, 1, 0, true)};
  expect_build_error(b, 1, img, "kernel 7 is larger than the input 1x6x6 padded by 0; use kernel <= 6");
  dd_layer_spec c[] = {conv(0, 3, 1, 0, true)};
  expect_build_error(c, 1, img, "needs 'filters'");
  dd_layer_spec d[] = {pool("maxpool2d", 2, -1, 2)};
  expect_build_error(d, 1, img, "padding 2 is more than half the kernel 2; use padding <= 1");
  dd_layer_spec e[] = {tu_spec("avgpool2d")};
  expect_build_error(e, 1, img, "(avgpool2d): needs 'kernel'");
  dd_layer_spec f[] = {tu_spec("global_avgpool")};
  expect_build_error(f, 1, flat, "(global_avgpool): needs a [C, H, W] input");
  /* the error names the layer that fails, after shapes flowed through the earlier ones */
  dd_layer_spec g[] = {conv(4, 3, 1, 0, true), pool("maxpool2d", 2, -1, 0), conv(2, 3, 1, 0, true)};
  expect_build_error(g, 3, img, "model.layers[2] (conv2d): kernel 3 is larger than the input 4x2x2");
  dd_shape seq = {2, {5, 4}};
  dd_layer_spec h[] = {tu_spec("batchnorm")};
  expect_build_error(h, 1, seq, "(batchnorm): normalises [D] features or [C, H, W] images but gets 5x4");
  /* non-square: the message names the dimension that does not fit */
  dd_layer_spec i[] = {conv_hw(4, 2, 9, 1, 1, 1, 0, true)};
  expect_build_error(i, 1, img,
                     "(conv2d): kernel [2, 9] is larger than the input 1x6x6 padded by [1, 0] in width; use a kernel "
                     "width <= 6 or more padding");
  dd_layer_spec j[] = {pool_hw("avgpool2d", 9, 3, -1, -1, 1, 1)};
  expect_build_error(j, 1, img,
                     "(avgpool2d): kernel [9, 3] is larger than the input 1x6x6 padded by 1 in height; use "
                     "a kernel height <= 8");
  dd_layer_spec k[] = {pool_hw("maxpool2d", 3, 2, -1, -1, 1, 2)};
  expect_build_error(k, 1, img,
                     "(maxpool2d): padding [1, 2] is more than half the kernel [3, 2] in width; use a width "
                     "padding <= 1");
  dd_layer_spec q[] = {pool_hw("maxpool2d", 1, 4, -1, -1, 1, 0)}; /* PyTorch: pad <= kernel / 2 per dimension */
  expect_build_error(q, 1, img,
                     "padding [1, 0] is more than half the kernel [1, 4] in height; use a height padding <= 0");
}

static void registry(void) {
  const char *kinds[] = {"conv2d", "maxpool2d", "avgpool2d", "global_avgpool", "dropout", "batchnorm"};
  for (int i = 0; i < 6; i++)
    CHECK(dd_layer_kind_find(kinds[i]) != NULL);
  CHECK_CONTAINS(dd_layer_kind_find("conv2d")->keys, "filters");
  CHECK_CONTAINS(dd_layer_kind_find("batchnorm")->keys, "momentum");
  /* conv weight in PyTorch's layout, fan-in C*k*k for He init */
  dd_layer_spec s[] = {conv(8, 5, 1, 0, true)};
  dd_shape in = {3, {3, 10, 10}};
  dd_model *m = build(s, 1, in, 1);
  if (!m)
    return;
  dd_param *w = &m->layers[0].param[0];
  CHECK_INT(w->ndim, 4);
  CHECK(w->dims[0] == 8 && w->dims[1] == 3 && w->dims[2] == 5 && w->dims[3] == 5);
  CHECK_INT(w->fan_in, 75);
  dd_model_free(m);
  /* non-square: [filters, C, kh, kw], fan-in C*kh*kw, fan-out filters*kh*kw */
  dd_layer_spec r[] = {conv_hw(8, 1, 3, 1, 2, 0, 1, true)};
  m = build(r, 1, in, 1);
  if (!m)
    return;
  w = &m->layers[0].param[0];
  CHECK(w->dims[0] == 8 && w->dims[1] == 3 && w->dims[2] == 1 && w->dims[3] == 3);
  CHECK_INT(w->fan_in, 9);
  CHECK_INT(w->fan_out, 24);
  CHECK(m->layers[0].out.d[1] == 10 && m->layers[0].out.d[2] == 5); /* (10 - 1) / 1 + 1, (10 + 2 - 3) / 2 + 1 */
  dd_model_free(m);
}

int main(void) {
  RUN(conv_forward_matches_naive);
  RUN(conv_workspace_strategies_agree);
  RUN(pool_forward_matches_naive);
  RUN(conv_matches_torch);
  RUN(pools_match_torch);
  RUN(conv_gradients);
  RUN(pool_gradients);
  RUN(maxpool_ties_are_skipped);
  RUN(dropout_gradients);
  RUN(batchnorm_gradients);
  RUN(cnn_stack_gradients);
  RUN(dropout_mask_is_split_invariant);
  RUN(batchnorm_statistics);
  RUN(setup_errors);
  RUN(registry);
  return dd_test_failures ? 1 : 0;
}
