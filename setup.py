"""The wheel's packages, derived from the folders: `traintop/` is the package
root and the repository's engine/, data/ and tui/ are mapped under it, so a
new subfolder with an __init__.py is in the wheel without a list to edit.
Everything else about the project is in pyproject.toml."""

from pathlib import Path

from setuptools import setup

ROOTS = {"traintop": "traintop", "traintop.engine": "engine", "traintop.data": "data",
         "traintop.tui": "tui"}   # import name -> folder


def packages(here: Path) -> dict[str, str]:
    """Every package under ROOTS: its import name -> its folder."""
    found = {}
    for name, folder in ROOTS.items():
        for init in sorted((here / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(here / folder).parts
            if any(part.startswith((".", "_")) or "-" in part for part in rel):
                continue
            found[".".join((name, *rel))] = str(init.parent.relative_to(here))
    return found


if __name__ == "__main__":   # setuptools runs this file as __main__; tests import packages()
    FOUND = packages(Path(__file__).resolve().parent)
    setup(packages=sorted(FOUND), package_dir=FOUND)
