/* allreduce_bench: time of one MPI_Allreduce (or of one message, ping-pong) of given byte counts, on the
 * ranks and the network it is started on. Built and run by jobs/bench/net.sh:
 *
 *   mpicc -O2 -o allreduce_bench jobs/bench/allreduce_bench.c
 *   mpirun -np 2 ... allreduce_bench [--pingpong] [--out-of-place] [--nonblocking US] [--iters N] [--seconds S]
 *                                    [--label TEXT] BYTES...
 *
 * allreduce (default): an in-place MPI_Allreduce of BYTES/4 floats with MPI_SUM, as ddtrain reduces its
 * gradient arena. Each iteration starts after an MPI_Barrier; its time is the largest over the ranks
 * (the time the slowest rank spent in the call); --out-of-place: from a separate send buffer (Open MPI
 * 4.1.4's coll han crashes on MPI_IN_PLACE: open-mpi/ompi#11488, fixed after 4.1.x); --nonblocking US:
 * MPI_Iallreduce, then MPI_Test every US microseconds with a sleep between (0: MPI_Wait), as ddtrain's
 * communication thread does. --pingpong: rank 0 sends BYTES to
 * rank 1, which sends them back; the time is half the round trip (a message's latency plus BYTES over the bandwidth).
 * Per byte count: 3 warm-up iterations (TCP connections are opened on first use), then up to N (default
 * 400) timed ones, fewer when they would take more than S seconds (default 2; at least 10). Rank 0
 * prints one JSON line per byte count: median, minimum and 90th percentile in seconds. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* nodes = the number of distinct shared-memory domains (hosts) among the ranks */
static int count_nodes(void) {
  MPI_Comm node;
  int nrank = 0, leader, nodes = 0;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &nrank);
  leader = nrank == 0;
  MPI_Allreduce(&leader, &nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Comm_free(&node);
  return nodes;
}

static int nb_us = -1; /* --nonblocking: test interval (us), 0 = MPI_Wait; -1: blocking */

/* one timed operation; returns this rank's seconds in it (send: NULL for in place) */
static double once(int pingpong, const float *send, float *buf, long n, int rank) {
  double t0, t;
  if (pingpong) {
    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(buf, (int)n, MPI_FLOAT, 1, 7, MPI_COMM_WORLD);
      MPI_Recv(buf, (int)n, MPI_FLOAT, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
      MPI_Recv(buf, (int)n, MPI_FLOAT, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf, (int)n, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
    }
    t = (MPI_Wtime() - t0) / 2;
    return rank < 2 ? t : 0.0;
  }
  MPI_Barrier(MPI_COMM_WORLD);
  t0 = MPI_Wtime();
  if (nb_us < 0) {
    MPI_Allreduce(send ? (const void *)send : MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  } else {
    MPI_Request req;
    MPI_Iallreduce(send ? (const void *)send : MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
    if (nb_us == 0) {
      MPI_Wait(&req, MPI_STATUS_IGNORE);
    } else {
      int done = 0;
      const struct timespec ts = {0, nb_us * 1000L};
      for (MPI_Test(&req, &done, MPI_STATUS_IGNORE); !done; MPI_Test(&req, &done, MPI_STATUS_IGNORE))
        nanosleep(&ts, NULL);
    }
  }
  return MPI_Wtime() - t0;
}

int main(int argc, char **argv) {
  int rank, size, pingpong = 0, oop = 0, iters = 400;
  double seconds = 2.0;
  const char *label = "";
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int a = 1;
  for (; a < argc && strncmp(argv[a], "--", 2) == 0; a++) {
    if (strcmp(argv[a], "--pingpong") == 0)
      pingpong = 1;
    else if (strcmp(argv[a], "--out-of-place") == 0)
      oop = 1;
    else if (strcmp(argv[a], "--nonblocking") == 0 && a + 1 < argc)
      nb_us = atoi(argv[++a]);
    else if (strcmp(argv[a], "--iters") == 0 && a + 1 < argc)
      iters = atoi(argv[++a]);
    else if (strcmp(argv[a], "--seconds") == 0 && a + 1 < argc)
      seconds = atof(argv[++a]);
    else if (strcmp(argv[a], "--label") == 0 && a + 1 < argc)
      label = argv[++a];
    else {
      if (rank == 0)
        fprintf(stderr, "allreduce_bench: unknown option '%s'\n", argv[a]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  }
  if (a >= argc || iters < 1 || (pingpong && size < 2)) {
    if (rank == 0)
      fprintf(stderr, "usage: allreduce_bench [--pingpong] [--out-of-place] [--nonblocking US] [--iters N] [--seconds "
                      "S] [--label TEXT] BYTES...\n"
                      "(--pingpong needs 2 ranks or more)\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const int nodes = count_nodes();
  double *t = malloc(sizeof(double) * (size_t)iters), *tmax = malloc(sizeof(double) * (size_t)iters);
  if (!t || !tmax)
    MPI_Abort(MPI_COMM_WORLD, 1);
  for (; a < argc; a++) {
    const long bytes = atol(argv[a]);
    const long n = bytes / 4 > 0 ? bytes / 4 : 1;
    float *buf = malloc(sizeof(float) * (size_t)n), *send = oop ? malloc(sizeof(float) * (size_t)n) : NULL;
    if (!buf || (oop && !send))
      MPI_Abort(MPI_COMM_WORLD, 1);
    for (long i = 0; i < n; i++)
      buf[i] = (float)(i % 7) * 1e-3f;
    if (send)
      memcpy(send, buf, sizeof(float) * (size_t)n);
    double w = 0.0;
    for (int i = 0; i < 3; i++) /* warm-up: connections, page faults */
      w = once(pingpong, send, buf, n, rank);
    MPI_Allreduce(MPI_IN_PLACE, &w, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    int k = iters;
    if (w > 0 && seconds / w < k)
      k = (int)(seconds / w);
    if (k < 10)
      k = iters < 10 ? iters : 10;
    MPI_Bcast(&k, 1, MPI_INT, 0, MPI_COMM_WORLD);
    for (int i = 0; i < k; i++)
      t[i] = once(pingpong, send, buf, n, rank);
    MPI_Reduce(t, tmax, k, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      qsort(tmax, (size_t)k, sizeof(double), cmp_double);
      printf("{\"op\": \"%s\", \"nonblocking_us\": %d, \"in_place\": %s, \"label\": \"%s\", \"bytes\": %ld, \"ranks\": "
             "%d, \"nodes\": %d, "
             "\"iters\": %d, "
             "\"median_s\": %.9f, \"min_s\": %.9f, \"p90_s\": %.9f}\n",
             pingpong ? "pingpong" : "allreduce", nb_us, oop ? "false" : "true", label, n * 4, size, nodes, k,
             tmax[k / 2], tmax[0], tmax[(k * 9) / 10 < k ? (k * 9) / 10 : k - 1]);
      fflush(stdout);
    }
    free(buf);
    free(send);
  }
  free(t);
  free(tmax);
  MPI_Finalize();
  return 0;
}
