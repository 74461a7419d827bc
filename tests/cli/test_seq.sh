#!/usr/bin/env bash
# Sequences end to end on real ranks: data text -> a character LSTM -> generate;
# data synth --seq-len -> an LSTM classifier with lengths -> eval/predict.
# Commands whose rank count does not matter run in-process (NP in, one rank).
# (Bad sequence input: test_seq_errors.sh.)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

# a small text with structure to learn, and one non-ASCII character (UTF-8)
$PY - <<'PY'
import random
r = random.Random(5)
words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "café"]
lines = [" ".join(r.choice(words) for _ in range(r.randint(3, 8))) + "." for _ in range(600)]
open("corpus.txt", "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
V=$($PY -c "print(len(set(open('corpus.txt', encoding='utf-8').read())))")
expect_ok "data text" in data text corpus.txt --out text.h5 --seq-len 32 --stride 16
grep -q "vocabulary of $V characters" "$out" || fail "data text reports the vocabulary size ($V)"
$PY - <<'PY' || fail "data text layout: x, y = x shifted by one, /vocab of code points"
import h5py, numpy as np
f = h5py.File("text.h5", "r")
x, y, v = f["x"][:], f["y"][:], f["vocab"][:]
assert x.dtype.kind == "i" and x.shape[1] == 32 and y.shape == x.shape, (x.dtype, x.shape, y.shape)
assert (x[:, 1:] == y[:, :-1]).all() and (x[1:, :16] == x[:-1, 16:]).all()   # shifted; stride 16
chars = "".join(map(chr, v))
assert list(v) == sorted(v) and "é" in chars and "\n" in chars, chars
text = open("corpus.txt", encoding="utf-8").read()
assert "".join(chars[i] for i in x[0]) == text[:32]
PY
tail -c 3000 corpus.txt > valtext.txt
expect_ok "data text --vocab: a validation text with the same ids" in data text valtext.txt --out textval.h5 --seq-len 32 --vocab text.h5
$PY - <<'PY' || fail "data text --vocab keeps the training file's vocabulary and ids"
import h5py
a, b = h5py.File("text.h5", "r"), h5py.File("textval.h5", "r")
assert list(a["vocab"][:]) == list(b["vocab"][:])
v = b["vocab"][:]
assert "".join(chr(v[i]) for i in b["x"][0]) == open("valtext.txt", encoding="utf-8").read()[:32]
PY
expect_ok "inspect shows the vocabulary" in data inspect text.h5
grep -q "vocabulary ($V characters" "$out" || fail "inspect prints the vocabulary"
grep -q '0:\\n 1:'"' '"' ' "$out" || fail "inspect labels newline and space"

cat > lm.yaml <<'YAML'
model:
  layers:
    - {type: embedding, vocab: 21, dim: 16}
    - {type: lstm, hidden: 32, sequences: true}
    - {type: dense, units: 21}
data: {train: text.h5, val: textval.h5}
optim: {name: adam, lr: 0.02}
train: {batch_size: 32, epochs: 3}
checkpoint: {dir: lm}
YAML
expect_ok "train a character LSTM on 2 ranks" 2 train lm.yaml
$PY - <<'PY' || fail "the character model learns (val loss well below log(21) = 3.04)"
import json
ep = [e for e in map(json.loads, open("lm/metrics.jsonl")) if e["event"] == "epoch"]
assert ep[-1]["val_loss"] < 1.6, ep[-1]
PY
ck=$(ls lm/ckpt-*.h5 | tail -1)
$PY - "$ck" <<'PY' || fail "checkpoint: LSTM tensors in PyTorch's shapes and the vocabulary"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
assert f["params/layer0/weight"].shape == (21, 16)
assert f["params/layer1/weight_ih"].shape == (4 * 32, 16) and f["params/layer1/weight_hh"].shape == (4 * 32, 32)
assert f["params/layer1/bias_ih"].shape == (128,) and f["params/layer1/bias_hh"].shape == (128,)
assert f["params/layer1"].attrs["type"] in (b"lstm", "lstm")
assert "".join(map(chr, f["vocab"][:])).startswith("\n ")
PY
expect_ok "generate, greedy" 2 generate "$ck" --prompt "the cat " --length 60 --temperature 0
g1=$(cat "$out")
expect_ok "generate, greedy again on 1 rank" in generate "$ck" --prompt "the cat " --length 60 --temperature 0
[ "$g1" = "$(cat "$out")" ] || fail "greedy generation is deterministic across rank counts"
$PY - "$g1" <<'PY' || fail "generated text: the prompt plus 60 characters of the vocabulary, mostly known words"
import sys
g = sys.argv[1]
assert g.startswith("the cat ") and len(g) == len("the cat ") + 60, repr(g)
words = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "café"}
toks = [w.strip(".") for w in g.split()][:-1]
known = sum(w in words for w in toks)
assert known >= 0.7 * len(toks), (known, toks)
PY
expect_ok "generate with temperature and seed" in generate "$ck" --prompt "café" --length 40 --temperature 0.8 --seed 7
s1=$(cat "$out")
ddt in generate "$ck" --prompt "café" --length 40 --temperature 0.8 --seed 7
[ "$s1" = "$(cat "$out")" ] || fail "the same seed gives the same sample"
ddt in generate "$ck" --prompt "café" --length 40 --temperature 0.8 --seed 8
[ "$s1" != "$(cat "$out")" ] || fail "another seed gives another sample"
# top-k: k = 1 at any temperature is the greedy text; a larger k samples, as without it at that seed
expect_ok "generate --top-k 1" in generate "$ck" --prompt "the cat " --length 60 --temperature 1.5 --top-k 1 --seed 3
[ "$g1" = "$(cat "$out")" ] || fail "--top-k 1 gives the greedy text"
ddt in generate "$ck" --prompt "the cat " --length 60 --temperature 1.5 --top-k 3 --seed 3
k3=$(cat "$out")
ddt in generate "$ck" --prompt "the cat " --length 60 --temperature 1.5 --top-k 1000 --seed 3
kall=$(cat "$out")
ddt in generate "$ck" --prompt "the cat " --length 60 --temperature 1.5 --seed 3
[ "$kall" = "$(cat "$out")" ] || fail "--top-k larger than the vocabulary is all of it"
[ "$k3" != "$g1" ] || fail "--top-k 3 at temperature 1.5 still samples"
expect_error "--top-k negative" in 2 "--top-k must be >= 0" generate "$ck" --prompt "the" --top-k -1

