#!/usr/bin/env bash
# Bad sequence input of every kind (tokens, lengths, pad ids, recurrent layers,
# data text, generate): one-line message naming the problem and the fix, the
# same exit code on every rank, no hang, no crash. The messages are checked
# in-process (NP in); lengths rank 0 reads and generate fail on 2 real ranks.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

# fixtures: a tiny character model (with a vocabulary), a classifier without one
for _ in $(seq 1 40); do echo "the cat sat on the mat."; done > corpus.txt
V=$($PY -c "print(len(set(open('corpus.txt').read())))")
ddt in data text corpus.txt --out text.h5 --seq-len 16 || fail "data text fixture"
ddt in data synth --out sent.h5 --seq-len 20 --samples 200 --vocab 60 --seed 4 || fail "synth fixture"
printf 'model: {layers: [{type: embedding, vocab: %s, dim: 4}, {type: lstm, hidden: 8, sequences: true}, {type: dense, units: %s}]}\ndata: {train: text.h5}\ntrain: {batch_size: 8, epochs: 1}\ncheckpoint: {dir: lm}\n' "$V" "$V" > lm.yaml
printf 'model: {layers: [{type: embedding, vocab: 60, dim: 4}, {type: lstm, hidden: 8}, {type: dense, units: 2}]}\ndata: {train: sent.h5, lengths: /lengths}\ntrain: {batch_size: 16, epochs: 1}\ncheckpoint: {dir: cls}\n' > cls.yaml
expect_ok "a tiny character model" in train lm.yaml
expect_ok "a tiny classifier" in train cls.yaml
ck=$(ls lm/ckpt-*.h5 | tail -1)
ck2=$(ls cls/ckpt-*.h5 | tail -1)

expect_error "token ids beyond the vocabulary" in 1 "outside [0, 40) of the embedding; raise model.layers.0.vocab to at least 60" train cls.yaml model.layers.0.vocab=40 checkpoint.dir=
grep -qE "data.train 'sent.h5':/x\[[0-9]+\] step [0-9]+ holds token id [0-9]+" "$err" || fail "names file, dataset, sample and step"
$PY - <<'PY'
import h5py, numpy as np
with h5py.File("floaty.h5", "w") as f:
    x = np.ones((20, 6), dtype=np.float32); x[3, 2] = 2.5
    f["x"] = x; f["y"] = np.zeros(20, dtype=np.int32)
with h5py.File("badlen.h5", "w") as f:
    f["x"] = np.ones((20, 6), dtype=np.int32); f["y"] = np.zeros(20, dtype=np.int32)
    n = np.full(20, 6, dtype=np.int32); n[7] = 9; f["lengths"] = n
with h5py.File("allpad.h5", "w") as f:
    x = np.ones((20, 6), dtype=np.int32); x[4] = 0
    f["x"] = x; f["y"] = np.zeros(20, dtype=np.int32)
with h5py.File("textcls.h5", "w") as f:       # a vocabulary, but one label per sequence
    f["x"] = np.ones((20, 6), dtype=np.int32); f["y"] = np.zeros(20, dtype=np.int32)
    f["vocab"] = np.array([ord("a"), ord("b")], dtype=np.int32)
