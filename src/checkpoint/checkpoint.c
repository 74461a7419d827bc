/* Checkpoint files: atomic save on rank 0, validated load + broadcast. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "../data/h5util.h"
#include "ddtrain/checkpoint.h"
#include "ddtrain/core.h"

#define PATH_N 4096

/* The first non-finite value of a tensor, or -1. */
static int64_t first_nonfinite(const float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return i;
  return -1;
}

/* Every tensor carries the XXH3-64 of its float32 bytes (attribute xxh3_64),
 * checked on load: a flipped bit anywhere in the data is caught. */
static uint64_t tensor_hash(const float *v, int64_t n) {
  return (uint64_t)XXH3_64bits(v, sizeof(float) * (size_t)n);
}

static int write_tensor(hid_t parent, const char *group, const char *name, const dd_param *p, const float *data,
                        const char *path) {
  char full[512];
  snprintf(full, sizeof full, "%s/%s", group, name);
  int64_t bad = first_nonfinite(data, p->size);
  if (bad >= 0)
    return dd_error(DD_ENUMERIC,
                    "not writing checkpoint '%s': %s holds %s at [%lld]; the model diverged (lower optim.lr, clip "
                    "gradients) and the previous checkpoint is kept",
                    path, full, isnan(data[bad]) ? "NaN" : "an infinity", (long long)bad);
  hsize_t dims[DD_SHAPE_MAX];
  for (int i = 0; i < p->ndim; i++)
    dims[i] = (hsize_t)p->dims[i];
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t sp = H5Screate_simple(p->ndim, dims, NULL);
  hid_t ds = H5Dcreate2(parent, full, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int rc = DD_OK;
  if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ||
      dd__h5_attr_i64(ds, "xxh3_64", (int64_t)tensor_hash(data, p->size)) < 0)
    rc = DD_H5_FAIL(full, path);
  if (ds >= 0)
    H5Dclose(ds);
  H5Sclose(sp);
  H5Pclose(lcpl);
  return rc;
}

/* per-sample input shape as an int64 array attribute */
static int write_shape(hid_t f, dd_shape s) {
  hsize_t n = (hsize_t)s.ndim;
  hid_t sp = H5Screate_simple(1, &n, NULL);
  hid_t a = H5Acreate2(f, "input_shape", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, s.d) >= 0 ? 0 : -1;
  if (a >= 0)
    H5Aclose(a);
  H5Sclose(sp);
  return rc;
}

/* 0, -1 if missing (or not integers), 1 if it has more than DD_SHAPE_MAX values */
static int read_shape(hid_t f, dd_shape *s) {
  memset(s, 0, sizeof *s);
  int64_t n = 0;
  hid_t a = dd__h5_attr_open(f, "input_shape", INT64_MAX, &n);
  if (a < 0)
    return -1;
  hid_t t = H5Aget_type(a);
  const bool ints = H5Tget_class(t) == H5T_INTEGER;
  H5Tclose(t);
  int rc = !ints ? -1 : n > DD_SHAPE_MAX ? 1 : H5Aread(a, H5T_NATIVE_INT64, s->d) >= 0 ? 0 : -1;
  if (rc == 0)
    s->ndim = (int)n;
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

/* A model's per-sample input shape as the file says it: every dimension at
 * least 1 and the product countable by the kernels (a crafted
 * 16x1048577x1099510579201 multiplies to 2^64 + 16, "16 values"). */
static int check_shape(const char *path, dd_shape s) {
  char sh[128];
  int64_t size = 1;
  bool bad = false;
  for (int i = 0; i < s.ndim; i++)
    bad = bad || s.d[i] < 1 || dd_mul_overflows(size, s.d[i], &size);
  if (!bad && size <= DD_TENSOR_MAX)
    return DD_OK;
  return dd_error(DD_ECKPT,
                  "checkpoint '%s': the input_shape attribute %s is not a per-sample shape ddtrain builds (every "
                  "dimension at least 1, at most 2^31 - 1 values); the file is damaged",
                  path, dd_shape_str(s, sh, sizeof sh));
}

/* the vocabulary of a character model: int32 code points, id order */
static int write_vocab(hid_t f, const int32_t *vocab, int64_t n, const char *path) {
  hsize_t dim = (hsize_t)n;
  hid_t sp = H5Screate_simple(1, &dim, NULL);
  hid_t ds = H5Dcreate2(f, "/vocab", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = DD_OK;
  if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, vocab) < 0 ||
      dd__h5_attr_str(ds, "encoding", "unicode code point of each token id") < 0)
    rc = DD_H5_FAIL("/vocab", path);
  if (ds >= 0)
    H5Dclose(ds);
  H5Sclose(sp);
  return rc;
}

/* The model's tied weights, "layer13/weight=layer0/weight" joined by ';'
 * ("" for none): the checkpoint's attribute "tied". */
static void tied_desc(const dd_model *m, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < m->nlayers && used < n; i++)
    if (m->layers[i].spec.tie == DD_TIE_EMBEDDING && m->layers[i].peer)
      used += (size_t)snprintf(buf + used, n - used, "%slayer%d/weight=layer%d/weight", used ? ";" : "", i,
                               m->layers[i].peer->index);
}

/* A checkpoint of a tied model into an untied config or the other way
 * round: a message naming the first layer that differs. */
