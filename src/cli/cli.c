/* The ddtrain commands: parse arguments, run them on the ranks, print, decide exit codes. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddtrain/cli.h"
#include "ddtrain/comm.h"
#include "ddtrain/config.h"
#include "ddtrain/core.h"
#include "ddtrain/data.h"
#include "ddtrain/tensor.h"
#include "ddtrain/train.h"

enum { EXIT_USAGE = 2 };

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  g_stop = sig;
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction(sigs[i], &sa, NULL);
}

static const char *const usage_train =
    "usage: ddtrain train CONFIG [section.key=value ...] [--resume auto|PATH] [--quiet]\n"
    "                     [--trace-steps FIRST:END]\n"
    "\n"
    "Train the model described by the YAML file CONFIG. Any key can be overridden on\n"
    "the command line, e.g. optim.lr=0.05 train.epochs=3 model.layers.0.units=256.\n"
    "\n"
    "  --resume auto   continue from the newest checkpoint in checkpoint.dir (start\n"
    "                  fresh if there is none): resubmitting a job continues it\n"
    "  --resume PATH   continue from that checkpoint file\n"
    "  --quiet         print only errors\n"
    "  --trace-steps FIRST:END\n"
    "                  a Chrome trace of those steps (train.trace_steps)\n"
    "\n"
    "SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 stop training at the next step with a\n"
    "checkpoint (exit code 128 + signal number); --resume auto continues from it.\n"
    "\n"
    "config keys (default, meaning):\n";

static const char *const usage_eval =
    "usage: ddtrain eval CHECKPOINT DATA [--x NAME] [--y NAME]\n"
    "\n"
    "Print the loss (and accuracy for classifiers) of the model in CHECKPOINT on the\n"
    "HDF5 dataset DATA. --x/--y name the datasets (default: the training config's).\n";

static const char *const usage_predict =
    "usage: ddtrain predict CHECKPOINT DATA --out FILE.h5 [--x NAME]\n"
    "\n"
    "Run the model in CHECKPOINT on the features of DATA and write FILE.h5 with\n"
    "/output (raw outputs), and for classifiers /probs (softmax) and /pred (class ids).\n";

static const char *const usage_generate =
    "usage: ddtrain generate CHECKPOINT --prompt TEXT [--length N] [--temperature T] [--seed S]\n"
    "\n"
    "Sample text from a character-level model (trained on a 'ddtrain data text' file,\n"
    "whose vocabulary the checkpoint stores). Prints the prompt and N more characters\n"
    "(default 200), each drawn from softmax(logits / T) given the last characters up to\n"
    "the model's sequence length; --temperature 0 takes the most likely one (default 1).\n"
    "--seed (default 1) picks the random stream: the same seed gives the same text.\n";

static const char *const usage_data =
    "usage: ddtrain data synth --out FILE.h5 [--samples N] [--features D] [--classes K]\n"
    "                          [--regression] [--outputs K] [--noise S] [--seed S] [--image CxHxW [--uint8]]\n"
    "       ddtrain data synth --out FILE.h5 --seq-len T [--vocab V] [--min-len L] [--per-step]\n"
    "                          [--classes K] [--samples N] [--seed S]\n"
    "       ddtrain data text FILE.txt --out FILE.h5 --seq-len T [--stride S] [--vocab F.h5]\n"
    "       ddtrain data import csv FILE.csv --out FILE.h5 [--label COLUMN] [--regression]\n"
    "       ddtrain data import idx IMAGES LABELS --out FILE.h5\n"
    "       ddtrain data inspect FILE.h5\n"
    "\n"
    "synth: a learnable dataset: classification by default (N=60000, D=784, K=10,\n"
    "       noise 0.5), or --regression with K outputs. --image CxHxW draws translated\n"
    "       stroke images instead, stored as N x C x H x W.\n"
    "       --seq-len T: token sequences x N x T (vocab V=100, lengths L..T, default\n"
    "       L=T/4, padded with id 0, /lengths), labelled by which of K (default 2) classes'\n"
    "       words dominate, a word after the 'not' token (id 1) counting against its\n"
    "       class (sentiment-style); --per-step labels every step with the leader so far.\n"
    "text: UTF-8 text -> x, y N x T (y = x shifted by one character), windows every\n"
    "       S characters (default T); the vocabulary (code points) is stored as /vocab.\n"
    "       --vocab F.h5 reuses F's vocabulary (for a validation text: the same ids).\n"
    "import csv: one sample per row; the label column (name or 0-based index, default\n"
    "       last) holds class ids or class names; a header row is detected.\n"
    "import idx: MNIST-style idx3-ubyte images and idx1-ubyte labels (.gz accepted);\n"
    "       pixels stored as uint8 N x 1 x H x W with scale 1/255 (read as [0, 1]).\n"
    "inspect: shapes, types, value ranges and label counts of every dataset.\n";

typedef struct cli {
  dd_comm *c;
  int rank;
} cli;

__attribute__((format(printf, 2, 3))) static int usage_error(cli *x, const char *fmt, ...) {
  if (x->rank == 0) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ddtrain: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; see 'ddtrain --help'\n");
    va_end(ap);
  }
  return DD_EUSAGE;
}

/* In-epoch progress only when a person is watching. Open MPI gives every
 * rank a pseudo-terminal even when mpirun writes to a file (a Slurm log),
 * so under mpirun ask whether the launcher's stdout is a terminal. */
