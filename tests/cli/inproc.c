/* cli_inproc: ddtrain command lines run one after another in one process at one rank (lib.sh's NP "in").
 *
 * Each line on stdin is one command, fields separated by tabs: the directory to run in, the file for
 * its stdout, the file for its stderr, then the arguments that follow 'ddtrain' (none may hold a tab
 * or a newline). It runs with dd_cli_run, the ddtrain program's own dispatcher, on a one-rank
 * communicator made once (MPI_Init once for all commands), and its exit code goes back as one line
 * on stdout. At the end of stdin it finalises MPI and exits 0; under AddressSanitizer the leak check
 * at exit covers every command it ran. A command that crashes takes the process with it: the caller
 * sees the end of the replies. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddtrain/cli.h"
#include "ddtrain/comm.h"
#include "ddtrain/core.h"

enum { MAX_FIELDS = 256 };

/* Split line at tabs into at most max fields; returns how many, or -1 if there are more. */
static int split_tabs(char *line, char **field, int max) {
  int n = 0;
  for (char *p = line;; p++) {
    if (n == max)
      return -1;
    field[n++] = p;
    p = strchr(p, '\t');
    if (!p)
      return n;
    *p = '\0';
  }
}

/* fd `to` now writes to `path` (created or truncated). */
static int redirect(int to, const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return -1;
  int rc = dup2(fd, to) < 0 ? -1 : 0;
  close(fd);
  return rc;
}

int main(int argc, char **argv) {
  /* whatever src/cli/main.c does before dd_comm_init that changes how commands compute must
   * happen here too: the cli tests compare in-process results with the real program's */
  dd_cli_select_blas_kernels(argv);
  dd_comm *c = NULL;
  if (dd_comm_init(&argc, &argv, &c)) {
    fprintf(stderr, "cli_inproc: %s\n", dd_error_message());
    return 1;
  }
  /* the requests and replies keep their own descriptors; between commands stdout goes where stderr
   * goes, and no command can read the requests (stdin is /dev/null) */
  FILE *requests = fdopen(dup(STDIN_FILENO), "r");
  FILE *replies = fdopen(dup(STDOUT_FILENO), "w");
  const int own_err = dup(STDERR_FILENO);
  const int null = open("/dev/null", O_RDONLY);
  if (!requests || !replies || own_err < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 ||
      dup2(own_err, STDOUT_FILENO) < 0) {
    perror("cli_inproc: setting up descriptors");
    return 1;
  }
  close(null);
  char *line = NULL, *field[MAX_FIELDS];
  size_t cap = 0;
  ssize_t len;
  int status = 0;
  while ((len = getline(&line, &cap, requests)) > 0) {
    if (line[len - 1] == '\n')
      line[--len] = '\0';
    int n = split_tabs(line, field, MAX_FIELDS);
    if (n < 3) {
      fprintf(stderr, "cli_inproc: a request is DIR<tab>OUT<tab>ERR[<tab>ARG...], at most %d fields\n", MAX_FIELDS);
      status = 1;
      break;
    }
    if (chdir(field[0]) != 0) {
      fprintf(stderr, "cli_inproc: cannot change to directory '%s'\n", field[0]);
      status = 1;
      break;
    }
    fflush(stdout);
    fflush(stderr);
    if (redirect(STDOUT_FILENO, field[1]) || redirect(STDERR_FILENO, field[2])) {
      dup2(own_err, STDERR_FILENO);
      fprintf(stderr, "cli_inproc: cannot write '%s' or '%s'\n", field[1], field[2]);
      status = 1;
      break;
    }
    static char prog[] = "ddtrain";
    field[2] = prog; /* argv[0] */
    int code = dd_cli_run(c, n - 2, field + 2);
    fflush(stdout);
    fflush(stderr);
    dup2(own_err, STDOUT_FILENO);
    dup2(own_err, STDERR_FILENO);
    fprintf(replies, "%d\n", code);
    fflush(replies);
  }
  free(line);
  fclose(requests);
  fclose(replies);
  close(own_err);
  dd_comm_finalize(c);
  return status;
}
