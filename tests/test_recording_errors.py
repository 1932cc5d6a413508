"""Every reader of a recording opens it through one opener and says what is
wrong in the same words: `traintop replay` (the app's source and --json),
`traintop attach` (its check before the app, its follower), `traintop
export` and load()."""

from __future__ import annotations

import pytest

from traintop.commands import cli
from traintop.data.errors import InputError
from traintop.engine.export.tables import write_csv
from traintop.engine.recording.follow_source import FollowSource
from traintop.engine.recording.opener import check_head, load
from traintop.engine.recording.replay_source import ReplaySource
from tui_fixed_run import fixed_run
from tui_recordings import record

READERS = {
    "load": lambda path, tmp: load(path),
    "replay": lambda path, tmp: ReplaySource(path).close(),
    "export": lambda path, tmp: write_csv(path, tmp / "csv"),
    "attach check": lambda path, tmp: check_head(path),
}


def _bad_files(tmp_path) -> dict:
    good = record(fixed_run(), tmp_path / "good.jsonl").read_bytes().split(b"\n")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_bytes(b'{"hello": 1}\n' + b"\n".join(good[1:]))
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_bytes(b"\n".join([good[0], b"{not json", *good[1:]]))
    return {
        "foreign": (foreign,
                    f"{foreign}:1: not a traintop recording (no 'traintop-stream' header)"),
        "corrupt": (corrupt, f"{corrupt}:2: corrupt line (not JSON)"),
        "folder": (tmp_path, f"{tmp_path}: cannot read: Is a directory"),
    }


@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_says_a_bad_file_in_the_same_words(tmp_path, reader):
    for name, (path, said) in _bad_files(tmp_path).items():
        with pytest.raises(InputError) as caught:
            READERS[reader](path, tmp_path / name)
        assert str(caught.value) == said, (reader, name)


@pytest.mark.parametrize("reader", ["load", "replay", "export"])
def test_a_missing_file_is_said_alike(tmp_path, reader):
    path = tmp_path / "none.jsonl"
    with pytest.raises(InputError) as caught:
        READERS[reader](path, tmp_path)
    assert str(caught.value) == f"{path}: no such file"


def test_attach_waits_for_a_missing_file_and_follows_with_the_same_words(tmp_path):
    path = tmp_path / "later.jsonl"
    check_head(path)                         # the writer may not have started: fine
    follower = FollowSource(path)
    follower.start()
    assert [m.text for m in follower.poll()] == [f"waiting for {path} to appear"]
    files = _bad_files(tmp_path)
    path.write_bytes(files["corrupt"][0].read_bytes())
    errors = [m.text for m in follower.poll() if getattr(m, "kind", None) == "error"]
    assert errors == [files["corrupt"][1].replace("corrupt.jsonl", "later.jsonl")]
    follower.close()


def test_the_commands_print_the_readers_words(tmp_path, capsys):
    for name, (path, said) in _bad_files(tmp_path).items():
        for argv in (["replay", str(path), "--json"],
                     ["export", str(path), "--csv", str(tmp_path / f"csv-{name}")]):
            # replay opens a folder as its recordings (issue 24): the corrupt
            # one among them is named, by file and line; export refuses a folder
            words = (_bad_files(tmp_path)["corrupt"][1]
                     if name == "folder" and argv[0] == "replay" else said)
            capsys.readouterr()
            assert cli.main(argv) == 2, argv
            assert capsys.readouterr().err == f"traintop: error: {words}\n", argv
