"""Compact, exact payloads of recording format 2 (see traintop.engine.recording.format).

Float arrays travel as one base64 string: float32 when every value is one
(what the engines measure in float32), float64 otherwise, so every value
comes back bit for bit. The bytes are stored plane by plane (all sign and
exponent bytes of a column, then the next byte of each, ...): a per-step
series' high bytes barely change, and gzip squeezes such runs. (Delta
coding the values as well was measured, and gzipped larger on real runs.)

Histograms travel as integer counts with their total: the engines compute
density = count / (total * width) in float64, and the decoder repeats that
very division, so the densities come back bit for bit too. A histogram whose
densities no integer counts reproduce is written as its float64 densities.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array

_LITTLE = sys.byteorder == "little"   # the file's byte order: no swap needed

# numpy is imported where used: a viewer reads a recording's head (and
# shows its first frame) before any packed payload needs it.

_FLOAT_KINDS = {"f": ("<f4", "<u4"), "d": ("<f8", "<u8")}   # kind: (float, bits) dtypes


def pack_floats(values, columns: int = 1, round32: bool = False) -> str:
    """Rows of `columns` floats (a flat sequence, row by row) as one string;
    `round32`: float32 even where a value needs float64 (see stream's steps).
    (A measured step packs a dozen small arrays: the checks below are the
    cheap ones, the bytes the same as ever.)"""
    if not round32 and type(values) in (list, tuple) and len(values) <= _FEW:
        if not values:
            return "f"      # no rows: no bytes
        packed = _pack_few(values, columns)
        if packed is not None:
            return packed
    import numpy as np
    a = np.asarray(values, dtype=np.float64)
    if not a.size:
        return "f"          # no rows: no bytes (what the planes below give)
    a = a.reshape(-1, columns)
    with np.errstate(over="ignore"):
        f = a.astype(np.float32)
    if round32:
        whole = np.array_equal(np.isfinite(f), np.isfinite(a))
    else:   # exact in float32 (NaN as NaN: array_equal's equal_nan, without its cost)
        back = f.astype(np.float64)
        whole = bool(((back == a) | ((back != back) & (a != a))).all())
    if whole:
        kind, bits = "f", f.view(np.uint32)
    else:
        kind, bits = "d", a.view(np.uint64)
    if not _LITTLE:
        bits = bits.astype(bits.dtype.newbyteorder("<"))
    planes = bits.view(np.uint8).reshape(bits.shape + (bits.itemsize,)).transpose(2, 1, 0)
    return kind + base64.b64encode(planes.tobytes()).decode("ascii")


_FEW = 64   # values: up to this many, packed by the array module (numpy's calls cost more)


def _pack_few(values, columns: int) -> str | None:
    """pack_floats of a short list, the same bytes: C's float casts as numpy's,
    the planes sliced off the values' bytes (column by column). None: values
    the array module refuses (None, say, which numpy reads as NaN)."""
    if len(values) % columns:
        return None     # numpy's error
    cols = list(values) if columns == 1 else [
        v for c in range(columns) for v in values[c::columns]]
    try:
        f = array("f", cols)
        d = array("d", cols)
    except TypeError:
        return None
    back = array("d", f)
    if back == d or all(x == y or (x != x and y != y) for x, y in zip(back, d)):
        kind, raw, size = "f", f, 4
    else:
        kind, raw, size = "d", d, 8
    if not _LITTLE:
        raw.byteswap()
    raw = raw.tobytes()
    return kind + base64.b64encode(b"".join([raw[k::size] for k in range(size)])).decode("ascii")


def unpack_floats(text: str, columns: int = 1) -> np.ndarray:
    """pack_floats' rows back, as a (rows, columns) float64 array."""
    import numpy as np
    try:
        dtype, utype = _FLOAT_KINDS[text[:1]]
        raw = np.frombuffer(base64.b64decode(text[1:], validate=True), np.uint8)
    except (KeyError, binascii.Error, TypeError) as exc:
        raise ValueError(f"bad packed floats ({exc})") from None
    size = np.dtype(utype).itemsize
    if columns < 1 or raw.size % (size * columns):
        raise ValueError("bad packed floats (length)")
    rows = raw.size // (size * columns)
    bits = raw.reshape(size, columns, rows).transpose(2, 1, 0).copy()
    return bits.view(dtype).reshape(rows, columns).astype(np.float64)


def histogram_counts(lo: float, hi: float, density, hint: int | None = None):
    """(total, counts) that give back `density` exactly, or None.

    Candidates: the hint (the total this histogram had last time), then
    the totals that make every bin's share of the smallest nonzero bin a
    whole number, the smallest bin holding 1 to 256 items.
    """
    import numpy as np
    d = np.asarray(density, dtype=np.float64)
    width = (hi - lo) / len(d) if len(d) else 0.0
    if not len(d) or not np.isfinite(d).all() or not (width > 0 and np.isfinite(width)):
        return None
    if hint and not np.signbit(d).any():
        found = _whole(d, width, hint)   # usually the total it had last time: no search
        if found is not None:
            return found
    nonzero = d[d > 0]
    candidates = []
    if nonzero.size:
        smallest = float(nonzero.min())
        k = np.arange(1, 257)[:, None]
        multiples = k * (nonzero / smallest)[None, :]
        whole = np.abs(multiples - np.rint(multiples)).max(axis=1) < 1e-6
        candidates += [round(int(k[i, 0]) / (smallest * width)) for i in np.flatnonzero(whole)[:4]]
    else:
        candidates.append(1)
    if np.signbit(d).any():
        return None
    for total in candidates:
        found = _whole(d, width, total)
        if found is not None:
            return found
    return None


def _whole(d: np.ndarray, width: float, total: int):
    """(total, counts) if `total` items give back density `d` exactly, else None."""
    import numpy as np
    if not 0 < total < 2 ** 53:
        return None
    norm = total * width
    counts = np.rint(d * norm)
    if np.array_equal(counts / norm, d):
        return int(total), counts.astype(np.uint64)
    return None


def density_of(lo: float, hi: float, total: int, counts: np.ndarray) -> list[float]:
    """The engines' own division: count / (total * width), in float64."""
    import numpy as np
    width = (hi - lo) / len(counts)
    return (counts.astype(np.float64) / (total * width)).tolist()


def _leb128(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The varints of every count under 2 ** 14 (1 or 2 bytes), made once: a
# histogram's counts nearly all are, and a lookup costs a tenth of the loop.
_SMALL_VARINTS = [_leb128(v) for v in range(1 << 14)]


def pack_counts(counts) -> str:
    """Counts as base64 of their LEB128 varints: 1 byte under 128, 2 under
    16,384, ...; a histogram's tails hold small counts, its middle large ones.
    `counts`: whole numbers (an array, or a list of ints)."""
    if not isinstance(counts, list):
        import numpy as np
        counts = np.asarray(counts, dtype=np.uint64).tolist()
    table = _SMALL_VARINTS
    try:
        raw = b"".join([table[v] for v in counts])
    except IndexError:   # a count of 2 ** 14 or more
        raw = b"".join([table[v] if v < 16384 else _leb128(v) for v in counts])
    return "v" + base64.b64encode(raw).decode("ascii")


def unpack_counts(text: str) -> np.ndarray:
    import numpy as np
    try:
        raw = np.frombuffer(base64.b64decode(text[1:], validate=True), np.uint8)
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"bad packed counts ({exc})") from None
    if text[:1] != "v" or (raw.size and raw[-1] & 0x80):
        raise ValueError("bad packed counts")
    if not raw.size:
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero((raw & 0x80) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = (np.arange(raw.size) - starts[group]).astype(np.uint64) * np.uint64(7)
    if shift.max() > 63:
        raise ValueError("bad packed counts (too long)")
    parts = (raw & 0x7F).astype(np.uint64) << shift
    return np.add.reduceat(parts, starts)
