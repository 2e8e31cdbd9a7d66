"""``--backend SLOT=NAME`` for ``zoo train`` / ``zoo compare``: parsing, the spec rewrite, builds."""

from __future__ import annotations

import json

import pytest

from zoo.cli import main
from zoo.data.tasks import make_task
from zoo.errors import ZooError
from zoo.overrides import parse_backend_overrides, spec_with_backends, split_backend_choice
from zoo.training.runs import build_for_task, resolve_spec


def test_parse_backend_overrides() -> None:
    assert parse_backend_overrides(None) == {}
    assert parse_backend_overrides(["ssm=triton", " converter = triton "]) == {"ssm": "triton", "converter": "triton"}
    assert parse_backend_overrides(["ssm=scan", "ssm=scan"]) == {"ssm": "scan"}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["ssm"], "expected SLOT=NAME"),
        (["ssm="], "expected SLOT=NAME"),
        (["mlp=swiglu"], "unknown slot 'mlp'; the slots are attention, ssm, converter"),
        (["ssm=scan", "ssm=chunked"], "slot 'ssm' given twice"),
    ],
)
def test_parse_backend_overrides_rejects(items: list[str], message: str) -> None:
    with pytest.raises(ZooError, match=message):
        parse_backend_overrides(items)


def test_spec_with_backends_switches_every_layer_with_the_slot() -> None:
    spec = resolve_spec("hybrid-tiny")  # mamba2 and attention layers
    new, applied = spec_with_backends(spec, {"ssm": "scan", "attention": "eager"})
    assert applied == {"ssm", "attention"}
    for old_layer, layer in zip(spec["layers"], new["layers"], strict=True):
        mixer = layer["mixer"]
        if old_layer["mixer"]["name"] == "mamba2":
            assert mixer["ssm"] == {"name": "scan", "params": {}} and mixer.get("attention") is None
        else:
            assert mixer["attention"] == {"name": "eager", "params": {}} and mixer.get("ssm") is None
    assert spec["layers"][0]["mixer"] != new["layers"][0]["mixer"]  # the input is not mutated


def test_spec_with_backends_keeps_params_of_the_same_backend() -> None:
    spec = resolve_spec("transmamba-tiny")
    spec["layers"][0]["mixer"]["ssm"] = {"name": "chunked", "params": {"chunk_size": 16}}
    new, _ = spec_with_backends(spec, {"ssm": "chunked"})
    assert new["layers"][0]["mixer"]["ssm"] == {"name": "chunked", "params": {"chunk_size": 16}}
    new, _ = spec_with_backends(spec, {"ssm": "scan"})
    assert new["layers"][0]["mixer"]["ssm"] == {"name": "scan", "params": {}}


def test_overrides_carry_backend_params() -> None:
    assert split_backend_choice("triton") == ("triton", {})
    assert split_backend_choice("triton:states=recompute, chunk_size=64") == (
        "triton",
        {"states": "recompute", "chunk_size": 64},
    )
    assert parse_backend_overrides(["ssm=chunked:chunk_size=32"]) == {"ssm": "chunked:chunk_size=32"}
    spec = resolve_spec("transmamba-tiny")
    spec["layers"][0]["mixer"]["ssm"] = {"name": "chunked", "params": {"chunk_size": 16}}
    new, _ = spec_with_backends(spec, {"ssm": "chunked:chunk_size=32"})
    assert new["layers"][0]["mixer"]["ssm"] == {"name": "chunked", "params": {"chunk_size": 32}}
    # the same name keeps its other params; another name starts from its defaults
    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4, seed=0)
    model = build_for_task("transmamba-tiny", task, backends={"ssm": "chunked:chunk_size=32"})
    assert all(block.mixer.ssm.params.chunk_size == 32 for block in model.blocks)
    with pytest.raises(ZooError, match="NAME:KEY=VALUE"):
        parse_backend_overrides(["ssm=triton:states"])
    with pytest.raises(ZooError, match="expected SLOT=NAME"):
        parse_backend_overrides(["ssm=:states=recompute"])
    with pytest.raises(ZooError, match=r"^--backend ssm=scan:chunk_size=32: .*chunk_size"):  # a param scan lacks
        build_for_task("transmamba-tiny", task, backends={"ssm": "scan:chunk_size=32"})