/* The parent of pid from /proc/pid/stat (0 if unknown); its command name in comm. */
static int parent_of(int pid, char *comm, size_t n) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t got = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[got] = '\0';
  char *open = strchr(buf, '('), *close = strrchr(buf, ')');
  int ppid = 0;
  if (!open || !close || close < open || sscanf(close + 1, " %*c %d", &ppid) != 1)
    return 0;
  size_t len = (size_t)(close - open - 1);
  snprintf(comm, n, "%.*s", (int)(len < n ? len : n - 1), open + 1);
  return ppid;
}

static bool fd1_is_terminal(int pid) {
  char link[64], target[256];
  snprintf(link, sizeof link, "/proc/%d/fd/1", pid);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0)
    return false;
  target[n] = '\0';
  return strncmp(target, "/dev/pts/", 9) == 0 || strncmp(target, "/dev/tty", 8) == 0;
}

/* A rank's stdout is a pseudo-terminal of the launcher's whether or not the
 * user sees a terminal: what counts is the launcher's own stdout. Walk up
 * past wrappers (DD_EXEC: apptainer, env, a shell) to mpirun or its daemon. */
static bool stdout_is_terminal(void) {
  if (!isatty(STDOUT_FILENO))
    return false;
  if (!getenv("OMPI_COMM_WORLD_SIZE"))
    return true;
  static const char *launchers[] = {"mpirun", "mpiexec", "orterun", "prterun", "orted", "prted", "srun", "slurmstepd"};
  int pid = (int)getpid();
  for (int depth = 0; depth < 8; depth++) {
    char comm[64] = "";
    int ppid = parent_of(pid, comm, sizeof comm);
    if (ppid <= 1)
      break;
    char pcomm[64] = "";
    parent_of(ppid, pcomm, sizeof pcomm);
    for (size_t i = 0; i < sizeof launchers / sizeof *launchers; i++)
      if (strcmp(pcomm, launchers[i]) == 0)
        return fd1_is_terminal(ppid);
    pid = ppid;
  }
  return fd1_is_terminal((int)getppid()); /* no launcher found: as its parent sees it */
}

