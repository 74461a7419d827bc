#!/usr/bin/env bash
# A GPT end to end (issue 15): {type: transformer} blocks and the output tied to the token embedding,
# trained on text from `data text` on real ranks:
#  - a block is exactly the residual blocks it stands for (the same parameters bit for bit);
#  - the tied table's gradient (two uses: the embedding's rows and the output's x^T dy) is reduced
#    once, after both: every comm.overlap mode gives the same bits at 2 ranks with small buckets;
#  - the checkpoint has no weight of its own for the tied output, records the tie (attribute tied),
#    and refuses a config that ties differently, naming the layer; eval and generate use it.
# (N ranks == 1 rank and resume for such a model: tests/mpi, case gpt-tied.)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

$PY "$here/words.py" 7 500 >corpus.txt
tail -c 2000 corpus.txt >val.txt
expect_ok "data text" in data text corpus.txt --out text.h5 --seq-len 16 --stride 8
expect_ok "data text --vocab" in data text val.txt --out val.h5 --seq-len 16 --vocab text.h5
V=$($PY -c "import h5py; print(len(h5py.File('text.h5')['vocab']))")

head_cfg() { # the model up to its blocks
    cat <<YAML
model:
  layers:
    - {type: embedding, vocab: $V, dim: 16, init: gpt2}
    - {type: positional, context: 16}
YAML
}
tail_cfg() {
    cat <<YAML
    - layernorm
    - {type: dense, tie: embedding}
data: {train: text.h5, val: val.h5}
optim: {name: adamw, lr: 0.005, betas: [0.9, 0.95], weight_decay: 0.1, decay: weights, clip_norm: 1.0}
schedule: {name: cosine, unit: steps, warmup_steps: 10}
train: {batch_size: 16, epochs: 2, seed: 3, log_every: 0}
comm: {bucket_mb: 0.002}
checkpoint: {dir: ck, keep: 1}
YAML
}
{ head_cfg; for _ in 1 2; do echo "    - {type: transformer, heads: 2, dropout: 0.1}"; done; tail_cfg; } >gpt.yaml
{ head_cfg; for _ in 1 2; do cat <<'YAML'
    - {type: residual, layers: [layernorm, {type: attention, heads: 2, p: 0.1}, {type: dropout, p: 0.1}]}
    - {type: residual, layers: [layernorm, {type: dense, units: 64}, gelu, {type: dense, units: 16}, {type: dropout, p: 0.1}]}
YAML
done; tail_cfg; } >spelled.yaml
# the same model untied: a weight of its own for the output
sed "s/{type: dense, tie: embedding}/{type: dense, units: $V}/" gpt.yaml >untied.yaml

cat >cmp.py <<'PY'
# cmp.py A B: the parameters of two checkpoints bit for bit, every value finite
import sys, h5py, numpy as np
with h5py.File(sys.argv[1]) as fa, h5py.File(sys.argv[2]) as fb:
    names = sorted(f"{l}/{t}" for l in fa["params"] for t in fa["params"][l])
    assert names == sorted(f"{l}/{t}" for l in fb["params"] for t in fb["params"][l]), "tensors differ"
    for n in names:
        x, y = fa["params"][n][()], fb["params"][n][()]
        assert np.isfinite(x).all(), f"{n}: non-finite values"
        assert x.tobytes() == y.tobytes(), f"{n}: {np.count_nonzero(x != y)} of {x.size} values differ"
PY
last() { ls "$1"/ckpt-*.h5 | tail -n 1; }
same() { # DESC DIR_A DIR_B
    local r
    if r=$("$PY" cmp.py "$(last "$2")" "$(last "$3")" 2>&1); then echo "ok   $1"; else fail "$1: $r"; fi
}

expect_ok "train the GPT (2 transformer blocks, tied output)" in train gpt.yaml checkpoint.dir=block
grep -qF "+ weight of layer 0 (tied)" "$out" || fail "the summary shows the tied output"
expect_ok "train the same model spelled out as residual blocks" in train spelled.yaml checkpoint.dir=spelled
same "a transformer block is the residual blocks it stands for" block spelled
$PY - "$(last block)" "$V" <<'PY' || fail "tied checkpoint layout"
import sys, h5py
f, V = h5py.File(sys.argv[1]), int(sys.argv[2])
n = int(f.attrs["nlayers"]); out = f"layer{n - 1}"
tied = f.attrs["tied"]; tied = tied.decode() if isinstance(tied, bytes) else tied
assert tied == f"{out}/weight=layer0/weight", tied
assert list(f["params"][out]) == ["bias"] and f["params"][out]["bias"].shape == (V,), list(f["params"][out])
assert f["params/layer0/weight"].shape == (V, 16)
PY
$PY - <<'PY' || fail "the GPT learns (val loss well below log(V))"
import json, math
ep = [e for e in map(json.loads, open("block/metrics.jsonl")) if e["event"] == "epoch"]
assert len(ep) == 2 and ep[-1]["val_loss"] < 0.6 * math.log(20), ep[-1]
PY

# the tied table's gradient has two contributions; with buckets of 500 floats it is reduced in its
# own bucket, last: every overlap mode gives the same bits
for mode in off thread poll; do
    expect_ok "comm.overlap $mode at 2 ranks" 2 train gpt.yaml comm.overlap=$mode checkpoint.dir=$mode
done
same "overlap thread vs off with a tied table" thread off
same "overlap poll vs off with a tied table" poll off

ck=$(last block)
expect_ok "eval the tied GPT" 2 eval "$ck" val.h5
expect_ok "generate from the tied GPT" in generate "$ck" --prompt "the cat" --length 40 --temperature 0.8 --top-k 5 --seed 2
[ "$(printf %s "$(cat "$out")" | wc -c)" -ge 47 ] && grep -q '^the cat' "$out" || fail "generate: the prompt and 40 characters"

expect_error "a tied checkpoint into an untied config" in 1 "has model.layers[" \
    train untied.yaml checkpoint.dir=mis1 --resume "$ck"
grep -qF "tied to the embedding" "$err" && grep -qF "add tie: embedding" "$err" || fail "the message says how to fix it"
expect_ok "train the untied model" in train untied.yaml train.epochs=1 checkpoint.dir=untied
expect_error "an untied checkpoint into a tied config" in 1 "remove tie from model.layers[" \
    train gpt.yaml checkpoint.dir=mis2 --resume "$(last untied)"
printf 'model: {layers: [{type: dense, units: 8}, {type: dense, tie: embedding}]}\ndata: {train: text.h5}\n' >noemb.yaml
expect_error "tie without an embedding, 2 ranks" 2 1 "tie: embedding needs an embedding layer before it" train noemb.yaml
sed '0,/heads: 2, /s///' gpt.yaml >noheads.yaml
expect_error "a block without heads" in 1 "needs 'heads'" train noheads.yaml checkpoint.dir=noheads
expect_error "a block's width not divisible by heads" in 1 "part of the transformer block there" \
    train gpt.yaml model.layers.2.heads=3 checkpoint.dir=heads3

no_temp_files .
finish