static int check_ties(hid_t f, const char *path, const dd_model *m) {
  char have[1024] = "", want[1024];
  dd__h5_read_attr_str(f, "tied", have, sizeof have); /* absent before ties existed: none */
  tied_desc(m, want, sizeof want);
  if (strcmp(have, want) == 0)
    return DD_OK;
  for (int i = 0; i < m->nlayers; i++) {
    char key[48];
    snprintf(key, sizeof key, "layer%d/weight=", i);
    const bool in_file = strstr(have, key) != NULL;
    const bool in_cfg = m->layers[i].spec.tie == DD_TIE_EMBEDDING;
    if (in_file && !in_cfg)
      return dd_error(DD_ECKPT,
                      "checkpoint '%s' has model.layers[%d] (%s) tied to the embedding (tied = \"%s\"), the config's "
                      "layer has a weight of its own; add tie: embedding to model.layers[%d] or use the config the "
                      "checkpoint was trained with",
                      path, i, m->layers[i].kind->name, have, i);
    if (in_cfg && !in_file)
      return dd_error(DD_ECKPT,
                      "the config ties model.layers[%d] (%s) to the embedding (tie: embedding), checkpoint '%s' has "
                      "a weight of its own for it (/params/layer%d/weight); remove tie from model.layers[%d] or use "
                      "the config the checkpoint was trained with",
                      i, m->layers[i].kind->name, path, i, i);
  }
  return dd_error(DD_ECKPT,
                  "checkpoint '%s' ties weights as \"%s\", the config's model as \"%s\"; use the config the "
                  "checkpoint was trained with",
                  path, have, want);
}

static int write_file(const char *tmp, const char *final, const dd_model *m, const dd_optim *o,
                      const dd_train_state *st, const char *config_text, const int32_t *vocab, int64_t nvocab) {
  /* the HDF5 1.10 file format: superblock v3 and object headers with checksums, so damaged metadata is
   * detected rather than misread (readable by HDF5 >= 1.10, h5py included) */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f < 0)
    return dd_error(DD_EIO, "cannot create checkpoint '%s'; check that checkpoint.dir is writable and has space", tmp);
  int rc = DD_OK;
  for (int i = 0; i < m->ntensors && rc == DD_OK; i++) {
    const dd_tensor_ref *t = &m->tensors[i];
    rc = write_tensor(f, t->is_buffer ? "/buffers" : "/params", t->name, t->param, t->param->data, final);
  }
  for (int s = 0; o && s < o->nstate && rc == DD_OK; s++) {
    char group[128];
    snprintf(group, sizeof group, "/optim/%s", o->state_name[s]);
    for (int i = 0; i < m->ntensors && rc == DD_OK; i++) {
      const dd_tensor_ref *t = &m->tensors[i];
      if (!t->is_buffer)
        rc = write_tensor(f, group, t->name, t->param, o->state[s] + t->param->offset, final);
    }
  }
  if (rc == DD_OK && vocab && nvocab > 0)
    rc = write_vocab(f, vocab, nvocab, final);
  /* layer types on the layer groups, so a reader can tell what is what */
  for (int i = 0; i < m->nlayers && rc == DD_OK; i++) {
    char g[64];
    snprintf(g, sizeof g, "/params/layer%d", i);
    if (H5Lexists(f, "/params", H5P_DEFAULT) > 0 && H5Lexists(f, g, H5P_DEFAULT) > 0) {
      hid_t gid = H5Gopen2(f, g, H5P_DEFAULT);
      if (gid >= 0) {
        dd__h5_attr_str(gid, "type", m->layers[i].kind->name);
        H5Gclose(gid);
      }
    }
  }
  char tied[1024];
  tied_desc(m, tied, sizeof tied);
  char stamp[64];
  time_t now = time(NULL);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  if (rc == DD_OK &&
      (dd__h5_attr_str(f, "format", DD_CKPT_FORMAT) < 0 || dd__h5_attr_i64(f, "format_version", DD_CKPT_VERSION) < 0 ||
       dd__h5_attr_str(f, "ddtrain_version", DD_VERSION_STRING) < 0 || dd__h5_attr_str(f, "created", stamp) < 0 ||
       dd__h5_attr_i64(f, "step", st->step) < 0 || dd__h5_attr_i64(f, "epoch", st->epoch) < 0 ||
       dd__h5_attr_i64(f, "batch_in_epoch", st->batch) < 0 ||
       dd__h5_attr_i64(f, "samples_seen", st->samples_seen) < 0 || dd__h5_attr_i64(f, "seed", (int64_t)st->seed) < 0 ||
       dd__h5_attr_str(f, "rng", "counter-based: shuffle = f(seed, epoch), dropout = f(seed, step, sample)") < 0 ||
       dd__h5_attr_i64(f, "nranks", st->nranks) < 0 || dd__h5_attr_i64(f, "batch_size", st->batch_size) < 0 ||
       dd__h5_attr_i64(f, "nlayers", m->nlayers) < 0 || write_shape(f, m->input) < 0 ||
       dd__h5_attr_i64(f, "ntensors", m->ntensors) < 0 || dd__h5_attr_str(f, "tied", tied) < 0 ||
       dd__h5_attr_str(f, "optimizer", o ? dd_optim_name(o->spec.kind) : "none") < 0 ||
       dd__h5_attr_i64(f, "optimizer_steps", o ? o->t : 0) < 0 ||
       dd__h5_attr_str(f, "optimizer_decay", dd_optim_decay_name(o ? o->spec.decay : DD_DECAY_ALL)) < 0 ||
       dd__h5_attr_str(f, "config", config_text ? config_text : "") < 0 ||
       dd__h5_attr_str(f, "sampler", st->sampler[0] ? st->sampler : "global") < 0 ||
       dd__h5_attr_i64(f, "sampler_chunk", st->sampler_chunk) < 0 ||
       dd__h5_attr_i64(f, "sampler_window", st->sampler_window) < 0 ||
       dd__h5_attr_f64(f, "epoch_loss_sum", st->ep_loss) < 0 || dd__h5_attr_f64(f, "epoch_count", st->ep_count) < 0 ||
       dd__h5_attr_f64(f, "epoch_correct", st->ep_correct) < 0 ||
       dd__h5_attr_f64(f, "epoch_samples", st->ep_samples) < 0 ||
       dd__h5_attr_i64(f, "epoch_digest", (int64_t)st->ep_digest) < 0 ||
       dd__h5_attr_i64(f, "outlier_n", st->out_n) < 0 || dd__h5_attr_i64(f, "outlier_pos", st->out_pos) < 0 ||
       dd__h5_attr_i64(f, "skip_run", st->skip_run) < 0 || dd__h5_attr_i64(f, "skipped_steps", st->skipped) < 0 ||
       (st->out_n > 0 && (dd__h5_attr_f64v(f, "outlier_loss", st->out_loss, st->out_n) < 0 ||
                          dd__h5_attr_f64v(f, "outlier_grad_norm", st->out_norm, st->out_n) < 0))))
    rc = DD_H5_FAIL("writing attributes", final);
  if (H5Fclose(f) < 0 && rc == DD_OK)
    rc = DD_H5_FAIL("closing", final);
  return rc;
}

