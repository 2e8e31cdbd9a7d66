"""A user's mistake on the command line or in the Python API is one line naming it and the
fix (a ZooError; exit code 2 from ``zoo``), never a traceback; ``zoo list`` and ``--help``."""

from __future__ import annotations

import argparse

import pytest
import torch

import zoo
from zoo.cli import main, make_parser
from zoo.devices import DeviceError, parse_device
from zoo.errors import ZooError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


# --------------------------------------------------------------------------- --device


@no_cuda
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "transmamba-tiny", "--device", "cuda", "--steps", "1"],
        ["generate", "transmamba-tiny", "--prompt", "hi", "--device", "cuda"],
        ["eval", "no-such-run", "--device", "cuda"],
        ["bench", "--suite", "ssm", "--device", "cuda"],
        ["build", "transmamba-tiny", "--device", "cuda:0"],
    ],
    ids=lambda argv: argv[0],
)
def test_device_cuda_without_cuda_is_one_line(capsys, tmp_path, monkeypatch, argv) -> None:
    monkeypatch.chdir(tmp_path)  # train would create runs/ here; the check comes before it
    code, _, err = run_cli(capsys, argv)
    assert code == 2
    assert_one_line(err, "--device cuda", "CUDA is not available on this machine", "built without CUDA", "--device cpu")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", [["train", "transmamba-tiny"], ["generate", "transmamba-tiny", "--prompt", "x"]])
def test_unknown_device_names_the_choices(capsys, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, [*command, "--device", "gpu"])
    assert code == 2
    assert_one_line(err, "unknown device 'gpu'; use auto, cpu, cuda or cuda:N")


@no_cuda
def test_build_api_device_cuda_is_a_zoo_error() -> None:
    with pytest.raises(ZooError, match=r"device='cuda': CUDA is not available on this machine .*device='cpu'"):
        zoo.build("transmamba-tiny", device="cuda")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        zoo.build("transmamba-tiny", device="gpu")


def test_parse_device_accepts_what_exists() -> None:
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("meta").type == "meta"
    assert parse_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match=r"--device: unknown device 'cuda:x'"):
        parse_device("cuda:x", flag="--device")


# --------------------------------------------------------------------------- training flags


