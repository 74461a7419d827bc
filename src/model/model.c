/* Model build (shapes, arenas, views), initialisation, forward/loss/backward. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/model.h"

static int build_layers(dd_model *m, const dd_model_spec *spec) {
  dd_shape cur = spec->input;
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    l->spec = spec->layers[i];
    l->index = i;
    l->kind = dd_layer_kind_find(l->spec.type);
    if (!l->kind) {
      char names[512];
      return dd__layer_error(l, "unknown layer type '%s'; known types: %s", l->spec.type,
                             dd_layer_kind_names(names, sizeof names));
    }
    l->in = cur;
    l->in_size = dd_shape_size(cur);
    l->max_batch = m->max_batch;
    const bool is_end = strcmp(l->kind->name, "residual_end") == 0;
    const int pair = l->spec.pair;
    if ((is_end || strcmp(l->kind->name, "residual") == 0) &&
        (pair < 0 || pair >= m->nlayers || (is_end ? pair >= i : pair <= i) ||
         strcmp(spec->layers[pair].type, is_end ? "residual" : "residual_end") != 0 || spec->layers[pair].pair != i))
      return dd__layer_error(l, "a residual block's ends do not match; write it as {type: residual, layers: [...]}");
    if (is_end && dd_shape_size(cur) != dd_shape_size(m->layers[pair].in)) {
      char in[64], out[64];
      return dd__layer_error(l,
                             "the residual block of layers %d-%d turns its input %s into %s; y = x + layers(x) needs "
                             "the layers to keep the shape (set the last one's units to the input's size)",
                             pair + 1, i - 1, dd_shape_str(m->layers[pair].in, in, sizeof in),
                             dd_shape_str(cur, out, sizeof out));
    }
    if (l->spec.units_from >= 0 && l->spec.units_from < i) { /* a transformer block's MLP: units from D */
      const dd_shape w = m->layers[l->spec.units_from].in;
      l->spec.units = l->spec.units_mult * (w.ndim > 0 ? w.d[w.ndim - 1] : 0);
    }
    if (l->spec.tie == DD_TIE_EMBEDDING) { /* the nearest embedding before it */
      l->peer = NULL;
      for (int j = i - 1; j >= 0 && !l->peer; j--)
        if (strcmp(m->layers[j].kind->name, "embedding") == 0)
          l->peer = &m->layers[j];
    }
    int rc = l->kind->setup(l);
    if (rc)
      return rc;
    if (is_end)
      l->out = m->layers[pair].in; /* the block's shape, e.g. [T, D] rather than a reshaped [T*D] */
    l->out_size = dd_shape_size(l->out);
    char in[64], sh[64];
    if (l->out.ndim > 0 && (l->out_size < 0 || l->out_size > DD_TENSOR_MAX))
      return dd__layer_error(
          l, "gives an output of %s values per sample for input %s, more than ddtrain's kernels index (2^31 - 1)",
          dd_shape_str(l->out, sh, sizeof sh), dd_shape_str(l->in, in, sizeof in));
    if (l->out.ndim <= 0 || l->out_size <= 0)
      return dd__layer_error(l, "gives an empty output for input %s", dd_shape_str(l->in, in, sizeof in));
    for (int j = 0; j < l->nparam + l->nbuf; j++) {
      const dd_param *p = j < l->nparam ? &l->param[j] : &l->buf[j - l->nparam];
      dd_shape ps = {p->ndim, {0}};
      for (int d = 0; d < p->ndim && d < DD_SHAPE_MAX; d++)
        ps.d[d] = p->dims[d];
      if (p->size < 0 || p->size > DD_TENSOR_MAX)
        return dd__layer_error(l, "its %s of %s values is larger than ddtrain's kernels index (2^31 - 1)", p->name,
                               dd_shape_str(ps, sh, sizeof sh));
    }
    cur = l->out;
  }
  /* A tied table is also the output layer's weight: it multiplies that
   * layer's input, so optim.decay: weights decays it (as nanoGPT decays
   * GPT-2's tied wte, a 2-D weight). */
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].spec.tie == DD_TIE_EMBEDDING)
      m->layers[i].peer->param[0].weight_matrix = true;
  return DD_OK;
}

