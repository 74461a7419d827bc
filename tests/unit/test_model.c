/* model: arena layout, views, initialisation statistics, errors. */
#include <string.h>

#include "check.h"
#include "ddtrain/model.h"
#include "specs.h"

DD_TEST_GLOBALS;

static dd_layer_spec act(const char *t) {
  dd_layer_spec s;
  dd_layer_spec_defaults(&s, t);
  return s;
}

static void arena_layout(void) {
  dd_layer_spec s[] = {tu_dense(32), act("relu"), tu_dense(16), act("tanh"), tu_dense(4)};
  dd_model_spec spec = {.input = {1, {100}}, .nlayers = 5, .layers = s, .loss = DD_LOSS_CROSS_ENTROPY};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, 8, 4, &m));
  if (!m)
    return;
  CHECK_INT(m->nparams, 32 * 100 + 32 + 16 * 32 + 16 + 4 * 16 + 4);
  CHECK_INT(m->ntensors, 6);
  CHECK_INT(m->classes, 4);
  CHECK_INT(m->out_rows, 1);
  int64_t off = 0;
  for (int t = 0; t < m->ntensors; t++) { /* contiguous, in order, views aligned with grads */
    dd_param *p = m->tensors[t].param;
    CHECK_INT(p->offset, off);
    CHECK(p->data == m->params + off);
    CHECK(p->grad == m->grads + off);
    off += p->size;
  }
  CHECK(strcmp(m->tensors[0].name, "layer0/weight") == 0);
  CHECK(strcmp(m->tensors[5].name, "layer4/bias") == 0);
  CHECK_INT(m->tensors[0].param->dims[0], 32);
  CHECK_INT(m->tensors[0].param->dims[1], 100);
  dd_model_free(m);
  dd_model_free(NULL);
}

static void init_statistics(void) {
  dd_layer_spec s[] = {tu_dense(400), act("relu"), tu_dense(300)};
  dd_model_spec spec = {.input = {1, {500}}, .nlayers = 3, .layers = s};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, 1, 0, &m));
  if (!m)
    return;
  dd_model_init_params(m, 1);
  /* layer 0 feeds a ReLU: He normal, std sqrt(2/500) */
  dd_param *w0 = &m->layers[0].param[0], *b0 = &m->layers[0].param[1];
  double s1 = 0, s2 = 0;
  for (int64_t i = 0; i < w0->size; i++) {
    s1 += w0->data[i];
    s2 += (double)w0->data[i] * w0->data[i];
  }
  CHECK_NEAR(sqrt(s2 / (double)w0->size), sqrt(2.0 / 500), 0.02);
  CHECK_NEAR(s1 / (double)w0->size, 0.0, 0.01);
  int zero = 1;
  for (int64_t i = 0; i < b0->size; i++)
    zero &= b0->data[i] == 0.0f;
  CHECK(zero);
  /* last layer: Xavier uniform, limit sqrt(6/(400+300)) */
  dd_param *w2 = &m->layers[2].param[0];
  double lim = sqrt(6.0 / 700.0), mx = 0;
  for (int64_t i = 0; i < w2->size; i++)
    mx = worst_of(mx, fabs(w2->data[i]));
  CHECK(mx <= lim && mx > 0.95 * lim);
  /* same seed, same parameters; checksum tracks changes */
  uint64_t h = dd_model_checksum(m);
  dd_model_init_params(m, 1);
  CHECK(dd_model_checksum(m) == h);
  m->params[7] += 1.0f;
  CHECK(dd_model_checksum(m) != h);
  dd_model_free(m);
}

static void build_errors(void) {
  dd_layer_spec s[] = {tu_dense(0)};
  dd_model_spec spec = {.input = {1, {5}}, .nlayers = 1, .layers = s};
  dd_model *m = NULL;
  dd_error_clear();
  CHECK(dd_model_build(&spec, 4, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "needs 'units'");
  dd_layer_spec u[] = {act("blah")};
  spec.layers = u;
  dd_error_clear();
  CHECK(dd_model_build(&spec, 4, 0, &m) == DD_ECONFIG);
  CHECK_CONTAINS(dd_error_message(), "unknown layer type 'blah'");
  dd_error_clear();
}

static void forward_backward_shapes(void) {
  dd_layer_spec ls[] = {tu_dense(6), act("relu"), tu_dense(3)};
  dd_model_spec spec = {.input = {1, {4}}, .nlayers = 3, .layers = ls, .loss = DD_LOSS_CROSS_ENTROPY};
  dd_model *m = NULL;
  CHECK_OK(dd_model_build(&spec, 5, 0, &m));
  if (!m)
    return;
  dd_model_init_params(m, 3);
  for (int i = 0; i < 5 * 4; i++)
    m->acts[0][i] = (float)(i % 7) - 3.0f;
  int32_t y[5] = {0, 1, 2, 1, 0};
  dd_pass p = {.B = 5, .B_global = 5, .train = true};
  dd_loss_sums s = {0};
  dd_model_zero_grad(m);
  CHECK_OK(dd_model_forward(m, &p));
  CHECK_OK(dd_model_loss(m, &p, y, true, &s));
  CHECK_OK(dd_model_backward(m, &p));
  CHECK_INT((int)s.count, 5);
  CHECK(s.loss > 0);
  double gn = 0;
  for (int64_t i = 0; i < m->nparams; i++)
    gn += fabs(m->grads[i]);
  CHECK(gn > 0);
  p.B = 6; /* over capacity */
  dd_error_clear();
  CHECK(dd_model_forward(m, &p) == DD_EINVAL);
  dd_error_clear();
  dd_model_free(m);
}

int main(void) {
  RUN(arena_layout);
  RUN(init_statistics);
  RUN(build_errors);
  RUN(forward_backward_shapes);
  return dd_test_failures ? 1 : 0;
}
