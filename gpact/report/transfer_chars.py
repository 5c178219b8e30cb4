"""`--task chars`: a character-level GPT-2 on the standard library's docstrings, tested on other modules.

The corpus is the documentation strings of the top-level modules of the running Python's standard library,
read with `ast` (nothing is imported or run). Modules are split by a hash of their name: about three in four
train, the rest are the OOD test (text about other subjects, in other authors' style). The last tenth of the
training text is held out as the ID test. The model is transformers' GPT2LMHeadModel from a small config
(random weights) with each MLP's activation replaced by the formula; without transformers, a minimal
pre-norm causal transformer of the same shape in torch. Reported: held-out bits per character.
"""

from __future__ import annotations

import ast
import math
import sys
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gpact.errors import ConfigError
from gpact.report.shift import Act, ActModule, ShiftTask

VOCAB = 97  # printable ASCII and newline (96), then one symbol for every other character


@dataclass(frozen=True)
class CharsConfig:
    width: int = 32  # embedding width (heads of 16)
    layers: int = 2
    context: int = 32  # characters per training window (and per test window)
    steps: int = 150  # Adam steps
    batch: int = 32
    lr: float = 3e-3
    train_chars: int = 100_000  # at most this much training text (ID test included)
    test_chars: int = 8_192  # characters scored per test split
    model: str = "auto"  # "auto": transformers' GPT-2 when installed, else "minimal"


@dataclass(frozen=True)
class CharsData:
    train: torch.Tensor  # symbol ids
    id_test: torch.Tensor
    ood_test: torch.Tensor
    modules: tuple[int, int]  # training modules, test modules


def encode(text: str) -> torch.Tensor:
    """Symbol ids: printable ASCII 32..126 -> 0..94, newline -> 95, anything else -> 96."""
    ids = [c - 32 if 32 <= c <= 126 else 95 if c == 10 else 96 for c in text.encode("utf-8", "replace")]
    return torch.tensor(ids, dtype=torch.long)


def docstrings(path: Path) -> str:
    """Every docstring of a module (module, classes, functions) in file order; '' if it does not parse."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return ""
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return "\n\n".join(d for n in nodes if (d := ast.get_docstring(n)))


def is_test_module(name: str) -> bool:
    return zlib.crc32(name.encode()) % 4 == 0


def prepare(cfg: CharsConfig) -> CharsData:
    if cfg.model not in ("auto", "gpt2", "minimal"):
        raise ConfigError(f"unknown model {cfg.model!r} (auto, gpt2 or minimal)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, test, counts = [], [], [0, 0]
    for path in sorted(stdlib.glob("*.py")):
        if sum(map(len, train)) >= cfg.train_chars and sum(map(len, test)) >= cfg.test_chars:
            break  # enough text: stop reading (the modules come in name order, so the cut is the same)
        text = docstrings(path)
        if text:
            held = is_test_module(path.stem)
            (test if held else train).append(text)
            counts[held] += 1
    train_ids = encode("\n\n".join(train))[:cfg.train_chars]
    cut = int(0.9 * len(train_ids))
    return CharsData(train_ids[:cut], train_ids[cut:][:cfg.test_chars], encode("\n\n".join(test))[:cfg.test_chars],
                     (counts[0], counts[1]))


class MinimalGPT(nn.Module):
    """Token and position embeddings, pre-norm causal transformer blocks (MLP width 4x, the formula inside),
    a final norm and a linear head: GPT-2's shape without transformers."""

    def __init__(self, cfg: CharsConfig, act: Act):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, cfg.width), nn.Embedding(cfg.context, cfg.width)
        layer = nn.TransformerEncoderLayer(cfg.width, max(1, cfg.width // 16), 4 * cfg.width, dropout=0.0,
                                           activation=act, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(cfg.width), nn.Linear(cfg.width, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=ids.device)
        h = self.tok(ids) + self.pos(torch.arange(n, device=ids.device))
        return self.head(self.norm(self.blocks(h, mask=mask, is_causal=True)))


class _HFGPT2(nn.Module):
    def __init__(self, cfg: CharsConfig, act: Act):
        super().__init__()
        import transformers

        config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=cfg.context, n_embd=cfg.width,
                                         n_layer=cfg.layers, n_head=max(1, cfg.width // 16), resid_pdrop=0.0,
                                         embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
        self.gpt = transformers.GPT2LMHeadModel(config)
        for block in self.gpt.transformer.h:
            block.mlp.act = ActModule(act)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.gpt(ids).logits


def model_kind(cfg: CharsConfig) -> str:
    if cfg.model != "auto":
        return cfg.model
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "minimal"
    return "gpt2"


def build_model(cfg: CharsConfig, act: Act) -> nn.Module:
    kind = model_kind(cfg)
    return _HFGPT2(cfg, act) if kind == "gpt2" else MinimalGPT(cfg, act)


def train_eval(act: Act, data: CharsData, seed: int, cfg: CharsConfig, device: torch.device) -> tuple[float, float]:
    """(OOD bits/char, ID bits/char) after training from init `seed`; (nan, nan) if training failed."""
    torch.manual_seed(seed)
    model = build_model(cfg, act).to(device)
    gen = torch.Generator().manual_seed(seed)
    n = cfg.context
    try:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        for _ in range(cfg.steps):
            start = torch.randint(0, len(data.train) - n - 1, (cfg.batch,), generator=gen)
            window = torch.stack([data.train[s:s + n + 1] for s in start.tolist()]).to(device)
            loss = F.cross_entropy(model(window[:, :-1]).reshape(-1, VOCAB), window[:, 1:].reshape(-1))
            if not torch.isfinite(loss):
                return math.nan, math.nan
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            return _bits(model, data.ood_test, n, device), _bits(model, data.id_test, n, device)
    except Exception:  # a user formula can fail in any way: the seed counts as failed
        return math.nan, math.nan


def _bits(model: nn.Module, ids: torch.Tensor, n: int, device: torch.device) -> float:
    """Mean bits per predicted character over consecutive windows of n+1 (each predicts n)."""
    k = (len(ids) - 1) // n
    x = ids[:k * n].reshape(k, n).to(device)
    y = ids[1:k * n + 1].reshape(k, n).to(device)
    v = float(F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))) / math.log(2)
    return v if math.isfinite(v) else math.nan


def _describe(data: CharsData, cfg: CharsConfig) -> str:
    v = sys.version_info
    return (f"chars: docstrings of Python {v.major}.{v.minor}'s standard library, {data.modules[0]} modules train "
            f"({len(data.train)} chars; ID test: their last {len(data.id_test)}), {data.modules[1]} other modules "
            f"are the OOD test ({len(data.ood_test)} chars); {model_kind(cfg)} width {cfg.width}, {cfg.layers} "
            f"layers, context {cfg.context}, {cfg.steps} Adam steps of {cfg.batch} windows (lr {cfg.lr})")


CHARS = ShiftTask("chars", "bits/char", CharsConfig(), prepare, train_eval,
                  lambda d: (len(d.train), len(d.id_test), len(d.ood_test)), _describe)
