#!/usr/bin/env bash
# Bad image-layer configs (conv2d, pooling, dropout, batchnorm): one-line error naming the config line, the
# layer and the fix, the same non-zero exit code on every rank, no hang. The messages are checked in-process
# (NP in); a CNN trains and a layer that does not fit its input fails on 2 real ranks.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

ddt in data synth --out good.h5 --samples 200 --features 20 --classes 4 || exit 1

# shapes that do not fit, keys a kind does not take
ddt in data synth --out img.h5 --samples 100 --image 1x6x6 --classes 4 || exit 1
cat > cnn.yaml <<'YAML'
model:
  layers:
    - {type: conv2d, filters: 4, kernel: 3}
    - relu
    - {type: maxpool2d, kernel: 2}
    - flatten
    - {type: dense, units: 4}
data:
  train: img.h5
train: {batch_size: 16, epochs: 1}
checkpoint: {dir: ""}
YAML
expect_ok "a CNN on N x C x H x W data" 2 train cnn.yaml
expect_ok "a CNN on flat data with model.input" in train cnn.yaml data.train=good.h5 "model.input=[1,4,5]" model.layers.0.padding=1
expect_error "conv on flat data" in 1 "config line 3: model.layers[0] (conv2d): needs a [C, H, W] input but gets 20; store x as N x C x H x W or declare the image shape, e.g. model.input: [1, 28, 28]" train cnn.yaml data.train=good.h5
expect_error "conv kernel larger than the input" 2 1 "config line 3: model.layers[0] (conv2d): kernel 9 is larger than the input 1x6x6 padded by 0; use kernel <= 6 or more padding" train cnn.yaml model.layers.0.kernel=9
expect_error "pool kernel larger than its input" in 1 "config line 5: model.layers[2] (maxpool2d): kernel 5 is larger than the input 4x4x4" train cnn.yaml model.layers.2.kernel=5
expect_error "pool padding over half the kernel" in 1 "model.layers[2] (maxpool2d): padding 2 is more than half the kernel 2; use padding <= 1" train cnn.yaml model.layers.2.padding=2
expect_error "conv without filters" in 1 "model.layers[0] (conv2d): needs 'filters' (output channels)" train cnn.yaml "model.layers.0={type: conv2d, kernel: 3}"
expect_error "a key conv2d does not take" in 1 "model.layers[0] (conv2d): unknown key 'units' (did you mean 'init'?); conv2d takes filters, kernel, stride, padding, bias, init" train cnn.yaml model.layers.0.units=3
expect_error "stride 0" in 1 "model.layers[0].stride: expected an integer in [1, 1000000] or a list [height, width], got '0'" train cnn.yaml model.layers.0.stride=0
# non-square windows: [height, width] as PyTorch's (h, w)
expect_ok "non-square conv and pool kernels, strides, paddings" in train cnn.yaml "model.layers.0.kernel=[1,3]" "model.layers.0.stride=[1,2]" "model.layers.0.padding=[0, 1]" "model.layers.2.kernel=[3,2]"
expect_error "a kernel list of 3" in 1 "model.layers[0].kernel: expected one integer or a list [height, width] of two, got a list of 3; write e.g. kernel: 3 or kernel: [1, 3]" train cnn.yaml "model.layers.0.kernel=[1,3,3]"
expect_error "a kernel list entry not an integer" in 1 "model.layers[0].kernel[1] (width): expected an integer in [1, 1000000], got 'x'" train cnn.yaml "model.layers.0.kernel=[3,x]"
expect_error "negative padding in a list" in 1 "model.layers[0].padding[0] (height): expected an integer in [0, 1000000], got '-1'" train cnn.yaml "model.layers.0.padding=[-1,0]"
expect_error "conv kernel wider than the input" in 1 "config line 3: model.layers[0] (conv2d): kernel [1, 9] is larger than the input 1x6x6 padded by 0 in width; use a kernel width <= 6 or more padding" train cnn.yaml "model.layers.0.kernel=[1,9]"
expect_error "pool padding over half the kernel in one dimension" in 1 "model.layers[2] (maxpool2d): padding [0, 2] is more than half the kernel [2, 3] in width; use a width padding <= 1" train cnn.yaml "model.layers.2.kernel=[2,3]" "model.layers.2.padding=[0,2]"
expect_error "dropout p out of range" in 1 "model.layers[1].p: expected a number in [0, 0.999999], got '1.5'" train cnn.yaml "model.layers.1={type: dropout, p: 1.5}"
expect_error "batchnorm momentum out of range" in 1 "model.layers[1].momentum: expected a number in [0, 1], got '2'" train cnn.yaml "model.layers.1={type: batchnorm, momentum: 2}"

finish