/* DD_INIT_AUTO: He if the layer feeds a ReLU, Xavier otherwise. */
static int resolve_init(const dd_model *m, int i, int init) {
  if (init != DD_INIT_AUTO)
    return init;
  if (i + 1 < m->nlayers && strcmp(m->layers[i + 1].kind->name, "relu") == 0)
    return DD_INIT_HE;
  return DD_INIT_XAVIER;
}

/* What the model will hold, counted before any of it is allocated: the
 * arenas, activations and workspaces (as allocated below) and the caller's
 * per-parameter extra; refused with the numbers when over the budget. */
static int check_budget(const dd_model *m, const dd_model_spec *spec) {
  const double B = m->max_batch, MiB = 1024.0 * 1024.0;
  double arenas = 4.0 * (2.0 * (double)m->nparams + (double)m->grad_extra + (double)m->nbuffers);
  double acts = B * (double)m->in_size, maxsize = (double)m->in_size, ws = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const dd_layer *l = &m->layers[i];
    acts += l->kind->output_is_input ? 0.0 : B * (double)l->out_size;
    if ((double)l->out_size > maxsize)
      maxsize = (double)l->out_size;
    ws += (double)l->ws_fixed + B * (double)l->ws_per_sample;
  }
  double act_bytes = 4.0 * (acts + 2.0 * B * maxsize + ws);
  double extra = spec->mem_per_param * (double)m->nparams;
  double total = arenas + act_bytes + extra;
  if (total <= spec->mem_budget)
    return DD_OK;
  return dd_error(DD_ENOMEM,
                  "the model needs about %.0f MiB per rank (parameters and gradients %.0f MiB, optimizer state %.0f "
                  "MiB, activations and workspaces for %d sample(s) per micro-batch %.0f MiB) but this rank has about "
                  "%.0f MiB (%s): lower train.batch_size or train.micro_batch (or raise train.accum_steps), use a "
                  "smaller model, run fewer "
                  "ranks per node, or give the job more memory (DD_MEM_CHECK=0 skips this check)",
                  total / MiB, arenas / MiB, extra / MiB, m->max_batch, act_bytes / MiB, spec->mem_budget / MiB,
                  spec->mem_budget_why ? spec->mem_budget_why : "its limit");
}

