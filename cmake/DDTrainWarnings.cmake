# Warnings and sanitizer flags as an interface target, not global flags.
add_library(ddtrain_warnings INTERFACE)
# -Wconversion is left out on purpose: BLAS takes int sizes and we convert
# int64 -> int after explicit range checks; the flag buried real findings in
# casts. -Wfloat-conversion keeps the precision-losing cases visible.
target_compile_options(ddtrain_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wpedantic -Wstrict-prototypes -Wmissing-prototypes
  -Wfloat-conversion -Wformat=2 -Wvla -Wno-unused-parameter
  # sequtil.h's 16-lane vectors pass between static inline functions of one file only; GCC warns on every
  # target without AVX-512 that their (never used) calling convention would differ
  -Wno-psabi)

add_library(ddtrain_flags INTERFACE)
if(DDTRAIN_NATIVE)
  target_compile_options(ddtrain_flags INTERFACE -march=native)
endif()
if(DDTRAIN_SANITIZE)
  target_compile_options(ddtrain_flags INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(ddtrain_flags INTERFACE -fsanitize=address,undefined)
endif()
target_link_libraries(ddtrain_warnings INTERFACE ddtrain_flags)
