"""The Triton activation kernel against the torch interpreter, on CPU through TRITON_INTERPRET=1.

The interpreter flag must be set before triton is imported, so each check runs in a fresh process.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_kernel_matches_torch_interpreter_on_every_supported_op_and_random_programs():
    out = _run("""
        import torch
        from gpact.train.interpreters import Interpreter
        from gpact.report.bench import candidate_mix
        from gpact.expr.grammar import load_grammar
        from gpact.train.kernels.triton_act import SUPPORTED, TritonInterpreter
        from gpact import ops
        from gpact.train.program import CONST, Instr, Program, lower

        progs = []
        for name in sorted(SUPPORTED - {"nop"}):
            op = ops.opcode(name)
            if ops.TABLE[op].arity == 2:  # x op (x*0.7 + 0.3), both operands registers
                mul, add = ops.opcode("mul"), ops.opcode("add")
                progs.append(Program((Instr(mul, 1, 0, CONST, 0.7), Instr(add, 2, 1, CONST, 0.3), Instr(op, 3, 0, 2)),
                                     3, 3))
            else:
                progs.append(Program((Instr(op, 1, 0, 0, 3.0 if name == "powi" else 0.5),), 1, 1))
        g = load_grammar("full")
        progs += [lower(e, g) for _, e in candidate_mix(g, 40, seed=2)]
        z = torch.linspace(-4.5, 4.5, 300).repeat(len(progs), 1)
        z[:, ::7] = 0.0  # kinks
        v1, d1 = Interpreter(progs)(z)
        v2, d2 = TritonInterpreter(progs, "cpu")(z)
        bad = []
        for i, p in enumerate(progs):
            ok_v = torch.allclose(v2[i], v1[i], rtol=2e-5, atol=2e-5, equal_nan=True)
            ok_d = torch.allclose(d2[i], d1[i], rtol=2e-4, atol=2e-4, equal_nan=True)
            if not (ok_v and ok_d):
                bad.append(str(p))
        print(len(progs), "BAD", bad)
    """)
    n, rest = out.split(" BAD ")
    assert int(n) >= 70 and rest.strip() == "[]", out


def test_training_with_the_kernel_matches_the_torch_backend():
    out = _run("""
        from gpact.train.batched import train_batched
        from gpact.expr.trees import formula_to_sympy
        from gpact.expr.grammar import load_grammar
        from gpact.config import TrainConfig
        from gpact.train.program import lower
        from gpact.train.tasks import make_suite

        g = load_grammar("full")
        progs = [lower(formula_to_sympy(t, g), g) for t in ["gelu(x) + 0.1*sin(x)", "relu(x)", "exp(x*60)*x"]]
        tasks = make_suite("poly_cubic", n_train=16, n_ood=16)
        cfg = TrainConfig(width=4, depth=2, steps=6)
        a = train_batched(progs, tasks, [0], cfg, "cpu", kernel="torch")
        b = train_batched(progs, tasks, [0], cfg, "cpu", kernel="triton")
        for x, y in zip(a, b):
            print(x[0].diverged, y[0].diverged, x[0].ood_loss, y[0].ood_loss)
    """)
    rows = [line.split() for line in out.strip().splitlines()]
    assert len(rows) == 3
    for da, db, la, lb in rows:
        assert da == db
        assert abs(float(la) - float(lb)) <= 1e-4 * max(1.0, abs(float(la)))
    assert rows[2][0] == "True"  # exp(60x) overflows: worst, on both backends


def test_forcing_the_kernel_without_cuda_is_a_clear_error():
    from gpact.errors import ConfigError
    from gpact.train.interpreters import make_interpreter

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter mode runs the kernel on CPU")
    import torch

    with pytest.raises(ConfigError, match="triton"):
        make_interpreter([], torch.device("cpu"), kernel="triton")