int dd_model_build(const dd_model_spec *spec, int max_batch, int64_t grad_extra, dd_model **out) {
  *out = NULL;
  if (spec->nlayers <= 0)
    return dd_error(DD_ECONFIG, "model.layers is empty; list at least one layer, e.g. [{type: dense, units: 10}]");
  if (spec->input.ndim <= 0 || spec->input.ndim > DD_SHAPE_MAX || dd_shape_size(spec->input) == 0)
    return dd_error(DD_ECONFIG, "model input shape is unknown or empty");
  const int64_t in_size = dd_shape_size(spec->input);
  if (in_size < 0 || in_size > DD_TENSOR_MAX) {
    char sh[96], n[32] = "more than 2^63";
    if (in_size > 0)
      snprintf(n, sizeof n, "%lld", (long long)in_size);
    return dd_error(DD_ECONFIG,
                    "model input shape %s holds %s values per sample; ddtrain's kernels index at most 2^31 - 1",
                    dd_shape_str(spec->input, sh, sizeof sh), n);
  }
  if (max_batch <= 0)
    return dd_error(DD_EINVAL, "model batch capacity must be positive, got %d", max_batch);
  dd_model *m = dd_alloc(1, sizeof *m);
  if (!m)
    return DD_ENOMEM;
  m->nlayers = spec->nlayers;
  m->input = spec->input;
  m->in_size = dd_shape_size(spec->input);
  m->loss = spec->loss;
  m->max_batch = max_batch;
  m->grad_extra = grad_extra;
  int rc = DD_ENOMEM;
  m->layers = dd_alloc((size_t)m->nlayers, sizeof *m->layers);
  if (!m->layers)
    goto fail;
  rc = build_layers(m, spec);
  if (rc)
    goto fail;

  const dd_layer *last = &m->layers[m->nlayers - 1];
  m->out_size = last->out_size;
  m->classes = last->out.d[last->out.ndim - 1];
  m->out_rows = m->out_size / m->classes;

  /* arena offsets, tensor list */
  int ntensors = 0;
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    for (int j = 0; j < l->nparam; j++) {
      l->param[j].offset = m->nparams;
      l->param[j].init = resolve_init(m, i, l->param[j].init);
      m->nparams += l->param[j].size;
    }
    for (int j = 0; j < l->nbuf; j++) {
      l->buf[j].offset = m->nbuffers;
      m->nbuffers += l->buf[j].size;
    }
    ntensors += l->nparam + l->nbuf;
  }
  if (spec->mem_budget > 0 && (rc = check_budget(m, spec)) != DD_OK)
    goto fail;
  rc = DD_ENOMEM;
  m->params = dd_alloc((size_t)(m->nparams ? m->nparams : 1), sizeof(float));
  m->grads = dd_alloc((size_t)(m->nparams + grad_extra + 1), sizeof(float));
  m->buffers = dd_alloc((size_t)(m->nbuffers ? m->nbuffers : 1), sizeof(float));
  m->tensors = dd_alloc((size_t)(ntensors ? ntensors : 1), sizeof *m->tensors);
  m->acts = dd_alloc((size_t)m->nlayers + 1, sizeof *m->acts);
  if (!m->params || !m->grads || !m->buffers || !m->tensors || !m->acts)
    goto fail;
  for (int pass = 0; pass < 2; pass++) /* params first, then buffers */
    for (int i = 0; i < m->nlayers; i++) {
      dd_layer *l = &m->layers[i];
      int n = pass ? l->nbuf : l->nparam;
      for (int j = 0; j < n; j++) {
        dd_param *p = pass ? &l->buf[j] : &l->param[j];
        if (pass) {
          p->data = m->buffers + p->offset;
          p->grad = NULL;
        } else {
          p->data = m->params + p->offset;
          p->grad = m->grads + p->offset;
        }
        dd_tensor_ref *t = &m->tensors[m->ntensors++];
        snprintf(t->name, sizeof t->name, "layer%d/%s", i, p->name);
        t->layer = i;
        t->param = p;
        t->is_buffer = pass;
      }
    }

  /* activations and workspaces, sized once */
  int64_t B = max_batch, maxsize = m->in_size, ws = 0;
  m->acts[0] = dd_alloc((size_t)(B * m->in_size), sizeof(float));
  if (!m->acts[0])
    goto fail;
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    if (l->kind->output_is_input && l->out_size != l->in_size) {
      rc = dd__layer_error(l, "passes its input on as its output but turns %lld values into %lld",
                           (long long)l->in_size, (long long)l->out_size);
      goto fail;
    }
    m->acts[i + 1] = l->kind->output_is_input ? m->acts[i] : dd_alloc((size_t)(B * l->out_size), sizeof(float));
    if (!m->acts[i + 1])
      goto fail;
    if (l->out_size > maxsize)
      maxsize = l->out_size;
    int64_t per;
    if (l->ws_fixed < 0 || dd_mul_overflows(B, l->ws_per_sample, &per) || __builtin_add_overflow(ws, per, &ws) ||
        __builtin_add_overflow(ws, l->ws_fixed, &ws)) {
      rc = dd__layer_error(l, "needs a workspace larger than 2^63 floats; use a smaller batch or layer");
      goto fail;
    }
  }
  m->dbuf[0] = dd_alloc((size_t)(B * maxsize), sizeof(float));
  m->dbuf[1] = dd_alloc((size_t)(B * maxsize), sizeof(float));
  m->ws = dd_alloc((size_t)(ws ? ws : 1), sizeof(float));
  if (!m->dbuf[0] || !m->dbuf[1] || !m->ws)
    goto fail;
  ws = 0;
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    l->ws = m->ws + ws;
    ws += l->ws_fixed + B * l->ws_per_sample;
    if (strcmp(l->kind->name, "residual_end") == 0) { /* residual.c: the block's two ends */
      l->peer = &m->layers[l->spec.pair];
      l->peer->peer = l;
      l->skip = m->acts[l->spec.pair];
    }
  }
  *out = m;
  return DD_OK;
