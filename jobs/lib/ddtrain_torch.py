#!/usr/bin/python3
"""ddtrain_torch: a ddtrain GPT checkpoint as a PyTorch module with GPT-2 / nanoGPT names.

    import sys; sys.path.insert(0, "jobs/lib")
    import ddtrain_torch
    model, cfg = ddtrain_torch.load("ck/ckpt-0000000020.h5")      # eval mode, float32
    logits, loss = model(x, y)                                    # x, y: int64 [B, T]

    /usr/bin/python3 jobs/lib/ddtrain_torch.py CKPT [--data X.h5]   # the module; with --data the mean
                                                                  # cross-entropy over X.h5's x/y

The checkpoint must hold a GPT as ddtrain's config writes it (docs/layers.md, transformer layers):
embedding, positional, n_layer {type: transformer} blocks, layernorm, and a dense output that is either
tied to the embedding ({type: dense, tie: embedding}) or has its own weight ({type: dense, units: V}).
The structure (n_layer, heads, mlp, dropout, causal, bias, eps) comes from the training config stored in
the checkpoint (root attribute `config`); each flat layer index it implies is checked against the
`type` attribute of /params/layer<i> and every tensor's shape. Name mapping: docs/checkpoint-format.md,
"Loading a ddtrain GPT into PyTorch".

Differences from GPT-2 kept on purpose: ddtrain's output layer has a bias (unless bias: false on it),
so `lm_head` is nn.Linear(D, V, bias=True) whose weight is `transformer.wte.weight` (tied) and whose bias
is the tied dense's `/params/layer<N>/bias`; GPT-2's lm_head has no bias. `transformer.h.{i}.attn.c_attn`
and `c_proj` are nn.Linear (nanoGPT's layout, weight [out, in]), not transformers' Conv1D (transposed).
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml


class DdtrainTorchError(Exception):
    """A checkpoint that is not a ddtrain GPT of the supported shape (one-line message)."""


class CausalSelfAttention(nn.Module):
    """ddtrain's attention layer: q, k, v = split(c_attn(x)); softmax(q k^T / sqrt(E), masked) v; c_proj."""

    def __init__(self, n_embd, n_head, bias=True, causal=True, dropout=0.0):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.causal = n_head, n_embd, causal

    def forward(self, x):
        B, T, D = x.shape
        H, E = self.n_head, D // self.n_head
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = (t.view(B, T, H, E).transpose(1, 2) for t in (q, k, v))      # [B, H, T, E]
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(E))
        if self.causal:
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)
            s = s.masked_fill(mask, float("-inf"))
        p = self.attn_dropout(F.softmax(s, dim=-1))
        y = (p @ v).transpose(1, 2).contiguous().view(B, T, D)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd, hidden, bias=True):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """GPT-2's pre-LayerNorm block, ddtrain's {type: transformer}."""

    def __init__(self, n_embd, n_head, mlp=4, bias=True, causal=True, dropout=0.0, eps=(1e-5, 1e-5)):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps[0])
        self.attn = CausalSelfAttention(n_embd, n_head, bias, causal, dropout)
        self.drop_1 = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps[1])
        self.mlp = MLP(n_embd, mlp * n_embd, bias)
        self.drop_2 = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.drop_1(self.attn(self.ln_1(x)))
        return x + self.drop_2(self.mlp(self.ln_2(x)))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        V, D = cfg["vocab"], cfg["dim"]
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, D),
            wpe=nn.Embedding(cfg["context"], D),
            h=nn.ModuleList(Block(D, b["heads"], b["mlp"], b["bias"], b["causal"], b["dropout"], b["eps"])
                            for b in cfg["blocks"]),
            ln_f=nn.LayerNorm(D, eps=cfg["ln_f_eps"]),
        ))
        self.lm_head = nn.Linear(D, V, bias=cfg["lm_head_bias"])
        if cfg["tied"]:
            self.lm_head.weight = self.transformer.wte.weight     # one table, as GPT-2's lm_head/wte

    def forward(self, idx, targets=None):
        """logits [B, T, V]; with targets, also the cross-entropy averaged over every (sample, step) whose
        target is >= 0 (ddtrain's loss: a target < 0 is masked padding)."""
        T = idx.shape[1]
        if T > self.transformer.wpe.num_embeddings:
            raise DdtrainTorchError(f"sequences of {T} steps are longer than the model's context "
                                    f"{self.transformer.wpe.num_embeddings}")
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T, device=idx.device))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                               reduction="none")
        valid = targets.reshape(-1) >= 0
        loss = loss[valid].sum() / valid.sum()
        return logits, loss


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _layer(entry, where):
    """(type, keys) of a model.layers entry: `layernorm` or {type: layernorm, ...}"""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and isinstance(entry.get("type"), str):
        return entry["type"], entry
    raise DdtrainTorchError(f"{where} is not a layer name or a {{type: ...}} map")


