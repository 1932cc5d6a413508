"""Bad input on the command line: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from traintop.commands.cli import main
from helpers import ROOT


def run_main(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("content, fragment", [
    (b"", "no words"),
    (b"anna\nb\xffb\n", "bad.txt:2: not UTF-8 text"),
    (b"anna\nbob\n", "too few"),
    (b"anna\nst.john\n", "bad.txt:2: word 'st.john' contains '.'"),
])
def test_bad_data_files(tmp_path, capsys, content, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, out, err = run_main(["run", "--data", str(path), "--steps", "1"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("traintop: error: ") and err.count("\n") == 1
    assert fragment in err


@pytest.mark.parametrize("argv, fragment", [
    (["--gain", "five"], "--gain"),
    (["--gain", "0"], "--gain: must be finite and > 0"),
    (["--gain", "1/0"], "--gain"),
    (["--batch-size", "1"], "--batch-size: must be >= 2 with BatchNorm"),
    (["--eval", "train,dev"], "--eval: unknown split dev"),
    (["--device", "tpu"], "--device"),
    (["--resume", "/nonexistent/ckpt"], "/nonexistent/ckpt: no such file"),
])
def test_bad_options(capsys, argv, fragment):
    code, out, err = run_main(["run", "--steps", "1"] + argv, capsys)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--lr", "-1"], ["--lr", "nan"], ["--steps", "-3"],
                                  ["--steps", "many"]])
def test_argparse_rejects_numbers(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(["run"] + argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err


def test_missing_file_in_a_real_process(tmp_path):
    missing = tmp_path / "missing.txt"
    proc = subprocess.run([sys.executable, "-m", "traintop", "run", "--data", str(missing)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"traintop: error: {missing}: no such file"
    assert proc.stdout == ""


def test_batch_size_one_is_fine_without_batchnorm(capsys, small_words, tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("\n".join(small_words))
    code, out, _ = run_main(["run", "--data", str(path), "--steps", "2", "--no-batchnorm",
                             "--batch-size", "1", "--n-hidden", "8"], capsys)
    assert code == 0 and "steps 2" in out


@pytest.mark.parametrize("argv, prog, fragment", [
    (["run", "--bogus"], "traintop run", "unrecognized arguments: --bogus"),
    (["run", "--steps", "-5"], "traintop run", "argument --steps: must be >= 0, got -5"),
    (["--bogus"], "traintop", "unrecognized arguments: --bogus"),
    (["replay", "x.jsonl", "--speed", "0"], "traintop replay", "argument --speed"),
    (["export"], "traintop export", "required: RUN.jsonl"),
    (["bench", "--rounds", "x"], "traintop bench", "argument --rounds"),
])
def test_a_bad_option_is_one_line_not_the_usage_block(argv, prog, fragment):
    done = subprocess.run([sys.executable, "-m", "traintop", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{prog}: error: ") and fragment in done.stderr
    assert done.stderr.endswith(f"(see {prog} --help)\n")