fail:
  dd_model_free(m);
  return rc;
}

void dd_model_free(dd_model *m) {
  if (!m)
    return;
  if (m->acts)
    for (int i = 0; i <= m->nlayers; i++)
      if (i == 0 || m->acts[i] != m->acts[i - 1]) /* not a layer's view of its input */
        dd_free(m->acts[i]);
  dd_free(m->acts);
  dd_free(m->dbuf[0]);
  dd_free(m->dbuf[1]);
  dd_free(m->ws);
  dd_free(m->tensors);
  dd_free(m->params);
  dd_free(m->grads);
  dd_free(m->buffers);
  dd_free(m->layers);
  dd_free(m);
}

static void init_tensor(dd_param *p, dd_rng *r) {
  switch (p->init) {
  case DD_INIT_ZERO:
    memset(p->data, 0, sizeof(float) * (size_t)p->size);
    break;
  case DD_INIT_ONE:
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = 1.0f;
    break;
  case DD_INIT_HE: {
    double std = sqrt(2.0 / (double)(p->fan_in > 0 ? p->fan_in : 1));
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = (float)(std * dd_rng_normal(r));
    break;
  }
  case DD_INIT_NORMAL:
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = (float)dd_rng_normal(r);
    break;
  case DD_INIT_GPT2:
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = (float)(0.02 * dd_rng_normal(r));
    break;
  case DD_INIT_UNIFORM_FANIN: {
    double lim = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = (float)(lim * (2.0 * dd_rng_uniform(r) - 1.0));
    break;
  }
  case DD_INIT_XAVIER:
  default: {
    double lim = sqrt(6.0 / (double)(p->fan_in + p->fan_out > 0 ? p->fan_in + p->fan_out : 1));
    for (int64_t i = 0; i < p->size; i++)
      p->data[i] = (float)(lim * (2.0 * dd_rng_uniform(r) - 1.0));
    break;
  }
  }
}

void dd_model_init_params(dd_model *m, uint64_t seed) {
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    for (int j = 0; j < l->nparam; j++) {
      /* one stream per tensor: adding a layer does not reshuffle the others */
      dd_rng r;
      dd_rng_seed(&r, seed, 0x696e6974ULL ^ ((uint64_t)i << 16) ^ (uint64_t)j);
      init_tensor(&l->param[j], &r);
    }
    for (int j = 0; j < l->nbuf; j++) {
      dd_rng r;
      dd_rng_seed(&r, seed, 0x62756600ULL ^ ((uint64_t)i << 16) ^ (uint64_t)j);
      init_tensor(&l->buf[j], &r);
    }
  }
}

int dd_model_forward(dd_model *m, const dd_pass *p) {
  if (p->B < 0 || p->B > m->max_batch)
    return dd_error(DD_EINVAL, "batch of %d samples exceeds the model's capacity %d", p->B, m->max_batch);
  for (int i = 0; i < m->nlayers; i++) {
    dd_layer *l = &m->layers[i];
    int rc = l->kind->forward(l, p, m->acts[i], m->acts[i + 1]);
    if (rc)
      return rc;
    if (p->forward_done)
      p->forward_done(p->hook_ctx, i);
  }
  return DD_OK;
}

