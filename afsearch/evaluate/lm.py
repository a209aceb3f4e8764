"""The language-model proxy: a nanoGPT-style decoder-only transformer on bytes of a real text
corpus (`afsearch.evaluate.corpus`), whose feed-forward activation is the candidate.

Blocks are pre-norm (``x + attn(ln(x))``, ``x + ffn(ln(x))``) with causal self-attention. The
FFN is either plain, ``W2 f(W1 x)``, or gated (GLU, Shazeer 2020), ``W2 (f(W1 x) * (V x))``; the
GLU's hidden width is 2/3 of the plain one so both have the same number of weights (exactly
when the plain width is divisible by 3; FFN projections carry no bias, as in LLaMA-style
models). The model returns logits shaped (batch, vocab, time), so the trainer's
``cross_entropy(out, y)`` and ``out.argmax(1)`` work on (batch, time) targets unchanged: the
validation loss is the mean next-byte cross-entropy in nats, bits per byte = loss / ln 2."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from afsearch.errors import TaskError
from afsearch.evaluate.corpus import BLOCK, PERIOD, load_corpus, raw_bytes
from afsearch.evaluate.models import ActFactory
from afsearch.evaluate.trainer import Data, Split

VOCAB = 256  # bytes
FFN_FORMS = ("plain", "glu")


@dataclass(frozen=True)
class LMConfig:
    """Sizes of the proxy. `width` is d_model; the plain FFN's hidden width is
    `ffn_mult * width`, the GLU's 2/3 of that. `corpus_bytes` keeps only the first bytes of the
    corpus (tests); `eval_tokens` caps the validation and test sets. `corpus_sha256` is filled
    with this machine's corpus hash; given explicitly, a different corpus is refused."""

    ffn: str = "plain"  # "plain" | "glu"
    width: int = 96
    layers: int = 2
    heads: int = 4
    ffn_mult: int = 4
    seq_len: int = 64
    batch_size: int = 32
    lr: float = 0.003
    eval_tokens: int = 16384
    corpus_bytes: int | None = None
    corpus_sha256: str = ""

    def __post_init__(self) -> None:
        if self.ffn not in FFN_FORMS:
            raise TaskError(f"lm-transformer: ffn must be one of {', '.join(FFN_FORMS)}, got {self.ffn!r}")
        if self.width % self.heads:
            raise TaskError(f"lm-transformer: width {self.width} is not divisible by heads {self.heads}")
        if self.layers > 48 or self.heads > 64 or self.ffn_mult > 16 or self.seq_len > 4096:
            raise TaskError("lm-transformer: at most 48 layers, 64 heads, ffn_mult 16, seq_len 4096")

    @property
    def hidden(self) -> int:
        return ffn_hidden(self.ffn_mult * self.width, self.ffn)


def ffn_hidden(plain_hidden: int, form: str) -> int:
    """The FFN's hidden width: the plain width, or 2/3 of it (rounded) for a GLU, which has
    three weight matrices instead of two."""
    return plain_hidden if form == "plain" else max(1, round(2 * plain_hidden / 3))


# ---------------------------------------------------------------- data
def complete_config(cfg: LMConfig) -> LMConfig:
    """Fill in this machine's corpus hash; refuse a config that names another corpus."""
    import dataclasses

    digest = raw_bytes()[1]
    if cfg.corpus_sha256 and cfg.corpus_sha256 != digest:
        raise TaskError(f"lm-transformer: this machine's corpus has sha256 {digest[:16]}..., the task asks "
                        f"for {cfg.corpus_sha256[:16]}... (another Python version's standard library); "
                        "results would not be comparable")
    return dataclasses.replace(cfg, corpus_sha256=digest)


def _windows(stream: np.ndarray, seq_len: int, max_tokens: int | None = None) -> Split:
    """Non-overlapping windows: x = bytes [i, i+T), y = bytes [i+1, i+T+1)."""
    n = (len(stream) - 1) // seq_len
    if max_tokens is not None:
        n = min(n, max(1, max_tokens // seq_len))
    if n < 1:
        raise TaskError(f"lm-transformer: a corpus split has {len(stream)} bytes, fewer than one window "
                        f"of seq_len {seq_len} + 1; raise corpus_bytes (validation and test get one "
                        f"{BLOCK}-byte block in {PERIOD}: at least {PERIOD * BLOCK}) or lower seq_len")
    tokens = torch.from_numpy(stream[: n * seq_len + 1].astype(np.int64))
    x = tokens[:-1].view(n, seq_len)
    y = tokens[1:].view(n, seq_len)
    return Split(x.contiguous(), y.contiguous())


def load_lm_data(cfg: LMConfig) -> Data:
    corpus = load_corpus(cfg.corpus_bytes)
    return Data(_windows(corpus.train, cfg.seq_len), _windows(corpus.val, cfg.seq_len, cfg.eval_tokens),
                _windows(corpus.test, cfg.seq_len, cfg.eval_tokens))


# ---------------------------------------------------------------- model
class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


class FeedForward(nn.Module):
    """``W2 act(W1 x)`` (plain) or ``W2 (act(W1 x) * (V x))`` (glu); no biases."""

    def __init__(self, width: int, hidden: int, act: nn.Module, form: str = "plain") -> None:
        super().__init__()
        self.w1 = nn.Linear(width, hidden, bias=False)
        self.v = nn.Linear(width, hidden, bias=False) if form == "glu" else None
        self.act = act
        self.w2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.w1(x))
        if self.v is not None:
            h = h * self.v(x)
        return self.w2(h)


class Block(nn.Module):
    def __init__(self, cfg: LMConfig, act: nn.Module) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg.width, cfg.heads)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.ffn = FeedForward(cfg.width, cfg.hidden, act, cfg.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class ByteGPT(nn.Module):
    """Token and position embeddings, `layers` blocks, a final LayerNorm and a head tied to the
    token embedding. Input (batch, time) integer bytes; output logits (batch, vocab, time)."""

    def __init__(self, cfg: LMConfig, act: ActFactory) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, cfg.width)
        self.positions = nn.Embedding(cfg.seq_len, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg, act()) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, VOCAB, bias=False)
        self.head.weight = self.tokens.weight
        self._init_weights(cfg.layers)

    def _init_weights(self, layers: int) -> None:
        """GPT-2's: N(0, 0.02) weights, zero biases, residual output projections scaled by
        1/sqrt(2 * layers). Activation modules keep their own initial constants."""
        for name, p in self.named_parameters():
            if ".act." in name:
                continue
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tokens(idx) + self.positions(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x)).transpose(1, 2)


def build_lm(cfg: LMConfig, act: ActFactory) -> ByteGPT:
    return ByteGPT(cfg, act)


def ffn_weights(width: int, plain_hidden: int, form: str) -> int:
    """Weights of one FFN: 2 * width * hidden (plain) or 3 * width * hidden (glu)."""
    hidden = ffn_hidden(plain_hidden, form)
    return (2 if form == "plain" else 3) * width * hidden


def bits_per_byte(loss: float) -> float:
    """Mean cross-entropy in nats per byte -> bits per byte (= bits per character for ASCII)."""
    return loss / math.log(2)
