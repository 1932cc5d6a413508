"""The lecture's training loop written out plainly, as an independent oracle.

This follows the notebook line by line with torch autograd and no engine
code, so the engine's figures can be checked against a direct computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lecture_run(Xtr, Ytr, vocab_size, steps, *, batchnorm, gain, fan_in=True, bias=True,
                n_embd=10, n_hidden=100, depth=5, block_size=3, lr=0.1, batch_size=32,
                last_scale=0.1, seed=2147483647, tanh=True):
    g = torch.Generator().manual_seed(seed)
    C = torch.randn((vocab_size, n_embd), generator=g)
    layers = []  # (kind, tensors...)
    fan = n_embd * block_size
    sizes = [n_hidden] * depth + [vocab_size]
    for k, out in enumerate(sizes):
        W = torch.randn((fan, out), generator=g)
        if fan_in:
            W = W / fan**0.5
        layers.append(["lin", W, torch.zeros(out) if bias else None])
        if batchnorm:
            layers.append(["bn", torch.ones(out), torch.zeros(out), torch.zeros(out), torch.ones(out)])
        if k < depth and tanh:
            layers.append(["tanh"])
        fan = out
    with torch.no_grad():
        if batchnorm:
            layers[-1][1] *= last_scale
        else:
            layers[-1][1] *= last_scale
        for layer in layers[:-1]:
            if layer[0] == "lin":
                layer[1] *= gain
    params = [C]
    for layer in layers:
        if layer[0] == "lin":
            params += [layer[1]] + ([layer[2]] if layer[2] is not None else [])
        elif layer[0] == "bn":
            params += [layer[1], layer[2]]
    for p in params:
        p.requires_grad = True

    record = {}
    for i in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        emb = C[Xtr[ix]]
        x = emb.view(emb.shape[0], -1)
        outs = []
        for layer in layers:
            if layer[0] == "lin":
                x = x @ layer[1] + (layer[2] if layer[2] is not None else 0)
            elif layer[0] == "bn":
                mean = x.mean(0, keepdim=True)
                var = x.var(0, keepdim=True)
                xhat = (x - mean) / torch.sqrt(var + 1e-5)
                with torch.no_grad():
                    layer[3] = 0.9 * layer[3] + 0.1 * mean.reshape(-1)
                    layer[4] = 0.9 * layer[4] + 0.1 * var.reshape(-1)
                x = layer[1] * xhat + layer[2]
            else:
                x = torch.tanh(x)
            outs.append(x)
        loss = F.cross_entropy(x, Ytr[ix])
        for t in outs:
            t.retain_grad()
        for p in params:
            p.grad = None
        loss.backward()
        step_lr = lr
        for p in params:
            p.data += -step_lr * p.grad
        if i == 0:
            record["first_loss"] = loss.item()
        record["loss"] = loss.item()
        record["outs"] = outs
        record["update"] = [((step_lr * p.grad).std() / p.data.std()).log10().item()
                            for p in params]
    record["params"] = params
    record["layers"] = layers
    return record
