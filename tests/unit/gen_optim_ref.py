#!/usr/bin/python3
"""Reference values for tests/unit/test_optim.c and test_schedule.c, computed with PyTorch.

Regenerate (torch 1.13 from Debian's python3-torch):
    /usr/bin/python3 tests/unit/gen_optim_ref.py > tests/unit/optim_ref.h && clang-format -i tests/unit/optim_ref.h

Optimizers: every case runs REF_STEPS updates of REF_N float32 parameters with
known gradients (multiplied by REF_GRAD_SCALE, as the trainer's 1/count) and a
learning rate that changes every step (lr * REF_LR_FACTOR[t], as a schedule
does); the header holds the parameters after every step. Config keys the case
does not set are PyTorch's defaults, so the test also checks ddtrain's defaults.

Schedules: the LR before each of SCHED_STEPS optimizer steps, SCHED_SPE steps
per epoch, for a run of SCHED_EPOCHS epochs, from torch.optim.lr_scheduler:
the main scheduler stepped once per step or per epoch (schedule.unit), times
LinearLR's factor stepped once per step for warmup (what ChainedScheduler does
when both step per step).
"""
import math
import warnings

import torch

warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float32)

REF_N, REF_STEPS = 6, 5
REF_GRAD_SCALE = 0.25
REF_LR_FACTOR = [1.0, 0.5, 1.5, 1.0, 0.25]
P0 = [0.5, -1.2, 2.0, 0.0, -0.3, 1.5]


def grads(t):
    g = [math.sin(1.3 * i + 0.7 * t + 0.4) * (1.0 + 0.5 * t) for i in range(REF_N)]
    if t == 2:
        g[1] = 0.0  # a zero gradient entry
    return torch.tensor(g, dtype=torch.float32)


G = [grads(t) for t in range(REF_STEPS)]


def decay_then(opt_cls, wd, **kw):
    """Decoupled weight decay p <- p (1 - lr wd) before an optimizer without decay."""

    def make(params):
        inner = opt_cls(params, **kw)
        orig = inner.step

        def step():
            with torch.no_grad():
                for p in params:
                    p.mul_(1 - inner.param_groups[0]["lr"] * wd)
            orig()

        inner.step = step
        return inner

    return make


O = torch.optim
# (name, optim YAML as ddtrain reads it, constructor of the PyTorch equivalent)
OPT_CASES = [
    ("sgd", "{name: sgd, lr: 0.1}", lambda p: O.SGD(p, lr=0.1)),
    ("sgd_defaults", "{name: sgd}", lambda p: O.SGD(p, lr=0.01)),
    ("sgd_momentum_dampening_l2", "{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.3, weight_decay: 0.01}",
     lambda p: O.SGD(p, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd_nesterov_l2", "{name: sgd, lr: 0.05, momentum: 0.8, nesterov: true, weight_decay: 0.02}",
     lambda p: O.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    ("sgd_decoupled", "{name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.05, decoupled_weight_decay: true}",
     lambda p: decay_then(O.SGD, 0.05, lr=0.1, momentum=0.9)(p)),
    ("adam_defaults", "{name: adam}", lambda p: O.Adam(p)),
    ("adam", "{name: adam, lr: 0.01}", lambda p: O.Adam(p, lr=0.01)),
    ("adam_l2_amsgrad", "{name: adam, lr: 0.01, betas: [0.8, 0.95], eps: 1e-6, weight_decay: 0.1, amsgrad: true}",
     lambda p: O.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, amsgrad=True)),
    ("adam_decoupled", "{name: adam, lr: 0.01, weight_decay: 0.1, decoupled_weight_decay: true}",
     lambda p: O.AdamW(p, lr=0.01, weight_decay=0.1)),
    ("adamw_defaults", "{name: adamw, lr: 0.01}", lambda p: O.AdamW(p, lr=0.01)),
    ("adamw_amsgrad", "{name: adamw, lr: 0.02, betas: [0.5, 0.9], weight_decay: 0.3, amsgrad: true}",
     lambda p: O.AdamW(p, lr=0.02, betas=(0.5, 0.9), weight_decay=0.3, amsgrad=True)),
    ("rmsprop_defaults", "{name: rmsprop}", lambda p: O.RMSprop(p)),
    ("rmsprop_momentum", "{name: rmsprop, lr: 0.01, momentum: 0.9}", lambda p: O.RMSprop(p, lr=0.01, momentum=0.9)),
    ("rmsprop_centered", "{name: rmsprop, lr: 0.005, centered: true}",
     lambda p: O.RMSprop(p, lr=0.005, centered=True)),
    ("rmsprop_centered_momentum_l2",
     "{name: rmsprop, lr: 0.01, alpha: 0.9, eps: 1e-6, momentum: 0.5, centered: true, weight_decay: 0.05}",
     lambda p: O.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.05)),
    ("rmsprop_decoupled", "{name: rmsprop, lr: 0.01, weight_decay: 0.2, decoupled_weight_decay: true}",
     lambda p: decay_then(O.RMSprop, 0.2, lr=0.01)(p)),
    ("adagrad_defaults", "{name: adagrad}", lambda p: O.Adagrad(p)),
    ("adagrad_full", "{name: adagrad, lr: 0.1, lr_decay: 0.05, initial_accumulator_value: 0.2, eps: 1e-8, "
     "weight_decay: 0.01}",
     lambda p: O.Adagrad(p, lr=0.1, lr_decay=0.05, initial_accumulator_value=0.2, eps=1e-8, weight_decay=0.01)),
    ("adagrad_decoupled", "{name: adagrad, lr: 0.1, weight_decay: 0.1, decoupled_weight_decay: true}",
     lambda p: decay_then(O.Adagrad, 0.1, lr=0.1)(p)),
]