PY
printf 'model: {layers: [{type: embedding, vocab: 4, dim: 3}, {type: gru, hidden: 4}, {type: dense, units: 2}]}\ndata: {train: floaty.h5}\ntrain: {batch_size: 4, epochs: 1}\ncheckpoint: {dir: ""}\n' > small.yaml
expect_error "non-integer token ids" in 1 "'floaty.h5':/x[3] step 2 holds 2.5, not a token id" train small.yaml
expect_error "a length longer than the sequences" 2 1 "'badlen.h5':/lengths[7] = 9 is not a length in 1..6" train small.yaml data.train=badlen.h5 data.lengths=/lengths
expect_error "a missing lengths dataset" in 1 "'badlen.h5' has no dataset '/lens' (sequence lengths, data.lengths); it has: /lengths, /x, /y" train small.yaml data.train=badlen.h5 data.lengths=/lens
expect_error "lengths and pad_id both" in 1 "set either data.lengths or data.pad_id, not both" train small.yaml data.train=badlen.h5 data.lengths=/lengths data.pad_id=0
expect_error "a sequence of padding only" in 1 "'allpad.h5':/x[4] holds only padding (data.pad_id = 0)" train small.yaml data.train=allpad.h5 data.pad_id=0
ddt in data synth --out img.h5 --samples 40 --image 1x2x3 --classes 2 || fail "synth images"
expect_error "pad_id on non-sequence data" in 1 "data.train 'img.h5':/x holds 1x2x3 per sample; data.pad_id needs sequences" train small.yaml data.train=img.h5 data.pad_id=0
$PY -c "import h5py, numpy as np; f = h5py.File('img2d.h5', 'w'); f['x'] = np.ones((20, 4, 5), np.float32); f['y'] = np.zeros(20, np.int32)"
printf 'model: {layers: [{type: dense, units: 3}]}\ndata: {train: img2d.h5}\ntrain: {batch_size: 4, epochs: 1}\ncheckpoint: {dir: ""}\n' > d2.yaml
expect_error "dense on 2-D samples with one label each" in 1 "outputs 4 row(s) of 3 classes (a dense layer acts per row on a 2-D [T, D] input: add {type: flatten} before it" train d2.yaml
printf 'model: {layers: [{type: lstm, hidden: 4}, {type: dense, units: 2}]}\ndata: {train: img.h5}\ncheckpoint: {dir: ""}\n' > img.yaml
expect_error "an LSTM on images" in 1 "model.layers[0] (lstm): needs a sequence [T, D] per sample (steps x features), got 1x2x3" train img.yaml
printf 'model: {layers: [{type: gru}, {type: dense, units: 2}]}\ndata: {train: sent.h5}\ncheckpoint: {dir: ""}\n' > nohidden.yaml
expect_error "recurrent layer without hidden" in 1 "model.layers[0] (gru): needs 'hidden' (state size)" train nohidden.yaml
printf 'caf\xe9\n' > latin1.txt
expect_error "data text on latin-1" in 1 "latin1.txt:1: byte 3 (column 4) = 0xe9 is not valid UTF-8" data text latin1.txt --out l.h5 --seq-len 2
printf 'abcd\n' > short.txt
expect_error "data text too short" in 1 "short.txt has 5 characters; --seq-len 8 needs at least 9" data text short.txt --out l.h5 --seq-len 8
expect_error "data text without --seq-len" in 2 "data text needs FILE.txt, --out FILE.h5 and --seq-len T" data text short.txt --out l.h5
expect_error "data text of a missing file" in 1 "cannot open text file 'nothere.txt'" data text nothere.txt --out l.h5 --seq-len 2
expect_error "synth sequence options without --seq-len" in 2 "need --seq-len T" data synth --out x.h5 --per-step
expect_error "generate: character not in the vocabulary" 2 1 "prompt character Z (position 5) is not in the model's vocabulary of $V characters" generate "$ck" --prompt "the Zebra"
expect_ok "generate from the tiny model" in generate "$ck" --prompt "the " --length 5 --temperature 0
expect_error "generate: a checkpoint without vocabulary" in 1 "has no vocabulary; generate needs a model trained on a 'ddtrain data text' file" generate "$ck2" --prompt "a"
printf 'model: {layers: [{type: embedding, vocab: 2, dim: 3}, {type: lstm, hidden: 4}, {type: dense, units: 2}]}\ndata: {train: textcls.h5}\ntrain: {batch_size: 4, epochs: 1}\ncheckpoint: {dir: tc}\n' > tc.yaml
expect_ok "train a many-to-one model on data with a vocabulary" in train tc.yaml
expect_error "generate: not a per-step classifier" in 1 "is not a per-step character classifier" generate "$(ls tc/ckpt-*.h5 | tail -1)" --prompt "ab"
printf 'the cat\nsat!\n' > bang.txt
expect_error "data text --vocab with a new character" in 1 "bang.txt:2: character ! (column 4) is not in the --vocab vocabulary of $V characters" data text bang.txt --out b.h5 --seq-len 4 --vocab text.h5
expect_error "data text --vocab of a file without one" in 1 "'sent.h5' has no /vocab; give a file written by 'ddtrain data text'" data text bang.txt --out b.h5 --seq-len 4 --vocab sent.h5
expect_error "generate: negative temperature" in 2 "--temperature needs a number >= 0" generate "$ck" --prompt a --temperature -1
expect_error "generate without a prompt" in 2 "generate needs CHECKPOINT and --prompt TEXT" generate "$ck"
no_temp_files .
finish