/* The step of a name the naming scheme made: "ckpt-" digits ".h5", else -1.
 * Anything else in the directory (a user's ckpt-best.h5) is never a
 * candidate for --resume auto and never pruned. */
static int64_t ckpt_step(const char *name) {
  size_t len = strlen(name);
  if (strncmp(name, "ckpt-", 5) != 0 || len < 5 + 10 + 3 || len > 5 + 18 + 3 || strcmp(name + len - 3, ".h5") != 0)
    return -1;
  int64_t step = 0;
  for (size_t i = 5; i < len - 3; i++) {
    if (name[i] < '0' || name[i] > '9')
      return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

/* Checkpoint files in dir, newest (highest step) first. */
static int list_ckpts(const char *dir, char ***names, int *count) {
  *names = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d)
    return errno == ENOENT ? DD_OK
                           : dd_error(DD_EIO, "cannot read checkpoint directory '%s': %s", dir, strerror(errno));
  int cap = 0;
  struct dirent *e;
  int rc = DD_OK;
  while ((e = readdir(d))) {
    if (ckpt_step(e->d_name) < 0)
      continue;
    if (*count == cap) {
      int nc = cap ? cap * 2 : 16;
      char **nn = dd_alloc((size_t)nc, sizeof *nn);
      if (!nn) {
        rc = DD_ENOMEM;
        break;
      }
      if (*names)
        memcpy(nn, *names, sizeof *nn * (size_t)*count);
      dd_free(*names);
      *names = nn;
      cap = nc;
    }
    (*names)[(*count)++] = dd_strdup(e->d_name);
  }
  closedir(d);
  for (int i = 1; i < *count; i++) /* by the parsed step, newest first */
    for (int j = i; j > 0 && ckpt_step((*names)[j - 1]) < ckpt_step((*names)[j]); j--) {
      char *t = (*names)[j];
      (*names)[j] = (*names)[j - 1];
      (*names)[j - 1] = t;
    }
  return rc;
}

/* Temporary files of writes that never reached their rename: a process killed
 * mid-write (SIGKILL, node failure, OOM) cannot remove its own. Called when a
 * run takes the directory's lock (a run that resumes a finished one commits no
 * checkpoint) and after each commit, when this run is the directory's writer. */
static void remove_stale_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, ".ckpt-", 6) != 0 || !strstr(e->d_name, ".h5.tmp."))
      continue;
    char p[PATH_N + 300];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
}

static void free_list(char **names, int count) {
  for (int i = 0; i < count; i++)
    dd_free(names[i]);
  dd_free(names);
}

static int save_root(const char *dir, int keep, const dd_model *m, const dd_optim *o, const dd_train_state *st,
                     const char *config_text, const int32_t *vocab, int64_t nvocab, char *final, size_t final_n) {
  dd__h5_quiet();
  int rc = dd_mkdirs(dir, "checkpoint.dir");
  if (rc)
    return rc;
  char tmp[PATH_N + 64];
  snprintf(final, final_n, "%s/ckpt-%010lld.h5", dir, (long long)st->step);
  snprintf(tmp, sizeof tmp, "%s/.ckpt-%010lld.h5.tmp.%d", dir, (long long)st->step, (int)getpid());
  rc = write_file(tmp, final, m, o, st, config_text, vocab, nvocab);
  if (rc == DD_OK && dd_fault("enospc", 0, st->step)) /* test only: the disk fills up mid-write */
    rc = dd_error(DD_EIO,
                  "writing checkpoint '%s' failed: No space left on device (injected); free space in checkpoint.dir, "
                  "the previous checkpoint is kept",
                  final);
  if (rc == DD_OK)
    rc = dd__h5_commit(tmp, final);
  else
    unlink(tmp);
  if (rc == DD_OK)
    remove_stale_temps(dir);
  if (rc == DD_OK && keep > 0) {
    char **names;
    int count;
    if (list_ckpts(dir, &names, &count) == DD_OK) {
      for (int i = keep; i < count; i++) {
        char p[PATH_N + 300];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
      }
      free_list(names, count);
    }
  }
  return rc;
}

