"""The lecture's first network written out as the notebook does, as an
independent oracle for --stage: one generator, C, W1, b1, W2, b2 drawn in
that order, then a batch per step; plain tensors and autograd, no engine code."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F


def lecture_split(words: list[str], block_size: int = 3):
    """(Xtr, Ytr, Xdev, Ydev, vocab_size) as the lecture builds them:
    stoi from the sorted characters ('.' is 0), random.seed(42)'s shuffle,
    the 80% / 10% cut."""
    chars = sorted(set("".join(words)))
    stoi = {c: i + 1 for i, c in enumerate(chars)}
    stoi["."] = 0
    words = list(words)
    random.Random(42).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))

    def build(ws):
        X, Y = [], []
        for w in ws:
            context = [0] * block_size
            for ch in w + ".":
                ix = stoi[ch]
                X.append(context)
                Y.append(ix)
                context = context[1:] + [ix]
        return torch.tensor(X), torch.tensor(Y)

    Xtr, Ytr = build(words[:n1])
    Xdev, Ydev = build(words[n1:n2])
    return Xtr, Ytr, Xdev, Ydev, len(chars) + 1


def first_network(Xtr, Ytr, vocab_size: int, steps: int, stage: str, n_embd: int = 10,
                  n_hidden: int = 200, block_size: int = 3, batch_size: int = 32):
    """Train the lecture's first network at `stage` for `steps` steps:
    (losses per step, h of the last step, the parameters)."""
    g = torch.Generator().manual_seed(2147483647)
    fan = n_embd * block_size
    C = torch.randn((vocab_size, n_embd), generator=g)
    if stage in ("original", "fix-softmax"):
        W1 = torch.randn((fan, n_hidden), generator=g)
    elif stage == "fix-tanh":
        W1 = torch.randn((fan, n_hidden), generator=g) * 0.2
    else:
        W1 = torch.randn((fan, n_hidden), generator=g) * (5 / 3) / (fan**0.5)
    b1 = torch.randn(n_hidden, generator=g)
    if stage not in ("original", "fix-softmax"):
        b1 = b1 * 0.01
    W2 = torch.randn((n_hidden, vocab_size), generator=g)
    b2 = torch.randn(vocab_size, generator=g)
    if stage != "original":
        W2 = W2 * 0.01
        b2 = b2 * 0
    bngain = torch.ones((1, n_hidden))
    bnbias = torch.zeros((1, n_hidden))
    params = [C, W1, b1, W2, b2] + ([bngain, bnbias] if stage == "batchnorm" else [])
    for p in params:
        p.requires_grad = True
    losses = []
    h = None
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        emb = C[Xb]
        embcat = emb.view(emb.shape[0], -1)
        hpreact = embcat @ W1 + b1
        if stage == "batchnorm":
            bnmeani = hpreact.mean(0, keepdim=True)
            bnstdi = hpreact.std(0, keepdim=True)
            hpreact = bngain * (hpreact - bnmeani) / bnstdi + bnbias
        h = torch.tanh(hpreact)
        logits = h @ W2 + b2
        loss = F.cross_entropy(logits, Yb)
        for p in params:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < 100000 else 0.01
        for p in params:
            p.data += -lr * p.grad
        losses.append(loss.item())
    return losses, h.detach(), params
