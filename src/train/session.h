/* Internal: what train, eval and predict share — data, model, checks. */
#ifndef DDTRAIN_TRAIN_SESSION_H
#define DDTRAIN_TRAIN_SESSION_H

#include "ddtrain/checkpoint.h"
#include "ddtrain/config.h"
#include "ddtrain/data.h"
#include "ddtrain/model.h"
#include "ddtrain/optim.h"
#include "ddtrain/train.h"

/* The step's control sums, reduced after the gradients (dd_sync_finish). */
enum { DD__CTL_LOSS, DD__CTL_COUNT, DD__CTL_CORRECT, DD__CTL_STOP, DD__CTL_FAIL, DD__CTL_N };

/* Per-sample input shape: model.input if declared (checked against the
 * data), else the data's own. */
int dd__input_shape(const dd_config *cfg, const dd_source_info *ds, dd_shape *s);
/* Labels of the source fit the model's outputs and loss; `role` is e.g.
 * "data.train". Collective. */
int dd__check_labels(dd_comm *c, const dd_model *m, dd_source *src, const char *role);
/* Input shape of the source fits the model. */
int dd__check_input(const dd_model *m, const dd_source_info *ds, const char *role);
/* Token ids of the source fit the model's first layer if it is an
 * embedding: integers in [0, vocab) at every valid step (one-line error
 * naming the sample and the fix otherwise). Collective. */
int dd__check_tokens(dd_comm *c, const dd_model *m, dd_source *src, const char *role);

/* Forward (and loss) over the rank's share of a split, chunked by the
 * model's capacity; sums allreduced. If out != NULL, raw outputs of the
 * rank's share are written there ([share, out_size]). */
int dd__evaluate(dd_comm *c, dd_model *m, dd_source *src, const dd_split *s, void *ybuf, int64_t *rows, float *out,
                 dd_loss_sums *sums);

/* Build the model described by a checkpoint's config for the data file and
 * load its parameters; open the data as *src. *cfg, *src and *m are owned by
 * the caller. */
int dd__model_from_checkpoint(dd_comm *c, const char *ckpt, const char *data, const char *xname, const char *yname,
                              bool need_labels, dd_config **cfg, dd_source **src, dd_model **m);

#endif