def test_steps_zero_is_one_line_without_pydantic_text(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, ["train", "transmamba-tiny", "--steps", "0", "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line(err, "--steps 0: must be >= 1")
    assert "Input should" not in err and "http" not in err and "pydantic" not in err


def test_train_module_entry_point_checks_the_same_flags(capsys, tmp_path) -> None:
    from zoo.cli.train import main as train_main

    assert train_main(["transmamba-tiny", "--tokenizer", "bpe:x", "--out", str(tmp_path)]) == 2
    assert_one_line(capsys.readouterr().err, "--tokenizer 'bpe:x'", "bpe:VOCAB")


@pytest.mark.parametrize(
    "flag, value, expected, bad_list, argparse_line",
    [
        (
            "--train-items",
            "4,40",
            ("--train-items 40:", "needs --seq-len >= 160"),
            "4,x",
            "not a list of positive item counts",
        ),
        (
            "--train-seq-lens",
            "12,32",
            ("--train-seq-lens 12:", "must divide --seq-len 32"),
            "16,0",
            "not a list of positive sequence lengths",
        ),
    ],
)
def test_training_sizes_that_do_not_fit_are_one_line(
    capsys, tmp_path, flag, value, expected, bad_list, argparse_line
) -> None:
    argv = ["train", "transmamba-tiny", "--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4"]
    code, _, err = run_cli(capsys, [*argv, flag, value, "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line(err, *expected)
    with pytest.raises(SystemExit):  # argparse's own error for a list that is not one
        run_cli(capsys, [*argv, flag, bad_list])
    assert f"{bad_list!r} is {argparse_line}" in capsys.readouterr().err


def test_tokenizer_malformed_says_the_form(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, ["train", "transmamba-tiny", "--tokenizer", "bpe:foo", "--out", str(tmp_path)])
    assert code == 2
    assert_one_line(err, "--tokenizer 'bpe:foo'", "bpe:VOCAB", "e.g. bpe:4096")
    assert "invalid literal" not in err


# --------------------------------------------------------------------------- Python API


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return zoo.build("transmamba-tiny", requires_grad=False)


def test_generate_with_a_str_prompt_says_pass_token_ids(tiny) -> None:
    with pytest.raises(ZooError, match=r"got a str prompt; it takes token ids.*tokenizer"):
        zoo.generate(tiny, "hello", 8)


def test_transpoints_of_the_wrong_length(tiny) -> None:
    ids = torch.randint(0, 260, (1, 32))
    with pytest.raises(ZooError, match="transpoints has 3 entries; the model has 6 layers"):
        tiny(ids, transpoints=[0, 16, 32])
    assert tiny(ids, transpoints=[0, 8, 16, 32, 32, 0]).shape == (1, 32, 260)
    with pytest.raises(ZooError, match="transpoints has 2 entries; the model has 6 layers"):
        tiny.allocate_cache(1, 64, transpoints=[0, 16])


def test_transpoints_check_compiles_fullgraph() -> None:
    """The length check is on a Python list: a trace-time constant, so fullgraph still holds
    (a one-layer attention model keeps the trace cheap; the check is the model's, not the mixer's)."""
    model = zoo.build(
        {"vocab_size": 64, "d_model": 32, "layers": [{"mixer": {"name": "attention", "params": {"n_heads": 2}}}] * 2}
    )
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    ids = torch.randint(0, 64, (1, 16))
    torch.testing.assert_close(compiled(ids, transpoints=[16, 16]), model(ids, transpoints=[16, 16]))
    # compiled, dynamo wraps the error raised while tracing; the message is carried through
    with pytest.raises(Exception, match="transpoints has 1 entries; the model has 2 layers"):
        compiled(ids, transpoints=[16])


# --------------------------------------------------------------------------- generate


def test_long_generation_says_up_front_what_it_takes(capsys, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(zoo, "generate", lambda *args, **kwargs: calls.append(args[2]))
    code, out, err = run_cli(capsys, ["generate", "transmamba-tiny", "--prompt", "hi", "--max-new-tokens", "100000"])
    assert code == 0 and calls == [100000]
    assert "generating up to 100000 tokens on " in err and "cache of 100002 positions" in err


def test_bad_bytes_do_not_stall_the_stream(capsys, monkeypatch) -> None:
    shown = []

    def fake_generate(model, ids, n, *, on_token, **kwargs):
        for _ in range(n):
            on_token([0xFF])  # never a valid UTF-8 character
        shown.append(capsys.readouterr().out)  # what was printed while generating, before the end

    monkeypatch.setattr(zoo, "generate", fake_generate)
    assert main(["generate", "transmamba-tiny", "--prompt", "a", "--max-new-tokens", "8", "--device", "cpu"]) == 0
    assert shown[0].startswith("a") and shown[0].count("\ufffd") >= 8 - 3


# --------------------------------------------------------------------------- list and help


@pytest.mark.parametrize(
    "word,kinds",
    [
        ("schedules", ["schedule"]),
        ("schedule", ["schedule"]),
        ("mixers", ["mixer"]),
        ("presets", ["preset"]),
        ("backends", ["attention", "ssm", "converter", "conv", "norm"]),
        ("attention", ["attention"]),
    ],
)
def test_list_takes_singulars_and_plurals(capsys, word, kinds) -> None:
    code, out, _ = run_cli(capsys, ["list", word])
    assert code == 0
    headers = [line.split(" (")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert headers == kinds


def test_list_shows_each_description(capsys) -> None:
    code, out, _ = run_cli(capsys, ["list", "schedules"])
    assert code == 0
    for row in zoo.list("schedule"):
        line = next(line for line in out.splitlines() if line.split()[:1] == [row["name"]])
        assert row["description"] and row["description"] in line
    code, out, _ = run_cli(capsys, ["list", "presets"])
    assert "transmamba-tiny" in out and "6 layers, d_model" in out


def test_list_unknown_kind_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["list", "schedulez"])
    assert info.value.code == 2
    assert "unknown kind 'schedulez'" in capsys.readouterr().err


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_every_subcommand_has_a_one_line_summary_and_a_description() -> None:
    sub = _subparsers(make_parser())
    for choice in sub._choices_actions:
        assert choice.help and "\n" not in choice.help and len(choice.help) < 100, choice.dest
        assert sub.choices[choice.dest].description, choice.dest


def test_every_subcommand_help_shows_its_defaults() -> None:
    sub = _subparsers(make_parser())
    for name, parser in sub.choices.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if action.help == argparse.SUPPRESS or default is None or default is False or default == []:
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[-1] if action.option_strings else action.dest
            helptext = " ".join(parser._get_formatter()._expand_help(action).split())
            assert "default" in helptext.lower(), f"zoo {name} {flag}: {helptext!r}"
            assert helptext in text
    steps = " ".join(sub.choices["train"].format_help().split())
    assert "--steps STEPS default: 1000" in steps and "--seed SEED default: 0" in steps


def test_zoo_help_lists_each_command_beside_its_summary(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wrapping aside: the name and its summary share a line
    parser = make_parser()
    lines = parser.format_help().splitlines()
    for choice in _subparsers(parser)._choices_actions:
        line = next(line for line in lines if line.split()[:1] == [choice.dest])
        assert line.split(None, 1)[1].strip() == choice.help, line