def run_optim(make):
    p = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float32))
    opt = make([p])
    base = opt.param_groups[0]["lr"]
    out = []
    for t in range(REF_STEPS):
        opt.param_groups[0]["lr"] = base * REF_LR_FACTOR[t]
        p.grad = G[t] * torch.tensor(REF_GRAD_SCALE, dtype=torch.float32)
        opt.step()
        out.append(p.detach().clone().tolist())
    return base, out


# Parameter groups (optim.decay: weights): entries [1, 3) and [5, 6) of the arena
# are not weight matrices and take weight_decay 0, as torch.optim param groups
# [{params: decaying}, {params: the others, weight_decay: 0}].
NO_DECAY = [(1, 2), (5, 1)]
GROUP_CASES = [
    ("adamw_groups", "{name: adamw, lr: 0.01, weight_decay: 0.3, decay: weights}",
     lambda d, n: O.AdamW([{"params": d}, {"params": n, "weight_decay": 0.0}], lr=0.01, weight_decay=0.3)),
    ("sgd_l2_groups", "{name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.05, decay: weights}",
     lambda d, n: O.SGD([{"params": d}, {"params": n, "weight_decay": 0.0}], lr=0.1, momentum=0.9,
                        weight_decay=0.05)),
]


def run_groups(make):
    """The arena split into the runs NO_DECAY defines, one parameter each."""
    cuts, pos = [], 0
    for off, size in NO_DECAY:
        if off > pos:
            cuts.append((pos, off, True))
        cuts.append((off, off + size, False))
        pos = off + size
    if pos < REF_N:
        cuts.append((pos, REF_N, True))
    ps = [torch.nn.Parameter(torch.tensor(P0[a:b], dtype=torch.float32)) for a, b, _ in cuts]
    opt = make([p for p, c in zip(ps, cuts) if c[2]], [p for p, c in zip(ps, cuts) if not c[2]])
    bases = [g["lr"] for g in opt.param_groups]
    out = []
    for t in range(REF_STEPS):
        for g, base in zip(opt.param_groups, bases):
            g["lr"] = base * REF_LR_FACTOR[t]
        for p, (a, b, _) in zip(ps, cuts):
            p.grad = G[t][a:b] * torch.tensor(REF_GRAD_SCALE, dtype=torch.float32)
        opt.step()
        out.append(torch.cat([p.detach() for p in ps]).tolist())
    return bases[0], out