static bool is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* "--name value" or "--name=value"; advances *i. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) == 0 && argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (strcmp(argv[*i], name) == 0 && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

static bool opt_is(const char *a, const char *name) {
  size_t n = strlen(name);
  return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

static int parse_int(cli *x, const char *opt, const char *v, int64_t *out) {
  char *end;
  long long r = v ? strtoll(v, &end, 10) : 0;
  if (!v || *end || end == v)
    return usage_error(x, "option %s needs an integer value", opt);
  *out = r;
  return DD_OK;
}

static int cmd_train(cli *x, int argc, char **argv) {
  const char *config = NULL, *resume = NULL;
  bool quiet = false;
  char **ov = dd_alloc((size_t)argc + 1, sizeof *ov);
  int nov = 0;
  if (!ov)
    return DD_ENOMEM;
  int rc = DD_OK;
  char trace_ov[96];
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    const char *a = argv[i];
    if (is_help(a)) {
      if (x->rank == 0)
        printf("%s%s", usage_train, dd_config_reference());
      dd_free(ov);
      return 1; /* handled */
    } else if (opt_is(a, "--resume")) {
      resume = opt_value(argc, argv, &i, "--resume");
      if (!resume)
        rc = usage_error(x, "%s needs 'auto' or a checkpoint path", a);
    } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
      quiet = true;
    } else if (opt_is(a, "--trace-steps")) {
      const char *v = opt_value(argc, argv, &i, "--trace-steps");
      if (!v)
        rc = usage_error(x, "%s needs FIRST:END steps, e.g. --trace-steps 100:110", a);
      else if (snprintf(trace_ov, sizeof trace_ov, "train.trace_steps=%s", v) >= (int)sizeof trace_ov)
        rc = usage_error(x, "%s %s: too long", a, v);
      else
        ov[nov++] = trace_ov;
    } else if (a[0] == '-' && a[1] == '-') {
      rc = usage_error(x, "unknown option '%s' for train", a);
    } else if (strchr(a, '=')) {
      ov[nov++] = argv[i];
    } else if (!config) {
      config = a;
    } else {
      rc = usage_error(x, "unexpected argument '%s' (overrides look like key=value)", a);
    }
  }
  if (rc == DD_OK && !config)
    rc = usage_error(x, "%s", "train needs a CONFIG file, e.g. ddtrain train jobs/configs/quickstart.yaml");
  dd_config *cfg = NULL;
  if (rc == DD_OK)
    rc = dd_comm_agree(x->c, dd_config_load(config, nov, ov, &cfg));
  dd_free(ov);
  if (rc)
    return rc;
  install_signals();
  dd_train_opts o = {
      .resume = resume,
      .out = quiet ? NULL : stdout,
      .progress = !quiet && stdout_is_terminal(),
      .stop = &g_stop,
      .config_path = config,
  };
  dd_train_result res;
  rc = dd_train_run(x->c, cfg, &o, &res);
  if (rc == DD_EINTERRUPTED && res.stop_signal > 0)
    g_stop = res.stop_signal; /* the same exit code on every rank */
  if (rc == DD_OK && x->rank == 0 && !quiet) {
    if (res.classification && res.val_accuracy == res.val_accuracy)
      printf("final validation accuracy: %.2f%% (loss %.4f)\n", 100.0 * res.val_accuracy, res.val_loss);
    else if (res.val_loss == res.val_loss)
      printf("final validation loss: %.6g\n", res.val_loss);
  }
  dd_config_free(cfg);
  return rc;
}

/* OpenBLAS spins forever when it cannot map its work buffers (an address
 * space limit): find out before the first BLAS call, on every rank. */
static int blas_ready(cli *x) {
  char why[400];
  int rc = DD_OK;
  if (dd_tensor_blas_memory_check(0, why, sizeof why) != 0)
    rc = dd_error(DD_ENOMEM, "%s", why);
  return dd_comm_agree(x->c, rc);
}

static int cmd_eval(cli *x, int argc, char **argv) {
  const char *pos[2] = {NULL, NULL}, *xn = NULL, *yn = NULL;
  int np = 0, rc = DD_OK;
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    if (is_help(argv[i])) {
      if (x->rank == 0)
        fputs(usage_eval, stdout);
      return 1;
    } else if (opt_is(argv[i], "--x")) {
      if (!(xn = opt_value(argc, argv, &i, "--x")))
        rc = usage_error(x, "%s needs a dataset name", "--x");
    } else if (opt_is(argv[i], "--y")) {
      if (!(yn = opt_value(argc, argv, &i, "--y")))
        rc = usage_error(x, "%s needs a dataset name", "--y");
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      rc = usage_error(x, "unknown option '%s' for eval", argv[i]);
    } else if (np < 2) {
      pos[np++] = argv[i];
    } else {
      rc = usage_error(x, "unexpected argument '%s'", argv[i]);
    }
  }
  if (rc == DD_OK && np < 2)
    rc = usage_error(x, "%s", "eval needs CHECKPOINT and DATA");
  if (rc)
    return rc;
  dd_eval_result r = {0};
  rc = blas_ready(x);
  if (rc == DD_OK)
    rc = dd_eval_run(x->c, pos[0], pos[1], xn, yn, &r);
  if (rc == DD_OK && x->rank == 0) {
    printf("samples %lld  loss %.6f", (long long)r.n, r.loss);
    if (r.classification)
      printf("  accuracy %.2f%%", 100.0 * r.accuracy);
    printf("\n");
  }
  return rc;
}