int dd_checkpoint_save(dd_comm *c, const char *dir, int keep, const dd_model *m, const dd_optim *o,
                       const dd_train_state *st, const char *config_text, char *path_out, size_t path_n) {
  return dd_checkpoint_save_with_vocab(c, dir, keep, m, o, st, config_text, NULL, 0, path_out, path_n);
}

int dd_checkpoint_save_with_vocab(dd_comm *c, const char *dir, int keep, const dd_model *m, const dd_optim *o,
                                  const dd_train_state *st, const char *config_text, const int32_t *vocab,
                                  int64_t nvocab, char *path_out, size_t path_n) {
  char final[PATH_N + 64] = "";
  int rc = DD_OK;
  if (dd_comm_rank(c) == 0)
    rc = save_root(dir, keep, m, o, st, config_text, vocab, nvocab, final, sizeof final);
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK && path_out) {
    rc = dd_comm_bcast(c, final, sizeof final, 0);
    snprintf(path_out, path_n, "%s", final);
  }
  return rc;
}

/* ---- load -------------------------------------------------------------- */

static int open_ckpt(const char *path, hid_t *f) {
  int rc = dd__h5_open_read(path, "checkpoint", f);
  if (rc)
    return rc;
  char fmt[64];
  int64_t ver = 0;
  if (dd__h5_read_attr_str(*f, "format", fmt, sizeof fmt) != 0 || strcmp(fmt, DD_CKPT_FORMAT) != 0) {
    H5Fclose(*f);
    return dd_error(DD_ECKPT, "'%s' is not a ddtrain checkpoint (no format = \"%s\" attribute)", path, DD_CKPT_FORMAT);
  }
  if (dd__h5_read_attr_i64(*f, "format_version", &ver) != 0 || ver < 1 || ver > DD_CKPT_VERSION) {
    H5Fclose(*f);
    return dd_error(DD_ECKPT,
                    "checkpoint '%s' has format version %lld; this ddtrain (%s) reads versions 1..%d; upgrade ddtrain",
                    path, (long long)ver, DD_VERSION_STRING, DD_CKPT_VERSION);
  }
  return DD_OK;
}

/* Read an open tensor dataset of n floats into dst and prove it: stored as
 * float32, its checksum matches (files of format 2 carry one), every value
 * finite. */
static int check_data(hid_t ds, const char *path, const char *full, float *dst, int64_t n, bool need_hash) {
  hid_t t = H5Dget_type(ds);
  bool f32 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4 && dd__h5_type_ok(t);
  H5Tclose(t);
  if (!f32)
    return dd_error(DD_ECKPT,
                    "checkpoint '%s': %s is not stored as float32; the file was not written by ddtrain or is "
                    "damaged",
                    path, full);
  if (dd__h5_stored_elsewhere(ds))
    return dd_error(DD_ECKPT,
                    "checkpoint '%s': %s keeps its data outside the file (external or virtual storage); the file was "
                    "not written by ddtrain",
                    path, full);
  hid_t sp = H5Dget_space(ds);
  hsize_t dims[H5S_MAX_RANK];
  const int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
  H5Sclose(sp);
  if (nd < 0 || dd__h5_check_stored(ds, path, full, "a tensor", nd, dims, n * (int64_t)sizeof(float)) != DD_OK) {
    dd_error_clear();
    return dd_error(DD_ECKPT, "checkpoint '%s': %s does not hold the values its shape says; the file is damaged", path,
                    full);
  }
  if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
    return dd_error(DD_ECKPT, "checkpoint '%s': %s cannot be read (%s); the file is damaged: use an earlier checkpoint",
                    path, full, "HDF5 read failed");
  int64_t stored;
  const bool has = dd__h5_read_attr_i64(ds, "xxh3_64", &stored) == 0;
  if (need_hash && !has)
    return dd_error(DD_ECKPT,
                    "checkpoint '%s': %s has no checksum (xxh3_64); the file is damaged: use an earlier "
                    "checkpoint",
                    path, full);
  if (has && (uint64_t)stored != tensor_hash(dst, n))
    return dd_error(DD_ECKPT,
                    "checkpoint '%s': %s fails its checksum (xxh3_64); the file is damaged: use an earlier checkpoint",
                    path, full);
  H5Eclear2(H5E_DEFAULT);
  int64_t bad = first_nonfinite(dst, n);
  if (bad >= 0)
    return dd_error(DD_ECKPT, "checkpoint '%s': %s holds %s at [%lld]; it cannot be trained on or evaluated", path,
                    full, isnan(dst[bad]) ? "NaN" : "an infinity", (long long)bad);
  return DD_OK;
}