def structure(config_text):
    """The GPT's hyperparameters and the flat ddtrain layer index of each part, from the stored config.

    Returns a dict: vocab, dim, context, blocks (per block: heads, mlp, dropout, causal, bias, eps and
    the flat indices ln_1, attn, c_fc, c_proj, ln_2), ln_f, ln_f_eps, head, tied, lm_head_bias,
    nlayers (the flat layer count ddtrain builds)."""
    try:
        cfg = yaml.safe_load(config_text)
        layers = cfg["model"]["layers"]
    except (yaml.YAMLError, TypeError, KeyError) as e:
        raise DdtrainTorchError(f"its stored config has no model.layers list ({type(e).__name__})") from None
    if not isinstance(layers, list):
        raise DdtrainTorchError("its stored config's model.layers is not a list")
    shape = "a GPT of embedding, positional, transformer blocks, layernorm, dense"
    types = [_layer(e, f"model.layers[{i}]") for i, e in enumerate(layers)]
    names = [t for t, _ in types]
    n = len(names)
    nblocks = n - 4
    if (n < 5 or names[0] != "embedding" or names[1] != "positional" or names[-2] != "layernorm"
            or names[-1] != "dense" or any(t != "transformer" for t in names[2:-2])):
        raise DdtrainTorchError(f"its model is not {shape} (it has: {', '.join(names)})")
    emb, pos, ln, head = types[0][1], types[1][1], types[-2][1], types[-1][1]
    for key in ("vocab", "dim"):
        if not isinstance(emb.get(key), int):
            raise DdtrainTorchError(f"model.layers[0] (embedding) has no integer {key}")
    V, D = emb["vocab"], emb["dim"]
    context = pos.get("context")     # None: the input's T (load() takes it from the table's shape)
    if context is not None and not isinstance(context, int):
        raise DdtrainTorchError(f"model.layers[1] (positional) has context {context!r}, not an integer")
    out = dict(vocab=V, dim=D, context=context, blocks=[], ln_f_eps=float(ln.get("eps", 1e-5)))
    at = 2
    for i in range(nblocks):
        b = types[2 + i][1]
        heads = b.get("heads")
        if not isinstance(heads, int) or heads <= 0 or D % heads:
            raise DdtrainTorchError(f"model.layers[{2 + i}] (transformer): heads {heads!r} does not divide dim {D}")
        p = float(b.get("dropout", 0))
        drop = 1 if p > 0 else 0
        # residual, layernorm, attention, [dropout], residual_end, residual, layernorm, dense, gelu, dense,
        # [dropout], residual_end (src/config/config.c, expand_block)
        blk = dict(heads=heads, mlp=int(b.get("mlp", 4)), dropout=p, causal=bool(b.get("causal", True)),
                   bias=bool(b.get("bias", True)), eps=(1e-5, 1e-5),
                   ln_1=at + 1, attn=at + 2, ln_2=at + 5 + drop, c_fc=at + 6 + drop, c_proj=at + 8 + drop)
        out["blocks"].append(blk)
        at += 10 + 2 * drop
    out["ln_f"], out["head"], out["nlayers"] = at, at + 1, at + 2
    tie = head.get("tie")
    if tie not in (None, "embedding"):
        raise DdtrainTorchError(f"model.layers[{n - 1}] (dense): tie {tie!r} is not supported")
    out["tied"] = tie == "embedding"
    if not out["tied"] and head.get("units") != V:
        raise DdtrainTorchError(f"model.layers[{n - 1}] (dense) has units {head.get('units')!r}, "
                                f"not the vocabulary {V}")
    out["lm_head_bias"] = bool(head.get("bias", True))
    return out


