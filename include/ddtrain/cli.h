/* ddtrain cli: one command line, run on the ranks of a communicator as the ddtrain program runs it. */
#ifndef DDTRAIN_CLI_H
#define DDTRAIN_CLI_H

#include "ddtrain/comm.h"

/* Run the command argv[1] with its arguments argv[2 .. argc-1] (argv[0], the
 * program name, is not read) on every rank of c, printing exactly what the
 * ddtrain program prints (results on rank 0's stdout, one 'ddtrain: error:'
 * line on rank 0's stderr), and return the process exit code, the same on
 * every rank: 0 done or help printed, 1 error, 2 bad command line, 128 +
 * signal number when SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 stopped training.
 * Collective: every rank calls it with the same arguments. --version and
 * --help without a command are main's (they need no MPI). Installs the
 * signal handlers of train. Callable again in the same process: each call
 * starts with no error message and no stop request. */
int dd_cli_run(dd_comm *c, int argc, char **argv);

/* Process start-up, before MPI or anything else: if OpenBLAS picked a weaker
 * kernel set than this CPU runs, re-execute this program (same binary, same
 * argv, same pid) with OPENBLAS_CORETYPE set (docs/blas-kernels.md). Returns
 * when no re-execution is due or it failed (then the process goes on with
 * OpenBLAS's own choice, and says why in the kernel summary). */
void dd_cli_select_blas_kernels(char **argv);

#endif