static int read_tensor(hid_t f, const char *path, const char *group, const dd_tensor_ref *t, float *dst,
                       bool need_hash) {
  char full[512];
  snprintf(full, sizeof full, "%s/%s", group, t->name);
  const dd_param *p = t->param;
  char want[64];
  dd_shape ws = {p->ndim, {0}};
  for (int i = 0; i < p->ndim; i++)
    ws.d[i] = p->dims[i];
  dd_shape_str(ws, want, sizeof want);
  if (H5Lexists(f, group, H5P_DEFAULT) <= 0 || H5Lexists(f, full, H5P_DEFAULT) <= 0)
    return dd_error(DD_ECKPT,
                    "checkpoint '%s' has no %s (shape %s) that the model needs; it was written for a different model",
                    path, full, want);
  hid_t ds = H5Dopen2(f, full, H5P_DEFAULT);
  if (ds < 0)
    return DD_H5_FAIL(full, path);
  hid_t sp = H5Dget_space(ds);
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t dims[DD_SHAPE_MAX] = {0};
  int same = nd == p->ndim;
  if (same && nd > 0) {
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; i < nd; i++)
      same = same && (int64_t)dims[i] == p->dims[i];
  }
  H5Sclose(sp);
  int rc = DD_OK;
  if (!same) {
    char have[64] = "";
    dd_shape hs = {nd > 0 && nd <= DD_SHAPE_MAX ? nd : 0, {0}};
    for (int i = 0; i < hs.ndim; i++)
      hs.d[i] = (int64_t)dims[i];
    dd_shape_str(hs, have, sizeof have);
    rc = dd_error(DD_ECKPT,
                  "checkpoint '%s': %s has shape %s but the model expects %s; the config's model differs from the one "
                  "that wrote the checkpoint",
                  path, full, have, want);
  } else {
    rc = check_data(ds, path, full, dst, p->size, need_hash);
  }
  H5Dclose(ds);
  return rc;
}

/* The training position of an open checkpoint, range-checked. */
static int read_state(hid_t f, const char *path, int64_t ver, dd_train_state *st) {
  int rc = DD_OK;
  int64_t seed = 0;
  if (dd__h5_read_attr_i64(f, "step", &st->step) || dd__h5_read_attr_i64(f, "epoch", &st->epoch) ||
      dd__h5_read_attr_i64(f, "batch_in_epoch", &st->batch) ||
      dd__h5_read_attr_i64(f, "samples_seen", &st->samples_seen) || dd__h5_read_attr_i64(f, "seed", &seed) ||
      dd__h5_read_attr_i64(f, "nranks", &st->nranks) || dd__h5_read_attr_i64(f, "batch_size", &st->batch_size))
    rc = dd_error(DD_ECKPT, "checkpoint '%s' lacks training-state attributes (step, epoch, ...)", path);
  st->seed = (uint64_t)seed;
  int64_t digest = 0;
  if (rc == DD_OK && ver < 2) { /* 0.1: Fisher-Yates orders, no epoch statistics */
    snprintf(st->sampler, sizeof st->sampler, "legacy");
    st->sampler_chunk = st->sampler_window = 0;
    st->ep_loss = st->ep_count = st->ep_correct = st->ep_samples = 0;
    st->ep_digest = 0;
  } else if (rc == DD_OK && (dd__h5_read_attr_str(f, "sampler", st->sampler, sizeof st->sampler) ||
                             dd__h5_read_attr_i64(f, "sampler_chunk", &st->sampler_chunk) ||
                             dd__h5_read_attr_i64(f, "sampler_window", &st->sampler_window) ||
                             dd__h5_read_attr_f64(f, "epoch_loss_sum", &st->ep_loss) ||
                             dd__h5_read_attr_f64(f, "epoch_count", &st->ep_count) ||
                             dd__h5_read_attr_f64(f, "epoch_correct", &st->ep_correct) ||
                             dd__h5_read_attr_f64(f, "epoch_samples", &st->ep_samples) ||
                             dd__h5_read_attr_i64(f, "epoch_digest", &digest))) {
    rc = dd_error(DD_ECKPT, "checkpoint '%s' lacks the sampler or epoch attributes of format version 2", path);
  }
  st->ep_digest = (uint64_t)digest;
  /* train.skip_zscore's window (absent: none; written since the option came) */
  st->out_n = st->out_pos = st->skip_run = st->skipped = 0;
  bool window_bad = false;
  if (rc == DD_OK && ver >= 2 && dd__h5_read_attr_i64(f, "outlier_n", &st->out_n) == 0) {
    window_bad =
        dd__h5_read_attr_i64(f, "outlier_pos", &st->out_pos) || dd__h5_read_attr_i64(f, "skip_run", &st->skip_run) ||
        dd__h5_read_attr_i64(f, "skipped_steps", &st->skipped) || st->out_n < 0 || st->out_n > DD_OUTLIER_MAX ||
        st->out_pos < 0 || st->out_pos >= DD_OUTLIER_MAX || st->skip_run < 0 || st->skipped < 0;
    if (!window_bad && st->out_n > 0)
      window_bad = dd__h5_read_attr_f64v(f, "outlier_loss", st->out_loss, st->out_n) ||
                   dd__h5_read_attr_f64v(f, "outlier_grad_norm", st->out_norm, st->out_n);
    for (int64_t i = 0; !window_bad && i < st->out_n; i++)
      window_bad = !isfinite(st->out_loss[i]) || !isfinite(st->out_norm[i]);
  }
  /* a damaged or crafted file must not steer training into nonsense */
  const char *bad = NULL;
  if (rc == DD_OK) {
    if (st->step < 0 || st->step > ((int64_t)1 << 50))
      bad = "step";
    else if (st->epoch < 0 || st->epoch > 1000000000)
      bad = "epoch";
    else if (st->batch < 0 || st->batch > ((int64_t)1 << 50))
      bad = "batch_in_epoch";
    else if (st->samples_seen < 0)
      bad = "samples_seen";
    else if (st->batch_size < 1)
      bad = "batch_size";
    else if (strcmp(st->sampler, "global") != 0 && strcmp(st->sampler, "chunks") != 0 &&
             strcmp(st->sampler, "legacy") != 0)
      bad = "sampler";
    else if (st->sampler_chunk < 0 || st->sampler_window < 0 ||
             (strcmp(st->sampler, "chunks") == 0 && (st->sampler_chunk < 1 || st->sampler_window < 1)))
      bad = "sampler_chunk/sampler_window";
    else if (!(st->ep_loss >= 0) || !(st->ep_count >= 0) || !(st->ep_correct >= 0) || !(st->ep_samples >= 0) ||
             !isfinite(st->ep_loss) || !isfinite(st->ep_count) || !isfinite(st->ep_samples))
      bad = "epoch statistics";
    else if (window_bad)
      bad = "outlier window (outlier_*, skip_run, skipped_steps)";
  }
  if (bad)
    rc = dd_error(DD_ECKPT,
                  "checkpoint '%s': the training-state attribute %s is out of range; the file is damaged: "
                  "use an earlier checkpoint",
                  path, bad);
  return rc;
}

