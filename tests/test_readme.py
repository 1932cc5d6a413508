"""The README's two set-up commands, and CI running the same test command."""

from __future__ import annotations

import re

from helpers import ROOT


def setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_exactly_two_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2
    run_app, run_tests = commands
    assert run_app.endswith(".venv/bin/traintop")
    assert "pytest" in run_tests
    for command in commands:
        # torch from the CPU wheel first, so the project's range is already met.
        assert command.index("torch==2.13.0") < command.index("-e .") if "-e ." in command \
            else command.index("torch==2.13.0") < command.index("-e '.[test]'")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r'^TEST_COMMAND="(.*)"$', ci, flags=re.M)
    assert match, ".ci/run defines TEST_COMMAND"
    assert match.group(1) == setup_commands()[1]


def test_the_test_command_runs_on_every_core():
    """pytest-xdist: -n auto, from the test extra; the timing tests grouped by
    --dist loadgroup in the default options."""
    run_tests = setup_commands()[1]
    assert run_tests.endswith("-m pytest -q -n auto")
    pyproject = (ROOT / "pyproject.toml").read_text()
    test_extra = pyproject.split("test = [", 1)[1].split("]", 1)[0]
    assert '"pytest-xdist' in test_extra and '"pytest-cov' in test_extra
    addopts = re.search(r'^addopts = "(.*)"$', pyproject, flags=re.M).group(1).split()
    assert "--dist" in addopts and addopts[addopts.index("--dist") + 1] == "loadgroup"
    assert "--durations=15" in addopts