SCHED_STEPS, SCHED_SPE, SCHED_EPOCHS = 200, 10, 20
S = torch.optim.lr_scheduler
# (name, YAML sections, global batch, base lr after the linear scaling rule,
#  unit, main scheduler constructor, warmup steps, warmup start factor)
SCHED_CASES = [
    ("constant", "optim: {lr: 0.1}", 32, 0.1, "steps", None, 0, 0),
    ("step_epochs", "optim: {lr: 0.1}\nschedule: {name: step, unit: epochs, step_size: 3, gamma: 0.5}", 32, 0.1,
     "epochs", lambda o: S.StepLR(o, step_size=3, gamma=0.5), 0, 0),
    ("step_steps_default_gamma", "optim: {lr: 0.1}\nschedule: {name: step, unit: steps, step_size: 7}", 32, 0.1,
     "steps", lambda o: S.StepLR(o, step_size=7), 0, 0),
    ("multistep_epochs", "optim: {lr: 0.1}\nschedule: {name: multistep, unit: epochs, milestones: [2, 5, 9], "
     "gamma: 0.3}", 32, 0.1, "epochs", lambda o: S.MultiStepLR(o, milestones=[2, 5, 9], gamma=0.3), 0, 0),
    ("exponential_steps", "optim: {lr: 0.1}\nschedule: {name: exponential, unit: steps, gamma: 0.97}", 32, 0.1,
     "steps", lambda o: S.ExponentialLR(o, gamma=0.97), 0, 0),
    ("cosine_steps", "optim: {lr: 0.1}\nschedule: {name: cosine, unit: steps, t_max: 150, eta_min: 0.001}", 32, 0.1,
     "steps", lambda o: S.CosineAnnealingLR(o, T_max=150, eta_min=0.001), 0, 0),
    ("cosine_epochs_run_length", "optim: {lr: 0.1}\nschedule: {name: cosine, unit: epochs}", 32, 0.1, "epochs",
     lambda o: S.CosineAnnealingLR(o, T_max=SCHED_EPOCHS), 0, 0),
    ("polynomial_steps", "optim: {lr: 0.1}\nschedule: {name: polynomial, unit: steps, total: 120, power: 2}", 32, 0.1,
     "steps", lambda o: S.PolynomialLR(o, total_iters=120, power=2.0), 0, 0),
    ("onecycle_scaled", "optim: {lr: 0.1, ref_batch_size: 256}\nschedule: {name: onecycle, unit: steps}", 512, 0.2,
     "steps", lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=SCHED_STEPS, cycle_momentum=False), 0, 0),
    ("onecycle_custom", "optim: {lr: 0.1}\nschedule: {name: onecycle, unit: steps, total: 180, pct_start: 0.25, "
     "div_factor: 10, final_div_factor: 100}", 32, 0.1, "steps",
     lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=180, pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
                            cycle_momentum=False), 0, 0),
    ("warmup_cosine_steps", "optim: {lr: 0.1}\nschedule: {name: cosine, unit: steps, warmup_steps: 25}", 32, 0.1,
     "steps", lambda o: S.CosineAnnealingLR(o, T_max=SCHED_STEPS), 25, 1.0 / 3.0),
    ("warmup_epochs_multistep_scaled", "optim: {lr: 0.1, ref_batch_size: 64}\nschedule: {name: multistep, "
     "unit: epochs, milestones: [3, 6], warmup_epochs: 1.5, warmup_start_factor: 0.1}", 256, 0.4, "epochs",
     lambda o: S.MultiStepLR(o, milestones=[3, 6], gamma=0.1), 15, 0.1),
    ("warmup_constant", "optim: {lr: 0.1}\nschedule: {warmup_steps: 10, warmup_start_factor: 0.5}", 32, 0.1, "steps",
     None, 10, 0.5),
]


# Past its end ddtrain holds the last value where PyTorch would climb back up
# (CosineAnnealingLR after T_max) or raise (OneCycleLR after total_steps).
HOLD_AFTER = {"cosine_steps": 150, "onecycle_custom": 179}


def lr_sequence(base, make, n, hold=None):
    """LR before each of n scheduler steps (after k calls of scheduler.step())."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sch = make(opt) if make else None
    out = []
    for k in range(n):
        out.append(opt.param_groups[0]["lr"] if hold is None or k <= hold else out[hold])
        opt.step()
        if sch and (hold is None or k < hold):
            sch.step()
    return out


def run_sched(base, unit, make, warm, start, hold=None):
    n = SCHED_STEPS if unit == "steps" else SCHED_EPOCHS
    main = lr_sequence(base, make, n, hold)
    wf = lr_sequence(1.0, (lambda o: S.LinearLR(o, start_factor=start, total_iters=warm)) if warm else None,
                     SCHED_STEPS)
    out = []
    for s in range(SCHED_STEPS):
        t = s if unit == "steps" else s // SCHED_SPE
        out.append(main[t] * wf[s])
    return out


def check_chained():
    """The product above is what ChainedScheduler gives when both step per step."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ch = S.ChainedScheduler([S.LinearLR(opt, start_factor=1.0 / 3.0, total_iters=25),
                             S.CosineAnnealingLR(opt, T_max=SCHED_STEPS)])
    ref = run_sched(0.1, "steps", lambda o: S.CosineAnnealingLR(o, T_max=SCHED_STEPS), 25, 1.0 / 3.0)
    for s in range(SCHED_STEPS):
        assert abs(opt.param_groups[0]["lr"] - ref[s]) <= 1e-12, (s, opt.param_groups[0]["lr"], ref[s])
        opt.step()
        ch.step()