static int cmd_predict(cli *x, int argc, char **argv) {
  const char *pos[2] = {NULL, NULL}, *xn = NULL, *out = NULL;
  int np = 0, rc = DD_OK;
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    if (is_help(argv[i])) {
      if (x->rank == 0)
        fputs(usage_predict, stdout);
      return 1;
    } else if (opt_is(argv[i], "--out")) {
      if (!(out = opt_value(argc, argv, &i, "--out")))
        rc = usage_error(x, "%s needs a file name", "--out");
    } else if (opt_is(argv[i], "--x")) {
      if (!(xn = opt_value(argc, argv, &i, "--x")))
        rc = usage_error(x, "%s needs a dataset name", "--x");
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      rc = usage_error(x, "unknown option '%s' for predict", argv[i]);
    } else if (np < 2) {
      pos[np++] = argv[i];
    } else {
      rc = usage_error(x, "unexpected argument '%s'", argv[i]);
    }
  }
  if (rc == DD_OK && (np < 2 || !out))
    rc = usage_error(x, "%s", "predict needs CHECKPOINT, DATA and --out FILE.h5");
  if (rc)
    return rc;
  rc = blas_ready(x);
  if (rc == DD_OK)
    rc = dd_predict_run(x->c, pos[0], pos[1], xn, out);
  if (rc == DD_OK && x->rank == 0)
    printf("wrote %s\n", out);
  return rc;
}

