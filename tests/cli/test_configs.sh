#!/usr/bin/env bash
# Every shipped example config in jobs/configs/ trains, as its header says, on
# small data made the way its header says (a renamed key or layer breaks here,
# not on a user's cluster). Each run is one short epoch on 2 ranks, with
# validation, a checkpoint and the metrics log; the data is made in-process (NP in).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
cfg=$DD_SRC/jobs/configs
mkdir -p data

# run_config NAME CONFIG OVERRIDES...: train one epoch on 2 ranks; checkpoint and validation must exist
run_config() {
    local name=$1 config=$2; shift 2
    local dir=runs/test-$name
    expect_ok "$name: jobs/configs/$(basename "$config") trains" 2 train "$config" train.epochs=1 \
        checkpoint.dir="$dir" "$@" || return 1
    grep -q '^epoch   1/1 .*val_loss' "$out" || fail "$name: epoch line with validation"
    ls "$dir"/ckpt-*.h5 >/dev/null 2>&1 || fail "$name: checkpoint written"
    grep -q '"event": "done"' "$dir/metrics.jsonl" || fail "$name: metrics log complete"
}

# quickstart.yaml: the MLP on the built-in synthetic set
expect_ok "quickstart data" in data synth --out data/synth.h5 --samples 1200
run_config quickstart "$cfg/quickstart.yaml"

# cnn-mnist.yaml on synthetic images (N x 1 x 28 x 28), on flat N x 784 data (model.input
# declares the shape) and on imported IDX files
expect_ok "image data" in data synth --out data/images.h5 --image 1x28x28 --samples 600
run_config cnn-images "$cfg/cnn-mnist.yaml"
expect_ok "flat data" in data synth --out data/flat.h5 --samples 600 --features 784
run_config cnn-flat "$cfg/cnn-mnist.yaml" data.train=data/flat.h5
$PY - <<'PY' || fail "could not write IDX files"
import gzip, struct, numpy as np
rng = np.random.default_rng(2)
for name, n in (("train", 400), ("t10k", 100)):
    with gzip.open(f"{name}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        f.write(rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8).tobytes())
    with gzip.open(f"{name}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n)); f.write(rng.integers(0, 10, size=n, dtype=np.uint8).tobytes())
PY
expect_ok "import idx train" in data import idx train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz --out data/mnist-train.h5
expect_ok "import idx test" in data import idx t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz --out data/mnist-test.h5
run_config cnn-idx "$cfg/cnn-mnist.yaml" data.train=data/mnist-train.h5 data.val=data/mnist-test.h5 data.val_fraction=0

# lstm-sentiment.yaml on synthetic variable-length sequences with /lengths
expect_ok "sentiment data" in data synth --out data/sentiment.h5 --seq-len 48 --samples 512 --vocab 1000 --seed 1
expect_ok "sentiment val data" in data synth --out data/sentiment-val.h5 --seq-len 48 --samples 128 --vocab 1000 --seed 2
run_config sentiment "$cfg/lstm-sentiment.yaml"

# char-lstm.yaml on a license text (a short piece of it), then generate from its checkpoint
head -c 12000 /usr/share/common-licenses/Apache-2.0 > data/licenses.txt
tail -c 3000 data/licenses.txt > data/val.txt   # --vocab needs every character in the training vocabulary
expect_ok "data text" in data text data/licenses.txt --out data/licenses.h5 --seq-len 100 --stride 50
expect_ok "data text --vocab" in data text data/val.txt --out data/gpl3.h5 --seq-len 100 --vocab data/licenses.h5
if run_config char-lstm "$cfg/char-lstm.yaml"; then
    ck=$(ls runs/test-char-lstm/ckpt-*.h5 | tail -1)
    expect_ok "char-lstm: generate from its checkpoint" in generate "$ck" --prompt "This License" --length 40 --temperature 0.7
    [ "$(head -c 12 "$out")" = "This License" ] || fail "generate starts with the prompt"
    # a length far beyond memory: characters come as they are drawn, memory stays that of the window
    n=$(timeout -k 5 60 "$DDTRAIN" generate "$ck" --prompt "This" --length 1000000000000 2>/dev/null | head -c 3000 | wc -c)
    [ "$n" = 3000 ] && echo "ok   generate --length 10^12 streams" || fail "generate --length 10^12: $n bytes"
fi
# gpt-char.yaml: the transformer (residual blocks, attention, GELU) on the same text in windows of 64
expect_ok "data text --seq-len 64" in data text data/licenses.txt --out data/licenses64.h5 --seq-len 64 --stride 32
expect_ok "data text --seq-len 64 --vocab" in data text data/val.txt --out data/gpl3-64.h5 --seq-len 64 --vocab data/licenses64.h5
if run_config gpt-char "$cfg/gpt-char.yaml"; then
    ck=$(ls runs/test-gpt-char/ckpt-*.h5 | tail -1)
    expect_ok "gpt-char: generate with top-k" in generate "$ck" --prompt "This License" --length 40 --temperature 0.8 --top-k 20
    [ "$(head -c 12 "$out")" = "This License" ] || fail "gpt-char: generate starts with the prompt"
fi
finish
