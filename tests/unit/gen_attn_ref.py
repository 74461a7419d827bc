#!/usr/bin/python3
"""Reference values for tests/unit/test_layers_attn.c, computed with PyTorch.

Regenerate (torch 1.13 from Debian's python3-torch):
    /usr/bin/python3 tests/unit/gen_attn_ref.py > tests/unit/attn_ref.h && clang-format -i tests/unit/attn_ref.h

Every input is a float32 value (written to the header as such); PyTorch
computes from them in float64, so the reference is the exact function of
the values the C test loads, and the test's tolerance only has to cover
ddtrain's own float32 rounding (derived in test_layers_attn.c).

attention: torch.nn.MultiheadAttention(D, H, batch_first=True) (bias, no
dropout) as self-attention on x [B, T, D] with the causal attn_mask, and
with lengths LENGTHS also the key_padding_mask (steps >= length); outputs
at padding steps are multiplied by 0 (ddtrain writes zero vectors there).
Cases: causal; causal with lengths; not causal with lengths. For each: the
parameters in PyTorch's layout (in_proj_weight [3D, D] = q, k, v stacked,
in_proj_bias, out_proj.weight, out_proj.bias), the output, and the
gradients of L = sum(w * y) with respect to every parameter and x.
gelu: F.gelu(x, approximate='tanh') over [-9, 9] and beyond, y and dx.
positional: x + nn.Embedding(C, D)(arange(T)) with lengths (zero outputs at
padding), y and the gradients of the weight and x.
block: GPT-2's pre-LayerNorm block on x [B, T, D], causal, no dropout:
h = x + attn(ln_1(x)), y = h + c_proj(gelu_tanh(c_fc(ln_2(h)))), c_fc [4D, D];
every parameter, y and the parameter gradients of L = sum(w * y).
tied: GPT-2's tied output on token ids [B, T]: logits = ln(wte[ids]) wte^T +
b (wte [V, D] is both the embedding and lm_head's weight); the gradient of
wte is the sum of both uses.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from gen_seq_ref import carr, det  # same deterministic values and C output (this script's directory)

B, T, D, H = 3, 5, 8, 2
C = 7  # positional table rows (context) > T
LENGTHS = [5, 3, 1]


def f32(t):
    """The float32 value the C side holds, as float64 for PyTorch."""
    return t.to(torch.float32).to(torch.float64)


def valid_mask():
    return (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]).to(torch.float64)  # [B, T]


def attention_case(name, causal, masked):
    m = nn.MultiheadAttention(D, H, batch_first=True, bias=True, dtype=torch.float64)
    params = {
        "qkv_weight": m.in_proj_weight,
        "qkv_bias": m.in_proj_bias,
        "proj_weight": m.out_proj.weight,
        "proj_bias": m.out_proj.bias,
    }
    with torch.no_grad():
        for k, (n, p) in enumerate(params.items()):
            p.copy_(f32(0.5 * det(p.shape, 50 + k)))
    x = f32(det((B, T, D), 60)).requires_grad_(True)
    attn_mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) if causal else None
    kpm = (valid_mask() == 0) if masked else None
    y, _ = m(x, x, x, attn_mask=attn_mask, key_padding_mask=kpm, need_weights=False)
    if masked:
        y = y * valid_mask()[:, :, None]
    w = f32(det((B, T, D), 61))
    (w * y).sum().backward()
    lines = [f"/* {name}: nn.MultiheadAttention({D}, {H}), causal {causal}, lengths {masked} */"]
    for n, p in params.items():
        lines.append(carr(f"{name}_{n}", p))
    lines.append(carr(f"{name}_y", y))
    for n, p in params.items():
        lines.append(carr(f"{name}_d{n}", p.grad))
    lines.append(carr(f"{name}_dx", x.grad))
    return lines


def gelu_case():
    n = 64
    x = torch.linspace(-9.0, 9.0, n, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([-30.0, -12.0, -1e-3, 0.0, 1e-3, 12.0, 30.0, 0.5])])
    x = f32(x).requires_grad_(True)
    y = F.gelu(x, approximate="tanh")
    w = f32(det(x.shape, 70))
    (w * y).sum().backward()
    return ["/* gelu: F.gelu(x, approximate='tanh') */", f"#define GELU_N {x.numel()}", carr("GELU_x", x),
            carr("GELU_y", y), carr("GELU_w", w), carr("GELU_dx", x.grad)]


def positional_case():
    emb = nn.Embedding(C, D, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(f32(det((C, D), 80)))
    x = f32(det((B, T, D), 81)).requires_grad_(True)
    y = (x + emb(torch.arange(T))[None]) * valid_mask()[:, :, None]
    w = f32(det((B, T, D), 82))
    (w * y).sum().backward()
    return [f"/* positional: x + nn.Embedding({C}, {D})(arange({T})), zero at padding */", carr("POS_weight", emb.weight),
            carr("POS_x", x), carr("POS_y", y), carr("POS_w", w), carr("POS_dweight", emb.weight.grad), carr("POS_dx", x.grad)]


def block_case():
    ln1, ln2 = nn.LayerNorm(D, dtype=torch.float64), nn.LayerNorm(D, dtype=torch.float64)
    attn = nn.MultiheadAttention(D, H, batch_first=True, bias=True, dtype=torch.float64)
    fc, proj = nn.Linear(D, 4 * D, dtype=torch.float64), nn.Linear(4 * D, D, dtype=torch.float64)
    params = {  # ddtrain layer index in the expanded block, parameter name, tensor
        "ln1_weight": (1, "weight", ln1.weight), "ln1_bias": (1, "bias", ln1.bias),
        "qkv_weight": (2, "qkv_weight", attn.in_proj_weight), "qkv_bias": (2, "qkv_bias", attn.in_proj_bias),
        "proj_weight": (2, "proj_weight", attn.out_proj.weight), "proj_bias": (2, "proj_bias", attn.out_proj.bias),
        "ln2_weight": (5, "weight", ln2.weight), "ln2_bias": (5, "bias", ln2.bias),
        "fc_weight": (6, "weight", fc.weight), "fc_bias": (6, "bias", fc.bias),
        "mproj_weight": (8, "weight", proj.weight), "mproj_bias": (8, "bias", proj.bias),
    }
    with torch.no_grad():
        for k, (_, _, p) in enumerate(params.values()):
            v = 0.5 * det(p.shape, 90 + k)
            p.copy_(f32(1.0 + 0.3 * v if k in (0, 6) else v))  # norm weights near 1
    x = f32(det((B, T, D), 60))
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    a = ln1(x)
    h = x + attn(a, a, a, attn_mask=causal, need_weights=False)[0]
    y = h + proj(F.gelu(fc(ln2(h)), approximate="tanh"))
    w = f32(det((B, T, D), 61))
    (w * y).sum().backward()
    lines = [f"/* block: pre-LayerNorm transformer block, D {D}, {H} heads, MLP {4 * D}, causal */",
             "typedef struct blk_param { int layer; const char *name; const float *v, *g; int64_t n; } blk_param;"]
    for n, (_, _, p) in params.items():
        lines.append(carr(f"BLK_{n}", p))
        lines.append(carr(f"BLK_d{n}", p.grad))
    lines.append(carr("BLK_y", y))
    lines.append("static const blk_param BLK_PARAMS[] = {" + ", ".join(
        f'{{{i}, "{nm}", BLK_{n}, BLK_d{n}, {p.numel()}}}' for n, (i, nm, p) in params.items()) + "};")
    return lines


V = 11  # tied case vocabulary


def tied_case():
    wte = nn.Embedding(V, D, dtype=torch.float64)
    ln = nn.LayerNorm(D, dtype=torch.float64)
    b = torch.zeros(V, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        wte.weight.copy_(f32(det((V, D), 110)))
        ln.weight.copy_(f32(1.0 + 0.3 * det((D,), 111)))
        ln.bias.copy_(f32(0.3 * det((D,), 112)))
        b.copy_(f32(0.3 * det((V,), 113)))
    ids = torch.tensor([[(7 * i + 3 * t) % V for t in range(T)] for i in range(B)])
    logits = ln(wte(ids)) @ wte.weight.t() + b
    w = f32(det((B, T, V), 114))
    (w * logits).sum().backward()
    return [f"/* tied: logits = LayerNorm(wte[ids]) wte^T + b, wte [{V}, {D}] */", f"#define TIE_V {V}",
            "static const float TIE_ids[] = {" + ", ".join(f"{v}.0f" for v in ids.reshape(-1).tolist()) + "};",
            carr("TIE_wte", wte.weight), carr("TIE_ln_weight", ln.weight), carr("TIE_ln_bias", ln.bias),
            carr("TIE_bias", b), carr("TIE_w", w), carr("TIE_y", logits), carr("TIE_dwte", wte.weight.grad),
            carr("TIE_dln_weight", ln.weight.grad), carr("TIE_dln_bias", ln.bias.grad), carr("TIE_dbias", b.grad)]


def main():
    print(f"/* Reference values from PyTorch {torch.__version__} (float64 from float32 inputs). Generated by:")
    print(" *   /usr/bin/python3 tests/unit/gen_attn_ref.py > tests/unit/attn_ref.h && clang-format -i tests/unit/attn_ref.h")
    print(" * Do not edit; see the script for what the numbers are. */")
    print("#ifndef DDTRAIN_TEST_ATTN_REF_H\n#define DDTRAIN_TEST_ATTN_REF_H\n")
    print(f"#define ATT_B {B}\n#define ATT_T {T}\n#define ATT_D {D}\n#define ATT_H {H}\n#define POS_C {C}")
    print("static const int32_t ATT_LEN[ATT_B] = {" + ", ".join(map(str, LENGTHS)) + "};")
    print(carr("ATT_x", f32(det((B, T, D), 60))))
    print(carr("ATT_w", f32(det((B, T, D), 61))))
    for name, causal, masked in (("ATT_causal", True, False), ("ATT_causal_len", True, True),
                                 ("ATT_full_len", False, True)):
        print()
        print("\n".join(attention_case(name, causal, masked)))
    print()
    print("\n".join(gelu_case()))
    print()
    print("\n".join(positional_case()))
    print()
    print("\n".join(block_case()))
    print()
    print("\n".join(tied_case()))
    print("\n#endif")


if __name__ == "__main__":
    main()