/* data subcommands run on rank 0; the others wait for its status */
static int data_synth(cli *x, int argc, char **argv) {
  dd_synth_spec s = {.samples = 60000, .features = 784, .classes = 10, .noise = 0.5, .seed = 1, .vocab = 100};
  const char *out = NULL;
  int64_t v = 0;
  int rc = DD_OK;
  bool outputs_set = false, classes_set = false, seq_opts = false;
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    const char *a = argv[i], *val;
    if (opt_is(a, "--out")) {
      if (!(out = opt_value(argc, argv, &i, "--out")))
        rc = usage_error(x, "%s needs a file name", a);
    } else if (opt_is(a, "--samples")) {
      val = opt_value(argc, argv, &i, "--samples");
      rc = parse_int(x, "--samples", val, &s.samples);
    } else if (opt_is(a, "--features")) {
      val = opt_value(argc, argv, &i, "--features");
      rc = parse_int(x, "--features", val, &s.features);
    } else if (opt_is(a, "--classes")) {
      val = opt_value(argc, argv, &i, "--classes");
      rc = parse_int(x, "--classes", val, &s.classes);
      classes_set = true;
    } else if (opt_is(a, "--seq-len")) {
      val = opt_value(argc, argv, &i, "--seq-len");
      rc = parse_int(x, "--seq-len", val, &s.seq_len);
      if (rc == DD_OK && s.seq_len < 1)
        rc = usage_error(x, "%s must be at least 1", "--seq-len");
    } else if (opt_is(a, "--vocab")) {
      val = opt_value(argc, argv, &i, "--vocab");
      rc = parse_int(x, "--vocab", val, &s.vocab);
      seq_opts = true;
    } else if (opt_is(a, "--min-len")) {
      val = opt_value(argc, argv, &i, "--min-len");
      rc = parse_int(x, "--min-len", val, &s.min_len);
      seq_opts = true;
      if (rc == DD_OK && s.min_len < 1)
        rc = usage_error(x, "%s must be at least 1", "--min-len");
    } else if (strcmp(a, "--per-step") == 0) {
      s.per_step = true;
      seq_opts = true;
    } else if (opt_is(a, "--outputs")) {
      val = opt_value(argc, argv, &i, "--outputs");
      rc = parse_int(x, "--outputs", val, &s.classes);
      outputs_set = true;
    } else if (opt_is(a, "--seed")) {
      val = opt_value(argc, argv, &i, "--seed");
      rc = parse_int(x, "--seed", val, &v);
      s.seed = (uint64_t)v;
    } else if (opt_is(a, "--noise")) {
      val = opt_value(argc, argv, &i, "--noise");
      char *end;
      s.noise = val ? strtod(val, &end) : -1;
      if (!val || *end)
        rc = usage_error(x, "%s needs a number", "--noise");
    } else if (opt_is(a, "--image")) {
      val = opt_value(argc, argv, &i, "--image");
      long long c_ = 0, h_ = 0, w_ = 0;
      if (!val || sscanf(val, "%lldx%lldx%lld", &c_, &h_, &w_) != 3 || c_ < 1 || h_ < 1 || w_ < 1)
        rc = usage_error(x, "%s needs CxHxW, e.g. 1x28x28", "--image");
      s.image = (dd_shape){3, {c_, h_, w_, 0}};
    } else if (strcmp(a, "--regression") == 0) {
      s.regression = true;
    } else if (strcmp(a, "--uint8") == 0) {
      s.uint8 = true;
    } else {
      rc = usage_error(x, "unknown argument '%s' for data synth", a);
    }
  }
  if (rc == DD_OK && !out)
    rc = usage_error(x, "%s", "data synth needs --out FILE.h5");
  if (rc == DD_OK && seq_opts && s.seq_len == 0)
    rc = usage_error(x, "%s", "--vocab, --min-len and --per-step need --seq-len T (token sequences)");
  if (rc)
    return rc;
  if (s.regression && !outputs_set)
    s.classes = 1;
  if (s.seq_len > 0 && !classes_set)
    s.classes = 2;
  if (x->rank == 0) {
    dd_dataset *ds = NULL;
    rc = dd_data_synth(&s, &ds);
    if (rc == DD_OK)
      rc = dd_data_save(ds, out, s.regression ? "ddtrain data synth --regression" : "ddtrain data synth");
    if (rc == DD_OK && s.seq_len > 0) {
      printf("wrote %s: %lld sequences, x %lld steps of int32 token ids in [0, %lld) padded with 0, /lengths, y %s "
             "int32 class ids (%lld classes)\n",
             out, (long long)ds->n, (long long)s.seq_len, (long long)s.vocab, s.per_step ? "per step" : "per sequence",
             (long long)s.classes);
    } else if (rc == DD_OK) {
      char sh[64];
      printf("wrote %s: %lld samples, x %s %s, y %s\n", out, (long long)ds->n, dd_shape_str(ds->xshape, sh, sizeof sh),
             ds->xu8 ? "uint8 (scale 1/255)" : "float32", s.regression ? "float32 targets" : "int32 class ids");
    }
    dd_data_free(ds);
  }
  return dd_comm_bcast_status(x->c, rc, 0);
}