int dd_model_loss(dd_model *m, const dd_pass *p, const void *targets, bool with_grad, dd_loss_sums *s) {
  const float *out = m->acts[m->nlayers];
  float *dout = with_grad ? m->dbuf[0] : NULL;
  int64_t rows = (int64_t)p->B * m->out_rows;
  if (m->loss == DD_LOSS_CROSS_ENTROPY) {
    dd_cross_entropy(dout, s, out, targets, rows, (int)m->classes);
  } else {
    dd_mse(dout, s, out, targets, rows, (int)m->classes);
  }
  return DD_OK;
}

int dd_model_backward_input(dd_model *m, const dd_pass *p, float *dx0) {
  int cur = 0; /* dbuf[cur] holds dy of layer i */
  for (int i = m->nlayers - 1; i >= 0; i--) {
    dd_layer *l = &m->layers[i];
    const bool same = l->kind->backward_in_place && i > 0;
    float *dx = i > 0 ? m->dbuf[same ? cur : cur ^ 1] : dx0;
    int rc = l->kind->backward(l, p, m->acts[i], m->acts[i + 1], m->dbuf[cur], dx);
    if (rc == DD_OK && p->grad_ready)
      rc = p->grad_ready(p->hook_ctx, i);
    if (rc)
      return rc;
    cur ^= same ? 0 : 1;
  }
  return DD_OK;
}

int dd_model_backward(dd_model *m, const dd_pass *p) {
  return dd_model_backward_input(m, p, NULL);
}

void dd_model_zero_grad(dd_model *m) {
  memset(m->grads, 0, sizeof(float) * (size_t)(m->nparams + m->grad_extra));
}

void dd_model_layer_range(const dd_model *m, int i, int64_t *lo, int64_t *hi) {
  const dd_layer *l = &m->layers[i];
  *lo = *hi = 0;
  for (int j = 0; j < l->nparam; j++) {
    const int64_t a = l->param[j].offset, b = a + l->param[j].size;
    if (j == 0 || a < *lo)
      *lo = a;
    if (j == 0 || b > *hi)
      *hi = b;
  }
}

double dd_model_train_flops(const dd_model *m) {
  double f = 0;
  for (int i = 0; i < m->nlayers; i++)
    f += m->layers[i].flops;
  return 3.0 * f;
}

uint64_t dd_model_checksum(const dd_model *m) {
  uint64_t h = dd_fnv1a(m->params, sizeof(float) * (size_t)m->nparams, DD_FNV_OFFSET);
  return dd_fnv1a(m->buffers, sizeof(float) * (size_t)m->nbuffers, h);
}

void dd_model_summary(const dd_model *m, char *buf, int n) {
  int used = 0;
  char s[64];
  used += snprintf(buf + used, (size_t)(n - used), "  input %s\n", dd_shape_str(m->input, s, sizeof s));
  for (int i = 0; i < m->nlayers && used < n; i++) {
    const dd_layer *l = &m->layers[i];
    int64_t np = 0;
    for (int j = 0; j < l->nparam; j++)
      np += l->param[j].size;
    char tie[48] = "";
    if (l->spec.tie == DD_TIE_EMBEDDING && l->peer)
      snprintf(tie, sizeof tie, " + weight of layer %d (tied)", l->peer->index);
    used += snprintf(buf + used, (size_t)(n - used), "  %2d %-12s -> %-12s %10lld params%s\n", i, l->kind->name,
                     dd_shape_str(l->out, s, sizeof s), (long long)np, tie);
  }
  if (used < n)
    snprintf(buf + used, (size_t)(n - used), "  total %lld parameters (%.2f MiB)\n", (long long)m->nparams,
             (double)m->nparams * 4.0 / 1048576.0);
}
