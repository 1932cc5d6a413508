"""Real architectures, small enough to train a few steps in seconds, and a
helper that records their training with watch().

- the lecture's MLP as plain torch.nn (Embedding, Linear, BatchNorm1d, Tanh),
- a GPT of the nanoGPT kind (LayerNorm, GELU, causal attention through
  F.scaled_dot_product_attention, tied embeddings, AdamW),
- a small CNN (Conv2d, BatchNorm2d, ReLU, MaxPool).
tools/bench_watch.py times the GPT from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from traintop import watch


# ----- the lecture's MLP ---------------------------------------------------------
def lecture_mlp(vocab: int = 27, block: int = 3, emb: int = 10, hidden: int = 64,
                layers: int = 5) -> nn.Module:
    mods: list[nn.Module] = [nn.Embedding(vocab, emb), nn.Flatten()]
    width = block * emb
    for _ in range(layers):
        mods += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.Tanh()]
        width = hidden
    mods += [nn.Linear(width, vocab)]
    model = nn.Sequential(*mods)
    with torch.no_grad():
        model[-1].weight *= 0.1      # the lecture's less confident output layer
    return model


def lecture_batch(g: torch.Generator, batch: int = 32, vocab: int = 27, block: int = 3):
    x = torch.randint(0, vocab, (batch, block), generator=g)
    return x, (x.sum(1) * 7) % vocab                        # a learnable rule


# ----- a GPT of the nanoGPT kind ---------------------------------------------------
@dataclass
class GPTConfig:
    block_size: int = 32     # context length
    vocab_size: int = 65     # characters
    n_layer: int = 6
    n_head: int = 4
    n_embd: int = 64


class SelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))                                   # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd)))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight          # tied embeddings
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, targets):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)       # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))                # (B, T, vocab)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def gpt_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def gpt_batch(g: torch.Generator, cfg: GPTConfig, batch: int = 8):
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), generator=g)
    return x[:, :-1], (x[:, :-1] + 1) % cfg.vocab_size              # next = this + 1


# ----- a small CNN -------------------------------------------------------------------
def small_cnn(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, classes))


def cnn_batch(g: torch.Generator, batch: int = 32, classes: int = 10):
    x = torch.randn(batch, 1, 16, 16, generator=g)
    return x, torch.randint(0, classes, (batch,), generator=g)


# ----- recording ---------------------------------------------------------------------
def record(kind: str, path: Path, steps: int = 12, every: int = 3, layers: int = 6) -> Path:
    """Train `kind` ("mlp", "gpt", "cnn") for `steps` steps under watch()."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "gpt":
        cfg = GPTConfig(n_layer=layers)
        model, opt = GPT(cfg), None
        opt = gpt_optimizer(model)
        batch = lambda: gpt_batch(g, cfg)                     # noqa: E731
        loss_of = lambda x, y: model(x, y)                     # noqa: E731
    elif kind == "cnn":
        model = small_cnn()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        batch = lambda: cnn_batch(g)                           # noqa: E731
        loss_of = lambda x, y: F.cross_entropy(model(x), y)    # noqa: E731
    else:
        model = lecture_mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        batch = lambda: lecture_batch(g)                       # noqa: E731
        loss_of = lambda x, y: F.cross_entropy(model(x), y)    # noqa: E731
    with watch(model, path, optimizer=opt, every=every) as w:
        for _ in range(steps):
            x, y = batch()
            loss = loss_of(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            w.step(loss)
    return path