static int data_import(cli *x, int argc, char **argv) {
  if (argc < 1)
    return usage_error(x, "%s", "data import needs a format: csv or idx");
  const char *fmt = argv[0], *out = NULL, *label = NULL, *pos[2] = {NULL, NULL};
  bool regression = false;
  int np = 0, rc = DD_OK;
  for (int i = 1; i < argc && rc == DD_OK; i++) {
    if (opt_is(argv[i], "--out")) {
      if (!(out = opt_value(argc, argv, &i, "--out")))
        rc = usage_error(x, "%s needs a file name", "--out");
    } else if (opt_is(argv[i], "--label")) {
      if (!(label = opt_value(argc, argv, &i, "--label")))
        rc = usage_error(x, "%s needs a column name or index", "--label");
    } else if (strcmp(argv[i], "--regression") == 0) {
      regression = true;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      rc = usage_error(x, "unknown option '%s' for data import", argv[i]);
    } else if (np < 2) {
      pos[np++] = argv[i];
    } else {
      rc = usage_error(x, "unexpected argument '%s'", argv[i]);
    }
  }
  bool csv = strcmp(fmt, "csv") == 0, idx = strcmp(fmt, "idx") == 0;
  if (rc == DD_OK && !csv && !idx)
    rc = usage_error(x, "unknown import format '%s' (csv or idx)", fmt);
  if (rc == DD_OK && csv && np != 1)
    rc = usage_error(x, "%s", "data import csv needs one FILE.csv");
  if (rc == DD_OK && idx && np != 2)
    rc = usage_error(x, "%s", "data import idx needs IMAGES and LABELS files");
  if (rc == DD_OK && !out)
    rc = usage_error(x, "%s", "data import needs --out FILE.h5");
  if (rc)
    return rc;
  if (x->rank == 0) {
    dd_dataset *ds = NULL;
    rc = csv ? dd_data_import_csv(pos[0], label, regression, &ds) : dd_data_import_idx(pos[0], pos[1], &ds);
    if (rc == DD_OK)
      rc = dd_data_save(ds, out, csv ? "ddtrain data import csv" : "ddtrain data import idx");
    if (rc == DD_OK) {
      char sh[64];
      printf("wrote %s: %lld samples, x %s %s", out, (long long)ds->n, dd_shape_str(ds->xshape, sh, sizeof sh),
             ds->xu8 ? "uint8 (scale 1/255)" : "float32");
      if (ds->ykind == DD_LABELS_CLASS)
        printf(", %lld classes\n", (long long)ds->nclasses);
      else
        printf(", float targets\n");
    }
    dd_data_free(ds);
  }
  return dd_comm_bcast_status(x->c, rc, 0);
}

static int data_text(cli *x, int argc, char **argv) {
  const char *txt = NULL, *out = NULL, *vfile = NULL;
  int64_t T = 0, stride = 0;
  int rc = DD_OK;
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    const char *a = argv[i];
    if (opt_is(a, "--out")) {
      if (!(out = opt_value(argc, argv, &i, "--out")))
        rc = usage_error(x, "%s needs a file name", a);
    } else if (opt_is(a, "--seq-len")) {
      rc = parse_int(x, "--seq-len", opt_value(argc, argv, &i, "--seq-len"), &T);
    } else if (opt_is(a, "--stride")) {
      rc = parse_int(x, "--stride", opt_value(argc, argv, &i, "--stride"), &stride);
    } else if (opt_is(a, "--vocab")) {
      if (!(vfile = opt_value(argc, argv, &i, "--vocab")))
        rc = usage_error(x, "%s needs a file written by 'ddtrain data text'", a);
    } else if (a[0] == '-' && a[1] == '-') {
      rc = usage_error(x, "unknown option '%s' for data text", a);
    } else if (!txt) {
      txt = a;
    } else {
      rc = usage_error(x, "unexpected argument '%s'", a);
    }
  }
  if (rc == DD_OK && (!txt || !out || T == 0))
    rc = usage_error(x, "%s", "data text needs FILE.txt, --out FILE.h5 and --seq-len T");
  if (rc)
    return rc;
  if (x->rank == 0) {
    dd_dataset *ds = NULL;
    int32_t *vocab = NULL;
    int64_t nvocab = 0;
    if (vfile)
      rc = dd_data_read_vocab(vfile, &vocab, &nvocab);
    if (rc == DD_OK)
      rc = dd_data_text(txt, T, stride ? stride : T, vocab, nvocab, &ds);
    dd_free(vocab);
    if (rc == DD_OK) {
      char origin[1200];
      snprintf(origin, sizeof origin, "ddtrain data text %s --seq-len %lld --stride %lld", txt, (long long)T,
               (long long)(stride ? stride : T));
      rc = dd_data_save(ds, out, origin);
    }
    if (rc == DD_OK)
      printf("wrote %s: %lld sequences of %lld characters (x, y = x shifted by one), vocabulary of %lld characters "
             "(/vocab)\n",
             out, (long long)ds->n, (long long)T, (long long)ds->nvocab);
    dd_data_free(ds);
  }
  return dd_comm_bcast_status(x->c, rc, 0);
}