static int load_root(const char *path, dd_model *m, dd_optim *o, dd_train_state *st) {
  hid_t f;
  int rc = open_ckpt(path, &f);
  if (rc)
    return rc;
  int64_t ver = 1;
  dd__h5_read_attr_i64(f, "format_version", &ver);
  int64_t nlayers = 0, ntensors = 0;
  dd__h5_read_attr_i64(f, "nlayers", &nlayers);
  dd__h5_read_attr_i64(f, "ntensors", &ntensors);
  if (nlayers == m->nlayers)
    rc = check_ties(f, path, m);
  if (rc == DD_OK && (nlayers != m->nlayers || ntensors != m->ntensors))
    rc = dd_error(DD_ECKPT,
                  "checkpoint '%s' holds a model with %lld layers (%lld tensors), the config's model has %d (%d); use "
                  "the config the checkpoint was trained with",
                  path, (long long)nlayers, (long long)ntensors, m->nlayers, m->ntensors);
  for (int i = 0; i < m->ntensors && rc == DD_OK; i++) {
    const dd_tensor_ref *t = &m->tensors[i];
    rc = read_tensor(f, path, t->is_buffer ? "/buffers" : "/params", t, t->param->data, ver >= 2);
  }
  if (rc == DD_OK && o) {
    char oname[64] = "";
    dd__h5_read_attr_str(f, "optimizer", oname, sizeof oname);
    if (strcmp(oname, dd_optim_name(o->spec.kind)) != 0)
      rc = dd_error(
          DD_ECKPT,
          "checkpoint '%s' was written with optimizer '%s' but the config uses '%s'; resume with the same optim.name",
          path, oname, dd_optim_name(o->spec.kind));
    /* parameter groups; a file from before optim.decay decayed every parameter */
    char dname[32] = "all";
    if (rc == DD_OK && dd__h5_read_attr_str(f, "optimizer_decay", dname, sizeof dname) != 0)
      snprintf(dname, sizeof dname, "all");
    if (rc == DD_OK && strcmp(dname, dd_optim_decay_name(o->spec.decay)) != 0)
      rc = dd_error(DD_ECKPT,
                    "checkpoint '%s' was trained with optim.decay %s but the config says %s; resume with "
                    "optim.decay=%s (the run would change which parameters decay halfway)",
                    path, dname, dd_optim_decay_name(o->spec.decay), dname);
    for (int s = 0; s < o->nstate && rc == DD_OK; s++) {
      char group[128];
      snprintf(group, sizeof group, "/optim/%s", o->state_name[s]);
      for (int i = 0; i < m->ntensors && rc == DD_OK; i++) {
        const dd_tensor_ref *t = &m->tensors[i];
        if (!t->is_buffer)
          rc = read_tensor(f, path, group, t, o->state[s] + t->param->offset, ver >= 2);
      }
    }
    if (rc == DD_OK && dd__h5_read_attr_i64(f, "optimizer_steps", &o->t) != 0)
      rc = dd_error(DD_ECKPT, "checkpoint '%s' lacks the optimizer_steps attribute", path);
  }
  if (rc == DD_OK && o && o->t < 0)
    rc = dd_error(DD_ECKPT, "checkpoint '%s': optimizer_steps is negative; the file is damaged", path);
  if (rc == DD_OK && st)
    rc = read_state(f, path, ver, st);
  H5Fclose(f);
  return rc;
}

int dd_checkpoint_load(dd_comm *c, const char *path, dd_model *m, dd_optim *o, dd_train_state *st) {
  int rc = DD_OK;
  if (dd_comm_rank(c) == 0)
    rc = load_root(path, m, o, st);
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, m->params, m->nparams * 4, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, m->buffers, m->nbuffers * 4, 0);
  for (int s = 0; o && s < o->nstate && rc == DD_OK; s++)
    rc = dd_comm_bcast(c, o->state[s], o->n * 4, 0);
  if (rc == DD_OK && o)
    rc = dd_comm_bcast(c, &o->t, sizeof o->t, 0);
  if (rc == DD_OK && st)
    rc = dd_comm_bcast(c, st, sizeof *st, 0);
  return rc;
}

