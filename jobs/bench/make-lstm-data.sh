#!/usr/bin/env bash
# make-lstm-data.sh DDTRAIN OUT.h5 - the LSTM benchmark's data, made the way a
# user would: a text of 8192 x 64 + 1 characters drawn uniformly (seeded) from
# 65 symbols, turned into a next-character dataset by `ddtrain data text`.
# That is what torch_ref.py --model lstm trains on: 8192 sequences of T = 64
# uniformly random token ids in [0, 65) with labels in [0, 65) at every step.
set -euo pipefail
ddtrain=${1:?usage: make-lstm-data.sh DDTRAIN OUT.h5}
out=${2:?usage: make-lstm-data.sh DDTRAIN OUT.h5}
txt=$(mktemp /tmp/ddtrain-lstm-text.XXXXXX)
trap 'rm -f "$txt"' EXIT
/usr/bin/python3 - "$txt" <<'PY'
import random, sys
alphabet = [chr(c) for c in range(48, 48 + 65)]   # '0' .. 'p': 65 symbols
r = random.Random(1234)
n = 8192 * 64 + 1 - len(alphabet)
text = "".join(alphabet) + "".join(r.choice(alphabet) for _ in range(n))  # every symbol occurs
open(sys.argv[1], "w").write(text)
PY
"$ddtrain" data text "$txt" --out "$out" --seq-len 64