static int cmd_generate(cli *x, int argc, char **argv) {
  const char *ckpt = NULL, *val;
  dd_generate_opts o = {.length = 200, .temperature = 1.0, .seed = 1};
  int64_t v = 0;
  int rc = DD_OK;
  for (int i = 0; i < argc && rc == DD_OK; i++) {
    const char *a = argv[i];
    if (is_help(a)) {
      if (x->rank == 0)
        fputs(usage_generate, stdout);
      return 1;
    } else if (opt_is(a, "--prompt")) {
      if (!(o.prompt = opt_value(argc, argv, &i, "--prompt")))
        rc = usage_error(x, "%s needs the text to start from", a);
    } else if (opt_is(a, "--length")) {
      rc = parse_int(x, "--length", opt_value(argc, argv, &i, "--length"), &o.length);
      if (rc == DD_OK && o.length < 0)
        rc = usage_error(x, "%s must be >= 0", "--length");
    } else if (opt_is(a, "--seed")) {
      rc = parse_int(x, "--seed", opt_value(argc, argv, &i, "--seed"), &v);
      o.seed = (uint64_t)v;
    } else if (opt_is(a, "--temperature")) {
      val = opt_value(argc, argv, &i, "--temperature");
      char *end;
      o.temperature = val ? strtod(val, &end) : -1;
      if (!val || *end || !(o.temperature >= 0.0) || o.temperature > 1e6)
        rc = usage_error(x, "%s needs a number >= 0 (0 = always the most likely character)", "--temperature");
    } else if (a[0] == '-' && a[1] == '-') {
      rc = usage_error(x, "unknown option '%s' for generate", a);
    } else if (!ckpt) {
      ckpt = a;
    } else {
      rc = usage_error(x, "unexpected argument '%s'", a);
    }
  }
  if (rc == DD_OK && (!ckpt || !o.prompt))
    rc = usage_error(x, "%s", "generate needs CHECKPOINT and --prompt TEXT");
  if (rc)
    return rc;
  rc = blas_ready(x);
  return rc ? rc : dd_generate_run(x->c, ckpt, &o, stdout);
}

static int cmd_data(cli *x, int argc, char **argv) {
  if (argc < 1 || is_help(argv[0])) {
    if (x->rank == 0)
      fputs(usage_data, argc < 1 ? stderr : stdout);
    return argc < 1 ? DD_EUSAGE : 1;
  }
  for (int i = 1; i < argc; i++)
    if (is_help(argv[i])) {
      if (x->rank == 0)
        fputs(usage_data, stdout);
      return 1;
    }
  if (strcmp(argv[0], "synth") == 0)
    return data_synth(x, argc - 1, argv + 1);
  if (strcmp(argv[0], "import") == 0)
    return data_import(x, argc - 1, argv + 1);
  if (strcmp(argv[0], "text") == 0)
    return data_text(x, argc - 1, argv + 1);
  if (strcmp(argv[0], "inspect") == 0) {
    if (argc != 2)
      return usage_error(x, "%s", "data inspect needs one FILE");
    int rc = x->rank == 0 ? dd_data_inspect(argv[1], stdout) : DD_OK;
    return dd_comm_bcast_status(x->c, rc, 0);
  }
  return usage_error(x, "unknown data command '%s' (synth, import, text, inspect)", argv[0]);
}

static const char *const usage_trace = "usage: ddtrain trace merge DIR [--out FILE]\n"
                                       "\n"
                                       "Merge the per-rank trace files DIR/trace-rankNNNNN.jsonl (written with\n"
                                       "train.trace_steps / --trace-steps) into one Chrome trace, FILE or\n"
                                       "DIR/trace.json: what training does itself at the end of the window, for a\n"
                                       "run that crashed inside it. Open it in chrome://tracing or ui.perfetto.dev.\n";