def test_build_for_task_applies_overrides_and_rejects_unused_slots() -> None:
    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4, seed=0)
    model = build_for_task("transmamba-tiny", task, backends={"ssm": "scan", "converter": "scan"})
    for block in model.blocks:
        assert block.mixer.ssm.registry_name == "scan" and block.mixer.converter.registry_name == "scan"
    assert all(layer.mixer.ssm.name == "scan" for layer in model.spec.layers)  # recorded in the spec
    with pytest.raises(ZooError, match="no layer of 'transformer-tiny' has that slot"):
        build_for_task("transformer-tiny", task, backends={"ssm": "scan"})
    model = build_for_task("transformer-tiny", task, backends={"ssm": "scan"}, strict=False)
    assert model.spec.layers[0].mixer.ssm is None


@pytest.mark.slow
def test_compare_cli_overrides_backends_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    common = ["--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4", "--batch-size", "4"]
    common += ["--seeds", "1"]
    common += ["--budget", "2", "--no-compile", "--no-progress", "--device", "cpu", "--no-plot", "--out", str(out)]
    overrides = ["--backend", "ssm=scan", "--backend", "converter=scan"]
    assert main(["compare", "transmamba-tiny", "transformer-tiny", *common, *overrides]) == 0
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [row["steps"] for row in rows] == [2, 2]
    assert main(["compare", "transformer-tiny", *common, "--backend", "ssm=scan"]) == 2
    assert "none of the compared models has that slot" in capsys.readouterr().err
    assert main(["compare", "transmamba-tiny", *common, "--backend", "ssm=nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_checkpoint_loads_on_other_backends(tmp_path) -> None:
    import torch

    import zoo
    from zoo.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = zoo.build("transmamba-tiny", device="cpu").eval()
    save_checkpoint(tmp_path, 1, model=model)
    tokens = torch.randint(0, model.spec.vocab_size, (2, 40))
    loaded = zoo.load(tmp_path, backends={"ssm": "scan", "converter": "scan"}).eval()
    assert all(block.mixer.ssm.registry_name == "scan" for block in loaded.blocks)
    with torch.no_grad():
        want, got = model(tokens), loaded(tokens)
    assert ((got - want).norm() / want.norm()).item() < 1e-4  # same weights, another scan
    with pytest.raises(ZooError, match="no layer of checkpoint .* has that slot"):
        zoo.load(save_checkpoint(tmp_path / "tf", 1, model=zoo.build("transformer-tiny")), backends={"ssm": "scan"})


def test_generate_cli_takes_backend_overrides(capsys) -> None:
    argv = ["generate", "transmamba-tiny", "--prompt", "ab", "--max-new-tokens", "3", "--device", "cpu"]
    assert main([*argv, "--backend", "ssm=scan", "--backend", "converter=scan"]) == 0
    assert main([*argv, "--backend", "ssm=nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_spec_with_backends_rejects_unknown_slots() -> None:
    with pytest.raises(ZooError, match="unknown slot 'mlp'"):
        spec_with_backends(resolve_spec("mamba2-tiny"), {"mlp": "x"})


def test_spec_with_backends_expands_a_layer_pattern() -> None:
    pattern = {
        "vocab_size": 64,
        "d_model": 32,
        "layers": {"n_layers": 2, "block": {"mixer": {"name": "mamba2", "params": {"headdim": 8, "d_state": 8}}}},
    }
    new, applied = spec_with_backends(pattern, {"ssm": "scan"})
    assert applied == {"ssm"} and [layer["mixer"]["ssm"]["name"] for layer in new["layers"]] == ["scan", "scan"]


@pytest.mark.slow
def test_resume_keeps_the_backends_the_run_was_trained_with(tmp_path) -> None:
    from zoo.checkpoint import latest_checkpoint, open_checkpoint

    out = tmp_path / "run"
    common = ["train", "transmamba-tiny", "--task", "mqar", "--seq-len", "32", "--vocab", "32", "--num-items", "4"]
    common += ["--batch-size", "2", "--no-compile", "--no-progress", "--device", "cpu", "--out", str(out)]
    assert main([*common, "--steps", "2", "--backend", "ssm=scan", "--backend", "converter=scan"]) == 0
    assert main([*common, "--steps", "4", "--resume"]) == 0  # no --backend: the checkpoint's
    layers = open_checkpoint(latest_checkpoint(out)).spec["layers"]
    assert open_checkpoint(latest_checkpoint(out)).step == 4
    assert {layer["mixer"]["ssm"]["name"] for layer in layers} == {"scan"}
    assert main([*common, "--steps", "6", "--resume", "--backend", "ssm=chunked"]) == 0  # an explicit one wins
    layers = open_checkpoint(latest_checkpoint(out)).spec["layers"]
    assert {layer["mixer"]["ssm"]["name"] for layer in layers} == {"chunked"}


def test_support_is_checked_against_the_device_the_model_will_run_on() -> None:
    import zoo
    from zoo.errors import BackendUnsupportedError
    from zoo_plugins.mamba_ssm import MambaSSM

    ok, why = MambaSSM.is_available()
    if not ok:
        pytest.skip(f"mamba_ssm unavailable: {why}")
    spec = resolve_spec("mamba2-tiny")
    spec, _ = spec_with_backends(spec, {"ssm": "mamba_ssm"})
    with pytest.raises(BackendUnsupportedError, match="runs on CUDA"):
        zoo.build(spec, device="cpu")  # checked against the CPU: refused
    model = zoo.build(spec, device="cpu", support_device="cuda")  # built on the CPU to run on a GPU
    assert next(model.parameters()).device.type == "cpu"


def test_conv_slot_is_overridden_like_the_others() -> None:
    import torch

    import zoo

    assert parse_backend_overrides(["conv=triton"]) == {"conv": "triton"}
    spec = resolve_spec("transmamba-tiny")
    new, applied = spec_with_backends(spec, {"conv": "triton"})
    assert applied == {"conv"}
    assert all(layer["mixer"]["conv"] == {"name": "triton", "params": {}} for layer in new["layers"])
    torch.manual_seed(0)
    model = zoo.build(new, device="cpu")  # the tests run Triton on its CPU interpreter
    assert {block.mixer.conv.registry_name for block in model.blocks} == {"triton"}
    assert "conv=triton" in zoo.builder.describe(model)
    torch.manual_seed(0)
    reference = zoo.build(spec, device="cpu")
    assert {block.mixer.conv.registry_name for block in reference.blocks} == {"torch"}  # the default
    tokens = torch.randint(0, model.spec.vocab_size, (2, 21))
    with torch.no_grad():
        want, got = reference(tokens), model(tokens)
    assert ((got - want).norm() / want.norm()).item() < 1e-5


def test_norm_slot_is_overridden_like_the_others() -> None:
    import torch

    import zoo

    assert parse_backend_overrides(["norm=triton"]) == {"norm": "triton"}
    spec = resolve_spec("mamba2-tiny")
    new, applied = spec_with_backends(spec, {"norm": "triton"})
    assert applied == {"norm"}
    assert all(layer["mixer"]["norm"] == {"name": "triton", "params": {}} for layer in new["layers"])
    torch.manual_seed(0)
    model = zoo.build(new, device="cpu")  # the tests run Triton on its CPU interpreter
    assert {block.mixer.norm.registry_name for block in model.blocks} == {"triton"}
    assert "norm=triton" in zoo.builder.describe(model)
    torch.manual_seed(0)
    reference = zoo.build(spec, device="cpu")
    assert {block.mixer.norm.registry_name for block in reference.blocks} == {"torch"}  # auto on the CPU
    assert model.state_dict().keys() == reference.state_dict().keys()
    tokens = torch.randint(0, model.spec.vocab_size, (2, 21))
    with torch.no_grad():
        want, got = reference(tokens), model(tokens)
    assert ((got - want).norm() / want.norm()).item() < 1e-5


@pytest.mark.parametrize(
    "choice, needles",
    [
        ("nosuch", ["--backend ssm=nosuch: unknown ssm backend 'nosuch'", "auto, chunked", "zoo list ssm"]),
        ("chunked:bogus=1", ["--backend ssm=chunked:bogus=1: bogus", "(chunked takes: chunk_size)"]),
    ],
)
def test_an_override_names_the_backends_or_params_once(choice: str, needles: list[str]) -> None:
    # one line for the override, not one spec error per layer
    with pytest.raises(ZooError) as info:
        spec_with_backends(resolve_spec("transmamba-tiny"), {"ssm": choice})
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "layers." not in message
    for needle in needles:
        assert needle in message


def test_a_written_spec_whose_vocabulary_the_task_replaces_gets_a_warning(recwarn) -> None:
    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4, seed=0)
    build_for_task("transmamba-tiny", task)  # a preset's vocabulary is a placeholder: no word
    assert not [w for w in recwarn if "vocab_size" in str(w.message)]
    spec = resolve_spec("transmamba-tiny")
    with pytest.warns(UserWarning, match="vocab_size 1000 is replaced by the task's 32"):
        model = build_for_task({**spec, "vocab_size": 1000}, task)
    assert model.embedding.weight.shape[0] == 32
    build_for_task({**spec, "vocab_size": 32}, task)
    assert not [w for w in recwarn if "vocab_size" in str(w.message)]
