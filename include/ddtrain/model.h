/* ddtrain model: the layer list, the parameter and gradient arenas, and the
 * activation buffers, sized once for the largest local batch.
 *
 * Arena layout: the parameters of layer 0 in declaration order, then layer
 * 1, ...; the gradient arena has the same layout, so the optimizer is one
 * flat loop and the gradient allreduce is one call. Non-trainable buffers
 * (batch-norm running statistics) live in a third arena. */
#ifndef DDTRAIN_MODEL_H
#define DDTRAIN_MODEL_H

#include "ddtrain/layers.h"

typedef struct dd_model_spec {
  dd_shape input; /* per-sample input shape; ndim 0 = take it from the data */
  int nlayers;
  dd_layer_spec *layers; /* borrowed */
  int loss;              /* DD_LOSS_* */
  /* optional: refuse before allocating when the model (arenas, activations
   * and workspaces, plus mem_per_param bytes per parameter held elsewhere,
   * e.g. optimizer state) would need more than mem_budget bytes (0: no
   * check); mem_budget_why says where the budget comes from */
  double mem_budget, mem_per_param;
  const char *mem_budget_why;
} dd_model_spec;

/* One named tensor of the model, for checkpoints and summaries. */
typedef struct dd_tensor_ref {
  char name[2 * DD_NAME_MAX + 16]; /* "layer0/weight" */
  int layer;
  dd_param *param; /* the layer's view (data/grad/offset/dims) */
  bool is_buffer;
} dd_tensor_ref;

typedef struct dd_model {
  int nlayers;
  dd_layer *layers; /* [nlayers], owned */
  dd_shape input;
  int64_t in_size;
  int loss;
  int64_t out_size; /* per-sample output elements */
  int64_t classes;  /* K: last output dimension */
  int64_t out_rows; /* per-sample loss rows: out_size / K (T for sequences) */
  int max_batch;
  int64_t nparams; /* floats in the parameter arena */
  float *params;   /* [nparams] owned */
  float *grads;    /* [nparams + grad_extra] owned; tail reserved for the trainer */
  int64_t grad_extra;
  int64_t nbuffers;
  float *buffers; /* [nbuffers] owned */
  int ntensors;
  dd_tensor_ref *tensors; /* params first, then buffers; owned */
  float **acts;           /* acts[i]: input of layer i, acts[nlayers]: output; [max_batch * size] */
  float *dbuf[2];         /* ping-pong activation gradients, [max_batch * max size] */
  float *ws;              /* all layers' workspaces */
} dd_model;

/* Build a model for local batches of at most max_batch samples. grad_extra
 * floats are appended to the gradient arena (the trainer piggybacks its
 * per-step sums on the gradient allreduce). Parameters are zero until
 * dd_model_init_params or a checkpoint load. *out owned by the caller
 * (dd_model_free). Errors name the layer and config line. */
int dd_model_build(const dd_model_spec *spec, int max_batch, int64_t grad_extra, dd_model **out);
void dd_model_free(dd_model *m);

/* He/Xavier/zero initialisation from seed (identical on every rank). */
void dd_model_init_params(dd_model *m, uint64_t seed);

/* Forward pass on acts[0][B, in_size] (the caller fills it); the output is
 * in acts[nlayers]. */
int dd_model_forward(dd_model *m, const dd_pass *p);

/* Loss on the current output and its gradient into dbuf (for backward).
 * targets: int32 labels [B * out_rows] for cross-entropy, float [B *
 * out_size] for MSE. with_grad=false for evaluation. Sums ADDED to *s. */
int dd_model_loss(dd_model *m, const dd_pass *p, const void *targets, bool with_grad, dd_loss_sums *s);

/* Backward pass from the loss gradient: accumulates into m->grads. */
int dd_model_backward(dd_model *m, const dd_pass *p);
/* The same, and the gradient of the model's input into dx0 [B, in_size]
 * (NULL: not computed, as dd_model_backward). */
int dd_model_backward_input(dd_model *m, const dd_pass *p, float *dx0);

void dd_model_zero_grad(dd_model *m);

/* The range [*lo, *hi) of the parameter (and gradient) arena that layer i's
 * parameters occupy; *lo == *hi for a layer without parameters. */
void dd_model_layer_range(const dd_model *m, int i, int64_t *lo, int64_t *hi);

/* Training FLOPs per sample: forward and backward (twice the forward) of
 * the layers' matrix products, as llm.c and PaLM's MFU count them. */
double dd_model_train_flops(const dd_model *m);

/* Checksum of the parameter and buffer arenas (bytes, FNV-1a). */
uint64_t dd_model_checksum(const dd_model *m);

/* One line per layer: index, kind, output shape, parameter count. */
void dd_model_summary(const dd_model *m, char *buf, int n);

#endif