static int cmd_trace(cli *x, int argc, char **argv) {
  const char *dir = NULL, *out = NULL;
  if (argc >= 1 && is_help(argv[0])) {
    if (x->rank == 0)
      fputs(usage_trace, stdout);
    return 1;
  }
  if (argc < 1 || strcmp(argv[0], "merge") != 0)
    return usage_error(x, "%s", "trace needs a subcommand: ddtrain trace merge DIR [--out FILE]");
  for (int i = 1; i < argc; i++) {
    if (opt_is(argv[i], "--out")) {
      if (!(out = opt_value(argc, argv, &i, "--out")))
        return usage_error(x, "%s", "--out needs a file name");
    } else if (!dir && argv[i][0] != '-') {
      dir = argv[i];
    } else {
      return usage_error(x, "unexpected argument '%s' for trace merge", argv[i]);
    }
  }
  if (!dir)
    return usage_error(x, "%s", "trace merge needs the run's trace directory, e.g. runs/NAME/trace");
  char dflt[DD_PATH_MAX + 32];
  if (!out) {
    snprintf(dflt, sizeof dflt, "%s/trace.json", dir);
    out = dflt;
  }
  int rc = DD_OK;
  if (x->rank == 0) {
    int ranks = 0;
    int64_t events = 0;
    rc = dd_trace_merge(dir, out, &ranks, &events);
    if (rc == DD_OK)
      printf("%s: %lld events of %d rank(s)\n", out, (long long)events, ranks);
  }
  return dd_comm_bcast_status(x->c, rc, 0);
}

int dd_cli_run(dd_comm *c, int argc, char **argv) {
  /* a fresh start for every call: the first error message since the last
   * clear wins, and a stop requested during an earlier run is done with */
  dd_error_clear();
  g_stop = 0;
  cli x = {.c = c, .rank = dd_comm_rank(c)};
  const char *cmd = argc >= 2 ? argv[1] : "";
  int sub_argc = argc >= 2 ? argc - 2 : 0;
  char **sub_argv = argv + (argc >= 2 ? 2 : argc);
  int rc;
  if (strcmp(cmd, "train") == 0)
    rc = cmd_train(&x, sub_argc, sub_argv);
  else if (strcmp(cmd, "eval") == 0)
    rc = cmd_eval(&x, sub_argc, sub_argv);
  else if (strcmp(cmd, "predict") == 0)
    rc = cmd_predict(&x, sub_argc, sub_argv);
  else if (strcmp(cmd, "data") == 0)
    rc = cmd_data(&x, sub_argc, sub_argv);
  else if (strcmp(cmd, "generate") == 0)
    rc = cmd_generate(&x, sub_argc, sub_argv);
  else if (strcmp(cmd, "trace") == 0)
    rc = cmd_trace(&x, sub_argc, sub_argv);
  else
    rc = usage_error(&x, "unknown command '%s'", cmd);

  int code = 0;
  if (rc == 1) { /* help printed */
    code = 0;
  } else if (rc == DD_EUSAGE) {
    if (x.rank == 0 && dd_error_message()[0])
      fprintf(stderr, "ddtrain: error: %s\n", dd_error_message());
    code = EXIT_USAGE;
  } else if (rc == DD_EINTERRUPTED) {
    code = 128 + (g_stop > 0 ? (int)g_stop : SIGTERM);
  } else if (rc) {
    if (x.rank == 0) {
      const char *msg = dd_error_message();
      fprintf(stderr, "ddtrain: error: %s\n", msg[0] ? msg : dd_strerror(rc));
    }
    code = 1;
  }
  fflush(stdout);
  fflush(stderr);
  return code;
}

/* OpenBLAS picks its kernel set once, when the library loads, so a better
 * set than its own choice needs a fresh start of the program with
 * OPENBLAS_CORETYPE set: exec of the same binary (the same pid, so mpirun,
 * srun and PMIx see the same process) before MPI or anything else starts. */
void dd_cli_select_blas_kernels(char **argv) {
  if (dd_tensor_kernel_select() != 1)
    return;
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    fflush(NULL);
    execv(self, argv);
  }
  dd_tensor_kernel_exec_failed(n > 0 ? strerror(errno) : "/proc/self/exe is not readable");
}
