# Find ddtrain's dependencies and expose them as imported targets.
# Debian 12 packages: libopenmpi-dev, libhdf5-openmpi-dev, libopenblas-dev, libyaml-dev, zlib1g-dev.

find_package(MPI REQUIRED COMPONENTS C)

# Parallel HDF5: prefer the MPI build; a serial-only HDF5 is a hard error
# because checkpoints and data I/O are written for the MPI-enabled library.
set(HDF5_PREFER_PARALLEL TRUE)
find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "ddtrain needs the parallel (MPI) build of HDF5, but only a serial HDF5 was found "
    "(${HDF5_C_INCLUDE_DIRS}). On Debian/Ubuntu: apt-get install libhdf5-openmpi-dev; "
    "elsewhere point HDF5_ROOT at an HDF5 configured with --enable-parallel.")
endif()
if(NOT TARGET ddtrain::hdf5)
  add_library(ddtrain::hdf5 INTERFACE IMPORTED)
  target_include_directories(ddtrain::hdf5 INTERFACE ${HDF5_C_INCLUDE_DIRS})
  target_link_libraries(ddtrain::hdf5 INTERFACE ${HDF5_C_LIBRARIES} MPI::MPI_C)
  target_compile_definitions(ddtrain::hdf5 INTERFACE ${HDF5_C_DEFINITIONS})
endif()

# OpenBLAS with cblas.h (and its openblas_set_num_threads extension).
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(DDTRAIN_CBLAS_INCLUDE cblas.h PATH_SUFFIXES openblas openblas-pthread
          HINTS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu)
if(NOT DDTRAIN_CBLAS_INCLUDE)
  message(FATAL_ERROR "cblas.h not found; install OpenBLAS with headers (apt-get install libopenblas-dev)")
endif()
if(NOT TARGET ddtrain::blas)
  add_library(ddtrain::blas INTERFACE IMPORTED)
  target_include_directories(ddtrain::blas INTERFACE ${DDTRAIN_CBLAS_INCLUDE})
  target_link_libraries(ddtrain::blas INTERFACE ${BLAS_LIBRARIES})
endif()

# libyaml for configs; xxHash for checkpoint checksums (Debian: libxxhash-dev).
find_package(PkgConfig REQUIRED)
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)

find_package(ZLIB REQUIRED)

include(CheckLibraryExists)
find_library(MATH_LIBRARY m)
