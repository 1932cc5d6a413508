"""Recurrent layers: the output sequence of an LSTM/GRU/RNN call and its
gates, recomputed from the call's input, initial state and weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rnn_output(output):
    """A recurrent layer's output sequence: the first element of (output, h_n) or
    (output, (h_n, c_n)); a PackedSequence's data."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    data = getattr(output, "data", None)
    if not isinstance(output, torch.Tensor) and isinstance(data, torch.Tensor):
        return data                                    # PackedSequence
    return output


_GATES = {"LSTM": (("input_gate", "sigmoid"), ("forget_gate", "sigmoid"),
                   ("cell_gate", "tanh"), ("output_gate", "sigmoid")),
          "GRU": (("reset_gate", "sigmoid"), ("update_gate", "sigmoid"), ("new_gate", "tanh"))}
GATE_STEPS = 1024   # longer sequences: their gates are not recomputed (a Python loop per step)


def _gate_names(rnn: nn.Module) -> tuple:
    """The gates traintop recomputes for this recurrent layer: an LSTM's or GRU's,
    one direction, no projection (else none)."""
    if getattr(rnn, "bidirectional", False) or getattr(rnn, "proj_size", 0):
        return ()
    return _GATES.get(getattr(rnn, "mode", ""), ())


def _gate_values(rnn: nn.Module, inputs) -> list[torch.Tensor] | None:
    """Every layer's gate activations, (time, batch, hidden) each, in _gate_names'
    order layer by layer, recomputed under no_grad from the call's input, initial
    state and the weights (dropout between layers is left out). None where the
    input is a PackedSequence or longer than GATE_STEPS."""
    x = inputs[0] if inputs else None
    if not isinstance(x, torch.Tensor):
        return None
    hx = inputs[1] if len(inputs) > 1 else None
    unbatched = x.ndim == 2
    with torch.no_grad():
        x = x.detach()
        x = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if rnn.batch_first else x)
        T, B, H = x.shape[0], x.shape[1], rnn.hidden_size
        if T > GATE_STEPS:
            return None
        lstm = rnn.mode == "LSTM"
        h0, c0 = (hx if lstm else (hx, None)) if hx is not None else (None, None)
        if h0 is not None and unbatched:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None
        out = []
        for k in range(rnn.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
            b_ih = getattr(rnn, f"bias_ih_l{k}") if rnn.bias else None
            b_hh = getattr(rnn, f"bias_hh_l{k}") if rnn.bias else None
            xi = F.linear(x.to(w_ih.dtype), w_ih, b_ih)              # (T, B, gates * H)
            h = h0[k].detach() if h0 is not None else x.new_zeros(B, H, dtype=w_ih.dtype)
            c = c0[k].detach() if c0 is not None else torch.zeros_like(h)
            seen: list[list[torch.Tensor]] = [[] for _ in _GATES[rnn.mode]]
            hs = []
            for t in range(T):
                gh = F.linear(h, w_hh, b_hh)
                if lstm:
                    i, f, g, o = (xi[t] + gh).chunk(4, dim=1)
                    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                    c = f * c + i * g
                    h = o * c.tanh()
                    parts = (i, f, g, o)
                else:
                    ir, iz, in_ = xi[t].chunk(3, dim=1)
                    hr, hz, hn = gh.chunk(3, dim=1)
                    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
                    n = (in_ + r * hn).tanh()
                    h = (1 - z) * n + z * h
                    parts = (r, z, n)
                for kept, v in zip(seen, parts):
                    kept.append(v)
                hs.append(h)
            out += [torch.stack(v) for v in seen]
            x = torch.stack(hs)
        return out