# a sentiment-style classifier on variable-length synthetic sequences
expect_ok "data synth --seq-len" in data synth --out sent.h5 --seq-len 20 --samples 2000 --vocab 60 --seed 4
expect_ok "data synth --seq-len validation set" in data synth --out sentval.h5 --seq-len 20 --samples 400 --vocab 60 --seed 5
$PY - <<'PY' || fail "synthetic sequences: padded token ids, lengths, labels"
import h5py, numpy as np
f = h5py.File("sent.h5", "r")
x, y, n = f["x"][:], f["y"][:], f["lengths"][:]
assert x.shape == (2000, 20) and y.shape == (2000,) and n.shape == (2000,)
assert n.min() >= 5 and n.max() == 20 and set(np.unique(y)) == {0, 1}
for i in range(50):
    assert (x[i, n[i]:] == 0).all() and (x[i, :n[i]] != 0).all()
PY
cat > cls.yaml <<'YAML'
model:
  layers:
    - {type: embedding, vocab: 60, dim: 16}
    - {type: lstm, hidden: 24}
    - {type: dense, units: 2}
data: {train: sent.h5, val: sentval.h5, lengths: /lengths}
optim: {name: adam, lr: 0.01}
train: {batch_size: 32, epochs: 3}
checkpoint: {dir: cls}
YAML
expect_ok "train an LSTM classifier with lengths on 2 ranks" 2 train cls.yaml
acc=$(sed -n 's/^final validation accuracy: \([0-9.]*\)%.*/\1/p' "$out")
$PY -c "import sys; sys.exit(0 if float('$acc') > 85 else 1)" || fail "classifier learns: final accuracy $acc% > 85%"
ck2=$(ls cls/ckpt-*.h5 | tail -1)
expect_ok "eval the classifier" 2 eval "$ck2" sentval.h5
grep -q "accuracy $acc%" "$out" || fail "eval reproduces the final validation accuracy ($acc%)"
expect_ok "one epoch with data.lengths" in train cls.yaml train.epochs=1 checkpoint.dir=cls_len
grep '^final' "$out" > final_len.txt
expect_ok "the same epoch with data.pad_id instead" in train cls.yaml train.epochs=1 data.lengths= data.pad_id=0 checkpoint.dir=cls_pad
grep '^final' "$out" | cmp -s - final_len.txt || fail "pad_id 0 gives the lengths of /lengths: the same final validation figures"


# per-step labels with padding: loss and predictions skip the padding
expect_ok "data synth --per-step" in data synth --out step.h5 --seq-len 12 --samples 400 --vocab 30 --per-step --seed 6
sed -e 's/sent.h5/step.h5/; s/, val: sentval.h5//; s/lengths: \/lengths/pad_id: 0, val_fraction: 0.2/' \
    -e 's/{type: lstm, hidden: 24}/{type: lstm, hidden: 24, sequences: true}/; s/vocab: 60/vocab: 30/; s/epochs: 3/epochs: 1/' \
    cls.yaml > step.yaml
expect_ok "train per-step with pad_id" in train step.yaml checkpoint.dir=step
expect_ok "predict per step" 2 predict "$(ls step/ckpt-*.h5 | tail -1)" step.h5 --out steppred.h5
$PY - <<'PY' || fail "per-step predictions: [N, T], -1 exactly at padding"
import h5py, numpy as np
p = h5py.File("steppred.h5", "r")["pred"][:]; f = h5py.File("step.h5", "r")
n = f["lengths"][:]
assert p.shape == (400, 12)
for i in range(400):
    assert (p[i, n[i]:] == -1).all() and (p[i, :n[i]] >= 0).all()
PY

no_temp_files .
finish
