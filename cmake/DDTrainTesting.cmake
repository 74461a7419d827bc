# dd_add_test(NAME name COMMAND exe args... [NPROCS n] [LABELS ...] [TIMEOUT s])
# NPROCS runs the command under mpiexec with n ranks (oversubscribed, one
# BLAS thread each). Every test gets a TIMEOUT so a hang fails instead of
# stalling CI.
set(DD_MPI_ENV
  "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
if(DDTRAIN_SANITIZE)
  # Open MPI and hwloc keep allocations until exit; LeakSanitizer suppressions for them.
  # Open MPI's plugins stay loaded (no dlclose) so leak stacks name their libraries.
  list(APPEND DD_MPI_ENV
    "OMPI_MCA_mca_base_component_disable_dlclose=1"
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_odr_violation=0:fast_unwind_on_malloc=0"
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0:use_tls=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
# use_tls=0: LeakSanitizer (GCC 12) reads a bogus dynamic-TLS range of one of Open MPI's dlopen'ed
# plugins on this machine kind (Firecracker VM, Linux 6.18, glibc 2.36: "DTLS 12 at
# 0x000000000c37-0x000400001d39") and its tracer dies ("Tracer caught signal 11"), failing any
# single-rank run at exit. ddtrain keeps no heap pointers in thread-local storage (its only
# thread-local data is the error message buffer), so leak checking loses nothing of ours.
endif()

function(dd_add_test)
  cmake_parse_arguments(T "" "NAME;NPROCS;TIMEOUT" "COMMAND;LABELS;ENV" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(T_NPROCS)
    set(cmd ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${T_NPROCS} --oversubscribe
            ${MPIEXEC_PREFLAGS} ${T_COMMAND})
  else()
    set(cmd ${T_COMMAND})
  endif()
  add_test(NAME ${T_NAME} COMMAND ${cmd})
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${DD_MPI_ENV};${T_ENV}")
  if(T_NPROCS)
    set_tests_properties(${T_NAME} PROPERTIES PROCESSORS ${T_NPROCS})
  endif()
endfunction()