def _tensors(f, i, want_type):
    g = f.get(f"params/layer{i}")
    if g is None:
        raise DdtrainTorchError(f"has no /params/layer{i} ({want_type}) that the config's GPT implies")
    got = _text(g.attrs.get("type", b"?"))
    if got != want_type:
        raise DdtrainTorchError(f"/params/layer{i} is a {got} layer, the config's GPT has a {want_type} there")
    return g


def _copy(g, name, param, strict_names):
    strict_names.add(name)
    if name not in g:
        raise DdtrainTorchError(f"has no {g.name}/{name} (shape {'x'.join(map(str, param.shape))})")
    a = g[name][()]
    if tuple(a.shape) != tuple(param.shape):
        raise DdtrainTorchError(f"{g.name}/{name} has shape {'x'.join(map(str, a.shape))}, the GPT expects "
                                f"{'x'.join(map(str, param.shape))}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(a)).to(param.dtype))


def _open(path):
    if not os.path.isfile(path):
        raise DdtrainTorchError("no such file" if not os.path.exists(path) else "is not a regular file")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise DdtrainTorchError("is not an HDF5 file (or cannot be read)") from None


def load(path, dtype=torch.float32):
    """(model, config): the checkpoint's GPT as a GPT module in eval mode (values converted to dtype), and
    its hyperparameters as structure() returns them, plus `config` (the stored config as a dict), `text`
    (its YAML) and `step` (optimizer steps taken)."""
    with _open(path) as f:
        if _text(f.attrs.get("format", "")) != "ddtrain-checkpoint":
            raise DdtrainTorchError('is not a ddtrain checkpoint (no format = "ddtrain-checkpoint" attribute)')
        if "config" not in f.attrs:
            raise DdtrainTorchError("has no stored config (root attribute config)")
        text = _text(f.attrs["config"])
        cfg = structure(text)
        if int(f.attrs.get("nlayers", -1)) != cfg["nlayers"]:
            raise DdtrainTorchError(f"has {int(f.attrs.get('nlayers', -1))} layers, its config's GPT expands to "
                                    f"{cfg['nlayers']}")
        tied = [t for t in _text(f.attrs.get("tied", "")).split(";") if t]
        want = [f"layer{cfg['head']}/weight=layer0/weight"] if cfg["tied"] else []
        if tied != want:
            raise DdtrainTorchError(f"has tied = {';'.join(tied)!r}, the config's GPT implies {';'.join(want)!r}")
        if cfg["context"] is None:
            cfg["context"] = int(_tensors(f, 1, "positional")["weight"].shape[0])
        model = GPT(cfg).to(dtype)
        t = model.transformer
        seen = {}

        def take(i, kind, pairs):
            g = _tensors(f, i, kind)
            names = seen.setdefault(i, set())
            for name, param in pairs:
                if param is not None:
                    _copy(g, name, param, names)
            extra = sorted(set(g) - names)
            if extra:
                raise DdtrainTorchError(f"{g.name} has {', '.join(extra)}, which the config's GPT does not have")

        take(0, "embedding", [("weight", t.wte.weight)])
        take(1, "positional", [("weight", t.wpe.weight)])
        for b, blk in zip(cfg["blocks"], t.h):
            take(b["ln_1"], "layernorm", [("weight", blk.ln_1.weight), ("bias", blk.ln_1.bias)])
            take(b["attn"], "attention", [("qkv_weight", blk.attn.c_attn.weight), ("qkv_bias", blk.attn.c_attn.bias),
                                          ("proj_weight", blk.attn.c_proj.weight),
                                          ("proj_bias", blk.attn.c_proj.bias)])
            take(b["ln_2"], "layernorm", [("weight", blk.ln_2.weight), ("bias", blk.ln_2.bias)])
            take(b["c_fc"], "dense", [("weight", blk.mlp.c_fc.weight), ("bias", blk.mlp.c_fc.bias)])
            take(b["c_proj"], "dense", [("weight", blk.mlp.c_proj.weight), ("bias", blk.mlp.c_proj.bias)])
        take(cfg["ln_f"], "layernorm", [("weight", t.ln_f.weight), ("bias", t.ln_f.bias)])
        take(cfg["head"], "dense", [("weight", None if cfg["tied"] else model.lm_head.weight),
                                    ("bias", model.lm_head.bias)])
        stray = sorted(set(f["params"]) - {f"layer{i}" for i in seen})
        if stray:
            raise DdtrainTorchError(f"has /params/{stray[0]}, which the config's GPT does not have")
        cfg.update(config=yaml.safe_load(text), text=text, step=int(f.attrs.get("step", 0)))
    model.eval()
    return model, cfg


def mean_loss(model, path, batch=64):
    """(mean cross-entropy over every target >= 0 of the data file's x/y, targets counted), in eval mode"""
    with _open(path) as f:
        if "x" not in f or "y" not in f:
            raise DdtrainTorchError("no x and y datasets (make it with ddtrain data text)")
        x, y = f["x"][()], f["y"][()]
        if "lengths" in f and not all(b.attn.causal for b in model.transformer.h):
            # causal attention never looks past a valid step, so padding at the end changes no valid
            # step's output; a non-causal block would need ddtrain's key padding mask
            raise DdtrainTorchError("has /lengths and the model has non-causal attention: not supported")
    if x.ndim != 2 or y.shape != x.shape:
        raise DdtrainTorchError(f"x {x.shape} and y {y.shape} are not int ids [N, T] of the same shape")
    V = model.transformer.wte.num_embeddings
    if x.min() < 0 or x.max() >= V or y.max() >= V:
        raise DdtrainTorchError(f"token ids outside the model's vocabulary 0..{V - 1}")
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = torch.from_numpy(x[s:s + batch].astype(np.int64))
            yb = torch.from_numpy(y[s:s + batch].astype(np.int64))
            _, loss = model(xb, yb)
            n = int((yb >= 0).sum())
            total += float(loss) * n
            count += n
    return total / count, count


def main(argv=None):
    ap = argparse.ArgumentParser(description="Load a ddtrain GPT checkpoint into PyTorch (GPT-2 / nanoGPT names).")
    ap.add_argument("checkpoint")
    ap.add_argument("--data", help="a data file (x, y int ids [N, T]): print the mean cross-entropy on it")
    ap.add_argument("--float64", action="store_true", help="compute in float64 (default float32, as ddtrain)")
    a = ap.parse_args(argv)
    what = a.checkpoint
    try:
        model, cfg = load(a.checkpoint, torch.float64 if a.float64 else torch.float32)
        print(model)
        nparams = sum(p.numel() for p in model.parameters())
        print(f"{len(cfg['blocks'])} blocks, vocab {cfg['vocab']}, dim {cfg['dim']}, context {cfg['context']}, "
              f"lm_head {'tied to wte' if cfg['tied'] else 'untied'}"
              f"{' with a bias' if cfg['lm_head_bias'] else ''}; {nparams} parameters; step {cfg['step']}")
        if a.data:
            what = a.data
            loss, count = mean_loss(model, a.data)
            print(f"loss {loss:.6f} over {count} targets of {a.data}")
    except DdtrainTorchError as e:
        print(f"ddtrain_torch: error: {what}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
