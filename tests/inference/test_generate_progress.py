"""``zoo generate``: a long run whose text goes to a file shows a tqdm bar on the terminal."""

from __future__ import annotations

import io

import pytest

from zoo.cli import generate as generate_cmd
from zoo.cli import main as zoo_main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stdout_is_terminal", [False, True])
def test_bar_only_when_text_goes_to_a_file(monkeypatch, stdout_is_terminal: bool) -> None:
    monkeypatch.setattr(generate_cmd, "PROGRESS_MIN_TOKENS", 4)
    stdout, stderr = (Terminal() if stdout_is_terminal else io.StringIO()), Terminal()
    monkeypatch.setattr("sys.stdout", stdout)
    monkeypatch.setattr("sys.stderr", stderr)
    argv = ["generate", "transmamba-tiny", "--prompt", "ab", "--max-new-tokens", "6", "--no-eos", "--device", "cpu"]
    assert zoo_main(argv) == 0
    assert stdout.getvalue().startswith("ab") and "\r" not in stdout.getvalue()
    if stdout_is_terminal:
        assert stderr.getvalue() == ""  # the streamed text is the progress
    else:
        assert "/6 [" in stderr.getvalue() and "tok" in stderr.getvalue()