def cfloat(x):
    s = "%.9g" % x
    return s + ("f" if any(c in s for c in ".e") else ".0f")


def floats(xs):
    return ", ".join(cfloat(x) for x in xs)


def doubles(xs, per_line=5, indent="      "):
    rows = [", ".join("%.17g" % x for x in xs[i:i + per_line]) for i in range(0, len(xs), per_line)]
    return (",\n" + indent).join(rows)


def main():
    check_chained()
    print("/* Reference values from PyTorch %s. Generated by:" % torch.__version__)
    print(" *   /usr/bin/python3 tests/unit/gen_optim_ref.py > tests/unit/optim_ref.h && clang-format -i "
          "tests/unit/optim_ref.h")
    print(" * Do not edit; see the script for what the numbers are. */")
    print("#ifndef DDTRAIN_TEST_OPTIM_REF_H\n#define DDTRAIN_TEST_OPTIM_REF_H\n")
    print("#define REF_N %d\n#define REF_STEPS %d" % (REF_N, REF_STEPS))
    print("static const float ref_p0[REF_N] = {%s};" % floats(P0))
    print("static const float ref_grads[REF_STEPS][REF_N] = {")
    for g in G:
        print("    {%s}," % floats(g.tolist()))
    print("};")
    print("static const float ref_grad_scale = %s;" % cfloat(REF_GRAD_SCALE))
    print("static const double ref_lr_factor[REF_STEPS] = {%s};\n" % doubles(REF_LR_FACTOR))
    print("typedef struct optim_ref {\n  const char *name;\n  const char *yaml; /* the optim section */\n"
          "  double lr;         /* base lr (PyTorch's default where the YAML has none) */\n"
          "  float p[REF_STEPS][REF_N]; /* parameters after each step */\n} optim_ref;\n")
    print("static const optim_ref optim_refs[] = {")
    for name, yaml, make in OPT_CASES:
        base, out = run_optim(make)
        print('    {"%s",\n     "%s",\n     %.17g,\n     {' % (name, yaml, base))
        for row in out:
            print("      {%s}," % floats(row))
        print("     }},")
    print("};\n")
    print("/* parameter groups: runs of the arena without weight decay (offset, size) */")
    print("static const int64_t ref_no_decay[][2] = {%s};" % ", ".join("{%d, %d}" % r for r in NO_DECAY))
    print("static const optim_ref group_refs[] = {")
    for name, yaml, make in GROUP_CASES:
        base, out = run_groups(make)
        print('    {"%s",\n     "%s",\n     %.17g,\n     {' % (name, yaml, base))
        for row in out:
            print("      {%s}," % floats(row))
        print("     }},")
    print("};\n")
    print("#define SCHED_STEPS %d\n#define SCHED_SPE %d\n#define SCHED_EPOCHS %d" %
          (SCHED_STEPS, SCHED_SPE, SCHED_EPOCHS))
    print("typedef struct sched_ref {\n  const char *name;\n  const char *yaml; /* optim and schedule sections */\n"
          "  long long batch;   /* train.batch_size */\n"
          "  double lr[SCHED_STEPS]; /* LR of step s (epoch s / SCHED_SPE) */\n} sched_ref;\n")
    print("static const sched_ref sched_refs[] = {")
    for name, yaml, batch, base, unit, make, warm, start in SCHED_CASES:
        out = run_sched(base, unit, make, warm, start, HOLD_AFTER.get(name))
        print('    {"%s",\n     "%s",\n     %d,\n     {%s}},' % (name, yaml.replace("\n", "\\n"), batch,
                                                                  doubles(out)))
    print("};\n\n#endif")


if __name__ == "__main__":
    main()
