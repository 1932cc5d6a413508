"""Gzipped bytes of a version-2 recording's per-step update ratios in other
lossless layouts, and where the rest of the gzipped file goes (by hand, not
in tests): issue 15's <= 12 MB target, measured against what gzip can do.

    python tools/recording_layouts.py full.jsonl

Layouts of each block's float32 (rows x 19) ratios, gzip level 6:
  planes      what format 2 writes: byte planes, column-major, base64
  planes-raw  the same bytes without base64 (what base64 costs)
  row-major   the float32 array as it is in memory, base64
  xor-prev    each value XOR the previous step's of the same parameter, planes
  delta-prev  integer difference to the previous step's bits (zigzag), planes
  median      integer difference to the block's column median (zigzag), planes
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import zlib

import numpy as np

from traintop.engine.recording.packing import unpack_floats


def gz(data: bytes) -> int:
    return len(zlib.compress(data, 6))


def planes(bits: np.ndarray) -> bytes:
    u = bits.astype(np.uint32)
    return np.ascontiguousarray(u.view(np.uint8).reshape(u.shape + (4,)).transpose(2, 1, 0)).tobytes()


def zigzag(d: np.ndarray) -> np.ndarray:
    return ((d << 1) ^ (d >> 63)).astype(np.uint32)


def layouts(block: np.ndarray) -> dict:
    bits = block.astype(np.float32).view(np.uint32)
    wide = bits.astype(np.int64)
    xor, delta = bits.copy(), wide.copy()
    xor[1:] ^= bits[:-1]
    delta[1:] -= wide[:-1]
    median = wide - np.median(wide, axis=0).astype(np.int64)[None, :]
    return {"planes": gz(base64.b64encode(planes(bits))), "planes-raw": gz(planes(bits)),
            "row-major": gz(base64.b64encode(bits.tobytes())),
            "xor-prev": gz(base64.b64encode(planes(xor))),
            "delta-prev": gz(base64.b64encode(planes(zigzag(delta)))),
            "median": gz(base64.b64encode(planes(zigzag(median)))) + 4 * bits.shape[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    args = parser.parse_args()
    fields: dict[str, list[bytes]] = collections.defaultdict(list)
    totals: collections.Counter = collections.Counter()
    values = 0
    for line in open(args.path, "rb"):
        doc = json.loads(line)
        if doc.get("t") != "s":
            fields["other lines"].append(line)
            continue
        for key, value in doc.items():
            fields["x (snapshots)" if key == "x" else key].append(json.dumps(value).encode())
        if doc.get("u"):
            block = unpack_floats(doc["u"], int(doc["p"]))
            totals.update(layouts(block))
            values += block.size
    print("gzipped bytes of each field of the step lines, compressed field by field:")
    sizes = {key: gz(b"\n".join(parts)) for key, parts in fields.items()}
    for key, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"  {key:14} {size / 1e6:8.2f} MB")
    print(f"the ratios ({values:,} float32 values) in each layout:")
    for name, size in totals.items():
        print(f"  {name:12} {size / 1e6:8.2f} MB  ({8 * size / values:.1f} bits a value)")


if __name__ == "__main__":
    main()
