"""The training-throughput benchmark (zoo.training.throughput, ``zoo bench --suite train``,
benchmarks/train_throughput.py) on the CPU at tiny size: rows, JSON fields, failing rows,
and the model-FLOP count behind MFU."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.flops import train_flops_per_token
from zoo.training import throughput, throughput_report

SMOKE = ["--device", "cpu", "--size", "tiny", "--tokens-per-step", "256", "--steps", "2", "--warmup", "1"]


def _report(out: Path) -> dict:
    return json.loads((out / "train_throughput.json").read_text())


@pytest.mark.slow
def test_cpu_smoke_run_writes_json_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "--suite",
            "train",
            *SMOKE,
            "--seq-lens",
            "64",
            "128",
            "--no-compile",
            "--models",
            "transformer",
            "transmamba",
            "hf-llama",
            "--peak-tflops",
            "1",
            "--out",
            str(out),
        ]
    )
    report = _report(out)
    assert code == 0
    assert (out / "train_throughput.png").stat().st_size > 0
    for key in ("date", "device", "command", "config", "backends"):
        assert key in report
    assert report["versions"]["torch"] == torch.__version__ and report["backends"] == {}
    assert report["command"].startswith("zoo ")
    rows = {(row["model"], row["seq_len"]): row for row in report["rows"]}
    assert len(rows) == 6
    for model in ("transformer", "transmamba"):
        for seq_len, batch in ((64, 4), (128, 2)):
            row = rows[model, seq_len]
            assert "error" not in row, row
            assert row["batch_size"] == batch and row["batch_size"] * seq_len == 256
            assert row["tokens_per_s"] > 0 and math.isfinite(row["loss"]) and row["compiled"] is False
            assert row["params"] == zoo.build(f"{model}-tiny", device="meta").num_parameters()
            assert row["mfu"] == pytest.approx(row["train_flops_per_token"] * row["tokens_per_s"] / 1e12, rel=1e-2)
            assert row["precision"] == "fp32" and row["fused_adamw"] is False
    assert rows["transformer", 64]["time_vs_transformer"] == 1.0
    backends = "attention=sdpa, conv=torch, converter=chunked, norm=torch, ssm=chunked"
    assert rows["transmamba", 64]["backends"] == backends
    anchor = rows["hf-llama", 64]
    if importlib.util.find_spec("transformers") is None:
        assert "transformers is not installed" in anchor["skipped"]
    else:
        assert anchor["tokens_per_s"] > 0 and anchor["params"] == rows["transformer", 64]["params"]
    assert "| transmamba | 128 | 2 x 1 |" in capsys.readouterr().out


@pytest.mark.slow
def test_script_runs_compiled_with_the_eager_backend(tmp_path) -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "bench"
    argv = [
        *SMOKE,
        "--seq-lens",
        "64",
        "--models",
        "transformer",
        "--compile-backend",
        "eager",
        "--micro-batch-size",
        "2",
        "--no-plot",
        "--out",
        str(out),
    ]
    assert script.main(argv) == 0
    (row,) = _report(out)["rows"]
    assert row["compiled"] is True and row["grad_accum"] == 2 and row["tokens_per_s"] > 0, row
    assert _report(out)["command"] == "python benchmarks/train_throughput.py " + " ".join(argv)
    assert not (out / "train_throughput.png").exists()


@pytest.mark.slow
def test_a_failing_row_is_recorded_and_the_run_goes_on(monkeypatch) -> None:
    real_step = throughput._training_step

    def out_of_memory_for_mamba2(model, *args, **kwargs):
        if not any(hasattr(block.mixer, "attention") for block in model.blocks):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(throughput, "_training_step", out_of_memory_for_mamba2)
    config = throughput.ThroughputConfig(tokens_per_step=128, steps=1, warmup=1, compile=False)
    rows = throughput.run_throughput(["mamba2", "transformer"], [48, 64], size="tiny", config=config)
    by_key = {(row["model"], row["seq_len"]): row for row in rows}
    assert by_key["mamba2", 64]["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 9.00 GiB"
    assert "not a multiple of T=48" in by_key["transformer", 48]["error"]
    assert by_key["transformer", 64]["tokens_per_s"] > 0
    assert "| mamba2 | 64 |" in throughput_report.format_table(rows)


def test_train_flops_count_matmul_weights_and_causal_attention() -> None:
    tied = {**zoo.resolve_spec("transformer-tiny").model_dump(mode="json"), "tie_embeddings": True}
    model = zoo.build(tied, device="meta")
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    spec, T = model.spec, 512
    heads = spec.layers[0].mixer.params["n_heads"]
    attention = spec.n_layers * 2 * T * T * heads * (spec.d_model // heads)  # QK and AV, causal half
    assert train_flops_per_token(model, T) == pytest.approx(3 * (2 * linear * T + attention) / T)
    assert linear > model.num_parameters() - model.embedding.weight.numel()  # the tied LM head is a matmul


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--size", "2b"], "--size '2b': the sizes are tiny, small, 400m, 1.5b"),
        (["--models", "rwkv"], "--models 'rwkv': give an architecture"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--backend", "mlp=x"], "unknown slot 'mlp'"),
        (["--compile-mode", "reduce-overhead", "--no-compile"], "--compile-mode needs a compiled model"),
        (["--compile-mode", "reduce-overhead", "--compile-backend", "eager"], "--compile-mode is inductor's"),
        (["--compile-mode", "reduce-overhead", "--ac", "cheap"], "drop --ac or --compile-mode"),
    ],
)
def test_bad_flags_are_one_line_errors(flag, message, capsys) -> None:
    assert main(["bench", "--suite", "train", "--device", "cpu", *flag]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_rows_with_selective_checkpointing_run_the_trainers_wrapping(monkeypatch) -> None:
    from zoo.training import distributed

    seen = []
    real = distributed.prepare_model

    def spy(model, **kwargs):
        seen.append(kwargs["activation_checkpointing"])
        return real(model, **kwargs)

    monkeypatch.setattr(distributed, "prepare_model", spy)
    config = throughput.ThroughputConfig(
        tokens_per_step=64, steps=1, warmup=1, compile=False, activation_checkpointing="selective"
    )
    (row,) = throughput.run_throughput(["mamba2"], [32], size="tiny", config=config)
    assert seen == ["selective"] and row["tokens_per_s"] > 0, row
    assert row["activation_checkpointing"] == "selective"
    assert "mamba2 (selective AC)" in throughput_report.format_table([row])


def test_rows_with_the_mlp_hidden_recomputed_build_it_and_say_so(monkeypatch) -> None:
    import zoo

    built = []
    real_build = zoo.build

    def spy(spec, **kwargs):
        model = real_build(spec, **kwargs)
        built.append([block.mlp.recompute_hidden for block in model.blocks])
        return model

    monkeypatch.setattr(zoo, "build", spy)
    config = throughput.ThroughputConfig(tokens_per_step=64, steps=1, warmup=1, compile=False, mlp_hidden="recompute")
    (row,) = throughput.run_throughput(["transformer"], [32], size="tiny", config=config)
    assert row["mlp_hidden"] == "recompute" and row["tokens_per_s"] > 0, row
    assert built and all(built[0]), built
    assert "transformer (MLP hidden recomputed)" in throughput_report.format_table([row])
    (default,) = throughput.run_throughput(
        ["transformer"],
        [32],
        size="tiny",
        config=throughput.ThroughputConfig(tokens_per_step=64, steps=1, warmup=1, compile=False),
    )
    assert default["mlp_hidden"] == "preset" and "(MLP hidden" not in throughput_report.format_table([default])


def test_rows_with_the_ssd_gate_recomputed_build_it_and_say_so_where_there_is_one(monkeypatch) -> None:
    import zoo

    built = []
    real_build = zoo.build

    def spy(spec, **kwargs):
        model = real_build(spec, **kwargs)
        built.append([block.mixer.ssd.recompute_gate for block in model.blocks if hasattr(block.mixer, "ssd")])
        return model

    monkeypatch.setattr(zoo, "build", spy)
    config = throughput.ThroughputConfig(tokens_per_step=64, steps=1, warmup=1, compile=False, ssd_gate="recompute")
    ssd, attention = throughput.run_throughput(["mamba2", "transformer"], [32], size="tiny", config=config)
    assert ssd["ssd_gate"] == "recompute" and ssd["tokens_per_s"] > 0, ssd
    assert built[0] and all(built[0]), built
    assert attention["ssd_gate"] == "-" and attention["tokens_per_s"] > 0, attention
    table = throughput_report.format_table([ssd, attention])
    assert "mamba2 (z recomputed)" in table and "transformer (z" not in table


def test_rows_compiled_in_another_mode_build_it_and_say_so(monkeypatch) -> None:
    import zoo

    modes = []
    real_build = zoo.build

    def spy(spec, **kwargs):  # records the mode the row asks for, then runs eagerly (no inductor on the CPU here)
        modes.append(spec["compile"]["mode"])
        return real_build(spec, **{**kwargs, "compile": False})

    monkeypatch.setattr(zoo, "build", spy)
    config = throughput.ThroughputConfig(tokens_per_step=64, steps=1, warmup=1, compile_mode="reduce-overhead")
    (row,) = throughput.run_throughput(["transmamba"], [32], size="tiny", config=config)
    assert modes == ["reduce-overhead"] and row["tokens_per_s"] > 0, row
    assert row["compile_mode"] == "reduce-overhead"
    assert "transmamba (reduce-overhead)" in throughput_report.format_table([row])
    modes.clear()
    (default,) = throughput.run_throughput(
        ["transmamba"], [32], size="tiny", config=throughput.ThroughputConfig(tokens_per_step=64, steps=1, warmup=1)
    )
    assert modes == [None] and default["compile_mode"] == "default", default
    assert "(reduce-overhead)" not in throughput_report.format_table([default])
    with pytest.raises(ValueError, match="each block is compiled on its own"):
        throughput.ThroughputConfig(compile_mode="reduce-overhead", activation_checkpointing="selective")
