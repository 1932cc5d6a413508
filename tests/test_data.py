"""The data pipeline: vocabulary, contexts, split, and every bad input."""

from __future__ import annotations

import pytest

from traintop.data.dataset import DEFAULT_DATA, build_dataset, load_dataset
from traintop.data.words import min_words
from traintop.data.errors import InputError
from traintop.data.words import read_words


def test_lecture_counts(reference_dir):
    ds = load_dataset(reference_dir / "names.txt")
    assert ds.vocab.size == 27
    assert (len(ds.train), len(ds.val), len(ds.test)) == (182625, 22655, 22866)
    assert ds.words == 32033


def test_contexts_of_one_word():
    words = ["emma"] + [f"{c}{c}" for c in "abcdefghij"]
    ds = build_dataset(words, block_size=3, split_seed=0)
    stoi = ds.vocab.stoi()
    assert stoi["."] == 0 and stoi["a"] == 1
    # Rebuild the examples of 'emma' directly: ... -> e, ..e -> m, .em -> m, emm -> a, mma -> .
    from traintop.data.dataset import build_examples
    split = build_examples(["emma"], ds.vocab, 3)
    e, m, a = stoi["e"], stoi["m"], stoi["a"]
    assert split.X.tolist() == [[0, 0, 0], [0, 0, e], [0, e, m], [e, m, m], [m, m, a]]
    assert split.Y.tolist() == [e, m, m, a, 0]


def test_split_uses_python_random_seed():
    import random

    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(50)]
    ds = build_dataset(words, block_size=2, split_seed=42)
    expected = list(words)
    random.seed(42)
    random.shuffle(expected)
    from traintop.data.dataset import build_examples
    assert ds.train.X.tolist() == build_examples(expected[:40], ds.vocab, 2).X.tolist()
    assert ds.test.Y.tolist() == build_examples(expected[45:], ds.vocab, 2).Y.tolist()


def test_embedded_default_is_there_and_clean():
    words = read_words(DEFAULT_DATA)
    assert len(words) > 20000
    assert words[:3] == ["emma", "liam", "olivia"]  # most common names of 2017 first
    assert all(w.isalpha() and w.islower() for w in words)
    assert len(set(words)) == len(words)


def test_strips_and_skips_blank_lines(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("  anna \n\n\t\nbob\r\n", encoding="utf-8")
    assert read_words(path) == ["anna", "bob"]


@pytest.mark.parametrize("content, fragment", [
    (b"", "no words"),
    (b"\n  \n\t\n", "no words"),
    (b"anna\nb\xffb\n", "not UTF-8 text"),
    (b"anna\nst.john\n", "contains '.'"),
])
def test_bad_files(tmp_path, content, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_words(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_bad_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"anna\nbob\nb\xe9b\n")
    with pytest.raises(InputError, match=r"bad.txt:3: not UTF-8"):
        read_words(path)
    path.write_text("anna\n\nmr.x\n")
    with pytest.raises(InputError, match=r"bad.txt:3: word 'mr.x'"):
        read_words(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.txt: no such file"):
        read_words(tmp_path / "nope.txt")


def test_too_few_words():
    n = min_words()
    build_dataset([f"a{'b' * i}" for i in range(n)])  # just enough
    with pytest.raises(InputError, match=f"need at least {n}"):
        build_dataset([f"a{'b' * i}" for i in range(n - 1)], source="tiny.txt")
