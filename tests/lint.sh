#!/usr/bin/env bash
# lint.sh - the gates CI runs before building: clang-format (the committed .clang-format), cppcheck
# (suppressions with reasons in tests/cppcheck.supp) and shellcheck (severity warning; settings in
# .shellcheckrc) over src/, include/, tests/, jobs/ and docker/. Any finding fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
mapfile -t csrc < <(git ls-files '*.c' '*.h')
unformatted=()
for f in "${csrc[@]}"; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ ${#unformatted[@]} -gt 0 ]; then
    echo "lint: not clang-formatted (run clang-format -i on them): ${unformatted[*]}"
    fail=1
fi
if ! cppcheck -q --enable=warning,style,performance,portability --std=c11 --inline-suppr \
        --suppressions-list=tests/cppcheck.supp --error-exitcode=1 \
        -Iinclude -Isrc/data -Isrc/config -Isrc/train -Isrc/report -Itests/util -Itests/fuzz src tests/util tests/unit tests/mpi tests/cli tests/fuzz jobs/bench; then
    echo "lint: cppcheck findings above (fix them, or suppress with a reason in tests/cppcheck.supp)"
    fail=1
fi
mapfile -t shells < <(git ls-files '*.sh' '*.sbatch' .ci/run docker/ddtrain-node)
if ! shellcheck -x -S warning "${shells[@]}"; then
    echo "lint: shellcheck findings above"
    fail=1
fi
[ $fail = 0 ] && echo "lint: clang-format, cppcheck and shellcheck clean (${#csrc[@]} C files, ${#shells[@]} scripts)"
exit $fail