int dd_checkpoint_config(dd_comm *c, const char *path, char **text, dd_shape *input) {
  *text = NULL;
  dd_shape shape = {0};
  int rc = DD_OK;
  int64_t len = 0;
  char *buf = NULL;
  if (dd_comm_rank(c) == 0) {
    hid_t f;
    rc = open_ckpt(path, &f);
    if (rc == DD_OK) {
      hid_t a = H5Aexists(f, "config") > 0 ? H5Aopen(f, "config", H5P_DEFAULT) : -1;
      if (a < 0) {
        rc = dd_error(DD_ECKPT, "checkpoint '%s' has no config attribute", path);
      } else {
        hid_t t = H5Aget_type(a);
        len = (int64_t)H5Tget_size(t) + 1;
        H5Tclose(t);
        H5Aclose(a);
        if (len > ((int64_t)16 << 20))
          rc = dd_error(DD_ECKPT, "checkpoint '%s': the config attribute claims %lld bytes; the file is damaged", path,
                        (long long)len - 1);
        else if (!(buf = dd_alloc((size_t)len, 1)))
          rc = DD_ENOMEM;
        else if (dd__h5_read_attr_str(f, "config", buf, (size_t)len) != 0)
          rc = dd_error(DD_ECKPT, "checkpoint '%s': cannot read the config attribute", path);
        else if ((rc = read_shape(f, &shape)) != 0)
          rc = rc < 0 ? dd_error(DD_ECKPT, "checkpoint '%s' has no input_shape attribute", path)
                      : dd_error(DD_ECKPT,
                                 "checkpoint '%s': the input_shape attribute has more than %d dimensions; the file is "
                                 "damaged",
                                 path, DD_SHAPE_MAX);
        else
          rc = check_shape(path, shape);
      }
      H5Fclose(f);
    }
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, &len, sizeof len, 0);
  if (rc == DD_OK && !buf) {
    buf = dd_alloc((size_t)len, 1);
    rc = dd_comm_agree(c, buf ? DD_OK : DD_ENOMEM);
  } else if (rc == DD_OK) {
    rc = dd_comm_agree(c, DD_OK);
  }
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, buf, len, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, &shape, sizeof shape, 0);
  if (rc) {
    dd_free(buf);
    return rc;
  }
  *text = buf;
  if (input)
    *input = shape;
  return DD_OK;
}

int dd_checkpoint_vocab(dd_comm *c, const char *path, int32_t **vocab, int64_t *n) {
  *vocab = NULL;
  *n = 0;
  int32_t *v = NULL;
  int64_t len = 0;
  int rc = DD_OK;
  if (dd_comm_rank(c) == 0) {
    hid_t f;
    rc = open_ckpt(path, &f);
    if (rc == DD_OK) {
      rc = dd__h5_read_i32_vector(f, path, "/vocab", "vocabulary", &len, &v);
      if (rc == DD_ENOTFOUND)
        rc = DD_OK;
      H5Fclose(f);
    }
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, &len, sizeof len, 0);
  if (rc == DD_OK && len > 0 && !v) {
    v = dd_alloc((size_t)len, sizeof(int32_t));
    rc = dd_comm_agree(c, v ? DD_OK : DD_ENOMEM);
  } else if (rc == DD_OK) {
    rc = dd_comm_agree(c, DD_OK);
  }
  if (rc == DD_OK && len > 0)
    rc = dd_comm_bcast(c, v, len * 4, 0);
  if (rc) {
    dd_free(v);
    return rc;
  }
  *vocab = v;
  *n = len;
  return DD_OK;
}

typedef struct verify_ctx {
  const char *path;
  int64_t ver;
  int rc;
} verify_ctx;

static herr_t verify_one(hid_t obj, const char *name, const dd_h5o_info *info, void *data) {
  verify_ctx *v = data;
  if (info->type != H5O_TYPE_DATASET || strcmp(name, "vocab") == 0)
    return 0;
  hid_t ds = H5Dopen2(obj, name, H5P_DEFAULT);
  if (ds < 0) {
    v->rc = dd_error(DD_ECKPT, "checkpoint '%s': %s cannot be opened; the file is damaged", v->path, name);
    return 1;
  }
  hid_t sp = H5Dget_space(ds);
  const int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t dims[H5S_MAX_RANK];
  int64_t n = -1, bytes = 0;
  if (nd >= 0 && nd <= H5S_MAX_RANK && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0 &&
      dd__h5_size(v->path, name, "a tensor", nd, dims, sizeof(float), &n, &bytes) != DD_OK)
    n = -1;
  H5Sclose(sp);
  /* ddtrain writes tensors contiguous and whole: a size the file does not store is not allocated */
  dd_error_clear();
  const bool stored = n >= 0 && dd__h5_check_stored(ds, v->path, name, "a tensor", nd, dims, bytes) == DD_OK;
  dd_error_clear();
  float *buf = stored && n < ((int64_t)1 << 34) ? dd_alloc((size_t)(n > 0 ? n : 1), sizeof(float)) : NULL;
  v->rc = buf ? check_data(ds, v->path, name, buf, n, v->ver >= 2)
              : dd_error(DD_ECKPT, "checkpoint '%s': %s has an impossible size; the file is damaged", v->path, name);
  dd_free(buf);
  H5Dclose(ds);
  return v->rc ? 1 : 0;
}

/* Everything --resume auto relies on, without a model: format, training
 * state, and every tensor's checksum and values. */
