"""A user transformer: pre-norm blocks with causal self-attention and an ordinary feed-forward
block that uses nn.GELU, reading 32 bytes of Python standard-library source (afsearch's LM
corpus) and predicting the next byte. afsearch replaces its nn.GELU modules by each candidate;
the score is the validation loss (lower is better).

    afsearch search --task examples/transformer_block.py:make_task --budget 20
    afsearch search --task examples/transformer_block.py:make_task --space moa --budget 10
    afsearch search --task examples/transformer_block.py:make_task --task-option width=16 --budget 5

CustomTask hands inputs to the model as float tensors: the model turns them back into byte ids.
"""

import torch
from torch import nn
from torch.nn import functional as F

import afsearch
from afsearch.evaluate.corpus import load_corpus


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, c))
        return x + self.ffn(self.ln2(x))


class NextByteModel(nn.Module):
    def __init__(self, context: int = 32, width: int = 32, layers: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(256, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x.long()  # byte ids (CustomTask passes inputs as floats)
        h = self.tokens(idx) + self.positions(torch.arange(idx.shape[1], device=idx.device))
        return self.head(self.blocks(h)[:, -1])  # logits of the byte after the context


def _windows(stream, n: int, context: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.from_numpy(stream.astype("int64"))
    starts = torch.randperm(len(data) - context - 1, generator=torch.Generator().manual_seed(seed))[:n]
    x = torch.stack([data[s:s + context] for s in starts.tolist()])
    return x, data[starts + context]


def make_task(width: int = 32, layers: int = 2, context: int = 32, n_train: int = 4000,
              steps: int = 300) -> afsearch.CustomTask:
    corpus = load_corpus()
    return afsearch.CustomTask(
        train=_windows(corpus.train, n_train, context, 0), val=_windows(corpus.val, 1000, context, 1),
        test=_windows(corpus.test, 1000, context, 2),
        build=lambda: NextByteModel(context, width, layers), metric="loss",
        steps=steps, batch_size=64, lr=3e-3, warmup=min(30, steps // 10))
