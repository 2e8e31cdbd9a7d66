"""An lm-evaluation-harness model for zoo models (the ``eval`` extra: ``lm_eval``).

Importing this module registers the model as ``zoo`` in lm-eval's model registry. lm-eval
0.4 discovers no third-party models on its own, so its CLI is run through this package::

    python -m zoo.lm_eval run --model zoo --model_args pretrained=DIR --device cpu --batch_size 8 \
        --tasks lambada_openai

(every argument goes to lm-eval's CLI; lm-eval's ``--device`` defaults to ``cuda:0`` and its
``--batch_size`` is passed to the model, so neither goes into ``--model_args``), or from Python with
``lm_eval.simple_evaluate(model=ZooLM(pretrained=DIR), tasks=[...])``. ``pretrained`` is a
``save_pretrained`` directory or a training checkpoint (or run) directory.

Scoring: a request's context and continuation are tokenized together and split where
the context's own tokens end (so a BPE merge across the boundary counts toward the
continuation), sequences longer than ``max_length`` keep their last tokens, and rows are
right-padded in batches (the model is causal, so padding after a row never changes it).

TransPoints: the model runs at the TransPoints it was trained with (absolute, so a row's
layers switch at the same positions whatever the batch's padded width); ``transpoints=``
(one P per layer; on lm-eval's command line ``transpoints=0:16:32``, cycled over layers)
or ``schedule=NAME`` overrides them, with one ``TransPointWarning`` when they differ. A
model without a record (built from a spec, never trained by the zoo) runs its schedule
evaluated once at ``max_length``, as absolute TransPoints: a row's score never depends on
the batch it is padded into.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as exc:  # pragma: no cover - exercised only without lm_eval
    from zoo.errors import ZooError

    raise ZooError("the lm-eval adapter needs lm_eval: pip install 'zoo[eval]'") from exc

import zoo
from zoo.errors import ZooError
from zoo.inference.transpoints import TransPointWarning, resolve_transpoints
from zoo.schedule import clamp

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _load(pretrained: str, device: str, dtype: torch.dtype | None) -> tuple[torch.nn.Module, Any]:
    from pathlib import Path

    if (Path(pretrained) / "config.json").is_file():
        return zoo.from_pretrained(pretrained, device=device, dtype=dtype)
    from zoo.checkpoint import load_tokenizer

    return zoo.load(pretrained, device=device, dtype=dtype), load_tokenizer(pretrained)


@register_model("zoo")
class ZooLM(LM):
    """lm-eval's ``LM`` over a zoo model: ``loglikelihood``, ``loglikelihood_rolling``, ``generate_until``."""

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        model: torch.nn.Module | None = None,
        tokenizer: Any | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        batch_size: int | str = 1,
        max_length: int | str = 2048,
        max_gen_toks: int | str = 256,
        transpoints: Any = None,
        schedule: Any = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        if (pretrained is None) == (model is None):
            raise ZooError("ZooLM: give pretrained=DIR or model=... (with tokenizer=...), not both")
        if dtype is not None and dtype not in _DTYPES:
            raise ZooError(f"ZooLM: dtype {dtype!r} is not one of {sorted(_DTYPES)}")
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ZooError(f"ZooLM: device {device!r} (lm-eval's default) has no CUDA here; pass --device cpu")
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise ZooError(f"ZooLM: batch_size must be a positive integer, got {batch_size!r}")
        if pretrained is not None:
            model, tokenizer = _load(str(pretrained), device, _DTYPES.get(dtype) if dtype else None)
        if tokenizer is None:
            raise ZooError("ZooLM: the model has no tokenizer; pass tokenizer=... (zoo.data.make_tokenizer)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._device = torch.device(device)
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.max_gen_toks = int(max_gen_toks)
        # Absolute per-layer P, resolved once (one warning for an override); None: the training
        # record (already absolute). Without a record the schedule is fixed at max_length, so a
        # row's TransPoints never depend on the padded width of the batch it lands in.
        self.transpoints: list[int] | None = None
        if transpoints is not None or schedule is not None:
            self.transpoints = resolve_transpoints(
                self.model, self.max_length, transpoints=transpoints, schedule=schedule
            )
        elif getattr(self.model, "trained_transpoints", None) is None:
            self.transpoints = self.model.default_transpoints(self.max_length)
        # lm-eval passes batch_size/max_batch_size/device etc. to every model; others are ignored.
        self.unused = unused
        # The token every sequence is scored after, for a context-free request.
        self.prefix_id = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return f"zoo-{self.tokenizer.kind}"

    # ------------------------------------------------------------------ scoring

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # Trailing spaces of the context belong to the continuation (as lm-eval's own models do).
        stripped = context.rstrip(" ")
        continuation = context[len(stripped) :] + continuation
        whole = self.tokenizer.encode(stripped + continuation)
        context_ids = self.tokenizer.encode(stripped)
        return context_ids, whole[len(context_ids) :]

    @torch.no_grad()
    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(context ids, continuation ids) -> (sum of log p(continuation), all greedy).

        An empty context is the prefix token alone (zoo models train on text with no BOS)."""
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        rows = []
        for index, (context, continuation) in enumerate(pairs):
            if not continuation:
                results[index] = (0.0, True)
                continue
            tokens = ((context or [self.prefix_id]) + continuation)[-(self.max_length + 1) :]
            rows.append((index, tokens[:-1], tokens[len(tokens) - len(continuation) :]))
        rows.sort(key=lambda row: -len(row[1]))  # similar lengths share a batch
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            width = max(len(inputs) for _, inputs, _ in batch)
            ids = torch.full((len(batch), width), self.tokenizer.pad_id, dtype=torch.long)
            for row, (_, inputs, _) in enumerate(batch):
                ids[row, : len(inputs)] = torch.tensor(inputs)
            transpoints = None if self.transpoints is None else clamp(self.transpoints, width)
            logits = self.model(ids.to(self._device), transpoints=transpoints)
            logprobs = F.log_softmax(logits.float(), dim=-1).cpu()
            for row, (index, inputs, targets) in enumerate(batch):
                span = logprobs[row, len(inputs) - len(targets) : len(inputs)]
                target = torch.tensor(targets)
                total = span.gather(-1, target[:, None]).sum().item()
                results[index] = (float(total), bool((span.argmax(-1) == target).all()))
        return results  # type: ignore[return-value]

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        return self._score([self._split(*request.args) for request in requests])

    def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
        totals = []
        for request in requests:
            (text,) = request.args[:1]
            # Windows of max_length tokens, each scored once; the first after the prefix token.
            pairs = [
                make_disjoint_window(window)
                for window in get_rolling_token_windows(self.tokenizer.encode(text), self.prefix_id, self.max_length, 1)
            ]
            totals.append(sum(score for score, _ in self._score(pairs)))
        return totals

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate_until(self, requests: list[Any]) -> list[str]:
        outputs = []
        for request in requests:
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            sample = bool(gen_kwargs.pop("do_sample", False))
            temperature = float(gen_kwargs.pop("temperature", 1.0 if sample else 0.0)) if sample else 0.0
            ids = (self.tokenizer.encode(context) or [self.prefix_id])[-max(1, self.max_length - max_new) :]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TransPointWarning)  # the override warned once, in __init__
                new = zoo.generate(
                    self.model,
                    torch.tensor([ids], device=self._device),
                    max_new,
                    temperature=temperature,
                    top_k=gen_kwargs.pop("top_k", None),
                    top_p=gen_kwargs.pop("top_p", None),
                    eos_id=self.tokenizer.eos_id,
                    transpoints=self.transpoints,
                )
            text = self.tokenizer.decode(t for t in new[0].tolist() if t != self.tokenizer.eos_id)
            for stop in until:
                if stop and stop in text:
                    text = text.split(stop, 1)[0]
            outputs.append(text)
        return outputs