static int verify_file(const char *path) {
  hid_t f;
  int rc = open_ckpt(path, &f);
  if (rc)
    return rc;
  verify_ctx v = {.path = path, .ver = 1, .rc = DD_OK};
  dd__h5_read_attr_i64(f, "format_version", &v.ver);
  dd_train_state st;
  memset(&st, 0, sizeof st);
  rc = read_state(f, path, v.ver, &st);
  if (rc == DD_OK && dd_h5o_visit(f, verify_one, &v, H5O_INFO_BASIC) < 0 && v.rc == DD_OK)
    rc = dd_error(DD_ECKPT, "checkpoint '%s' cannot be walked; the file is damaged", path);
  if (rc == DD_OK)
    rc = v.rc;
  H5Eclear2(H5E_DEFAULT);
  H5Fclose(f);
  return rc;
}

int dd_checkpoint_latest(dd_comm *c, const char *dir, char *path, size_t n) {
  char found[PATH_N + 300] = "";
  int rc = DD_OK;
  if (dd_comm_rank(c) == 0) {
    dd__h5_quiet();
    char **names;
    int count;
    rc = list_ckpts(dir, &names, &count);
    for (int i = 0; rc == DD_OK && i < count && !found[0]; i++) {
      char p[PATH_N + 300];
      snprintf(p, sizeof p, "%s/%s", dir, names[i]);
      if (verify_file(p) == DD_OK) {
        snprintf(found, sizeof found, "%s", p);
      } else {
        /* a damaged newest file: say so, fall back to the one before, and
         * move it out of the naming scheme (the caller holds the directory's
         * lock): left in place it would count for checkpoint.keep, newer than
         * every checkpoint this run writes, and they would be pruned */
        char aside[PATH_N + 320];
        snprintf(aside, sizeof aside, "%s.skipped", p);
        bool moved = rename(p, aside) == 0;
        fprintf(stderr, "ddtrain: warning: skipping checkpoint %s: %s%s%s%s\n", names[i], dd_error_message(),
                moved ? "; renamed to " : "", moved ? names[i] : "", moved ? ".skipped" : "");
        dd_error_clear();
      }
    }
    if (rc == DD_OK)
      free_list(names, count);
    if (rc == DD_OK && !found[0])
      rc = DD_ENOTFOUND;
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc == DD_OK)
    rc = dd_comm_bcast(c, found, sizeof found, 0);
  if (rc == DD_OK)
    snprintf(path, n, "%s", found);
  return rc;
}

/* ---- one run per directory ---- */

int dd_checkpoint_lock(dd_comm *c, const char *dir, int *fd_out) {
  *fd_out = -1;
  int rc = DD_OK, fd = -1;
  if (dd_comm_rank(c) == 0) {
    rc = dd_mkdirs(dir, "checkpoint.dir");
    char p[PATH_N + 32];
    snprintf(p, sizeof p, "%s/.ddtrain.lock", dir);
    if (rc == DD_OK && (fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
      rc = dd_error(DD_EIO, "cannot create the lock file '%s': %s; check that checkpoint.dir is writable", p,
                    strerror(errno));
    int lk = rc == DD_OK ? flock(fd, LOCK_EX | LOCK_NB) : 0, lk_errno = errno;
    if (lk != 0 && lk_errno != EWOULDBLOCK) {
      /* a file system without flock (some NFS and Lustre mounts): run unlocked, and say so */
      fprintf(stderr,
              "ddtrain: warning: cannot lock checkpoint.dir '%s' (%s): a second run on this directory would not be "
              "refused; make sure only one run uses it\n",
              dir, strerror(lk_errno));
      close(fd);
      fd = -1;
    } else if (lk != 0) {
      /* held: by whom (the holder wrote it after taking the lock) */
      char who[512] = "";
      ssize_t n = pread(fd, who, sizeof who - 1, 0);
      who[n > 0 ? n : 0] = '\0';
      char *nl = strchr(who, '\n');
      if (nl)
        *nl = '\0';
      rc = dd_error(DD_ECONFIG,
                    "checkpoint.dir '%s' is in use by another run (%s); two runs on one directory would delete "
                    "each other's checkpoints: wait for it to end, stop it, or pick another checkpoint.dir",
                    dir, who[0] ? who : "holder unknown");
      close(fd);
      fd = -1;
    } else if (rc == DD_OK) {
      char host[256] = "?", stamp[64];
      gethostname(host, sizeof host - 1);
      time_t now = time(NULL);
      strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
      const char *job = getenv("SLURM_JOB_ID");
      char who[600];
      int len = snprintf(who, sizeof who, "host %s, pid %d%s%s, since %s\n", host, (int)getpid(), job ? ", job " : "",
                         job ? job : "", stamp);
      if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)len, 0) != len)
        rc = dd_error(DD_EIO, "cannot write the lock file of checkpoint.dir '%s': %s", dir, strerror(errno));
      else /* this run is the directory's only writer: a temporary file here is a dead writer's */
        remove_stale_temps(dir);
    }
  }
  rc = dd_comm_bcast_status(c, rc, 0);
  if (rc && fd >= 0) {
    close(fd);
    fd = -1;
  }
  *fd_out = fd;
  return rc;
}

void dd_checkpoint_unlock(int fd) {
  if (fd >= 0)
    close(fd); /* releases the flock */
}

int64_t dd_checkpoint_step_of(const char *path) {
  const char *base = strrchr(path, '/');
  return ckpt_step(base ? base + 1 : path);
}
