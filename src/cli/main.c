/* The ddtrain program: BLAS kernels, --version and --help without MPI, then one command on the ranks (cli.c). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ddtrain/cli.h"
#include "ddtrain/comm.h"
#include "ddtrain/core.h"
#include "ddtrain/tensor.h"

enum { EXIT_USAGE = 2 };

static const char *const usage_main =
    "usage: ddtrain <command> [options]\n"
    "\n"
    "Data-parallel neural-network training over MPI, with HDF5 data and checkpoints.\n"
    "Run it under mpirun/srun for several ranks, or directly for one.\n"
    "\n"
    "commands:\n"
    "  train CONFIG [key=value ...]      train the model a YAML config describes\n"
    "  eval CHECKPOINT DATA              loss and accuracy of a checkpoint on a dataset\n"
    "  predict CHECKPOINT DATA --out F   write a checkpoint's predictions to an HDF5 file\n"
    "  generate CHECKPOINT --prompt S    sample text from a character-level model\n"
    "  data synth --out F                write a learnable synthetic dataset\n"
    "  data import csv|idx ...           convert CSV or MNIST IDX files to a dataset\n"
    "  data text FILE.txt --out F        a character-level next-character dataset from a text\n"
    "  data inspect FILE                 print the shapes, types and label counts of a file\n"
    "  trace merge DIR [--out F]         merge the per-rank trace files of a run (after a crash)\n"
    "\n"
    "options: --help (also after a command), --version, --blas-check (verify the BLAS kernels)\n";

static bool is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int blas_check(void) {
  char why[400], sum[800];
  int rc = dd_tensor_kernel_selfcheck(why, sizeof why);
  if (rc) {
    fprintf(stderr,
            "ddtrain: error: BLAS self-check failed with the %s kernels: %s; run with OPENBLAS_CORETYPE set to "
            "another kernel set (e.g. Haswell)\n",
            dd_tensor_kernel_current(), why);
    return 1;
  }
  printf("BLAS self-check passed: %s\n", dd_tensor_kernel_summary(sum, sizeof sum));
  return 0;
}

int main(int argc, char **argv) {
  dd_cli_select_blas_kernels(argv); /* may re-execute the program: first, before anything starts */
  if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
    /* no MPI needed to say who we are */
    char sum[800];
    printf("ddtrain %s (C17; %s)\nBLAS kernels: %s\n", DD_VERSION_STRING, dd_tensor_blas_info(),
           dd_tensor_kernel_summary(sum, sizeof sum));
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "--blas-check") == 0)
    return blas_check();
  if (argc < 2 || is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    fputs(usage_main, argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  dd_comm *c = NULL;
  if (dd_comm_init(&argc, &argv, &c)) {
    fprintf(stderr, "ddtrain: error: %s\n", dd_error_message());
    return 1;
  }
  int code = dd_cli_run(c, argc, argv);
  dd_comm_finalize(c);
  return code;
}
