"""``zoo generate CHECKPOINT_OR_PRESET --prompt TEXT``: sample a continuation, streaming tokens.

A checkpoint brings its tokenizer (``zoo.checkpoint.load_tokenizer``); a preset (random
weights) uses the byte tokenizer of ``zoo.data``. Tokens are printed as they come.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.cli._common import one_line_warnings
from zoo.cli._transpoints import add_transpoint_args, transpoint_options
from zoo.cli.train import add_backend_arg

# From this many new tokens on, a run whose text goes to a file (not the terminal) shows a
# tqdm bar on the terminal's stderr; text streaming to the terminal is its own progress.
PROGRESS_MIN_TOKENS = 256
# --max-new-tokens from which the command says up front what it is about to do
LONG = 1024


def register(sub: argparse._SubParsersAction) -> None:
    text = "sample text from a checkpoint or preset (streams tokens)"
    p = sub.add_parser("generate", help=text, description=text)
    p.add_argument("model", metavar="CHECKPOINT_OR_PRESET")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help=f"tokens to sample; from {LONG} on, a line on stderr says what that takes first",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-eos", action="store_true", help="do not stop at the tokenizer's eos token")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--compile", action="store_true", help="compiled decode step (reduce-overhead on cuda)")
    p.add_argument(
        "--allow-large", action="store_true", help="allocate even when the estimate exceeds the device's free memory"
    )
    add_backend_arg(p)
    add_transpoint_args(p)
    p.set_defaults(func=run)


def check_sampling_flags(args: argparse.Namespace) -> None:
    """The sampling flags, each refusal one line naming the flag, before a model is loaded."""
    import re

    from zoo.errors import ZooError
    from zoo.inference.sampling import sampling_problem

    problem = sampling_problem(
        args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    if problem is not None:
        name, value, rule = problem
        rule = re.sub(r" or (be )?None$", "", rule)  # a flag left out is the None
        raise ZooError(f"--{name.replace('_', '-')} {value}: {rule}")


def load_model_and_tokenizer(name: str, device: str, backends: dict[str, str] | None = None, allow_large: bool = False):
    import zoo
    from zoo.builder import resolve_spec
    from zoo.data.tokenizer import ByteTokenizer
    from zoo.overrides import spec_with_backends

    if Path(name).exists():
        from zoo.checkpoint import load_tokenizer, open_checkpoint
        from zoo.errors import ZooError

        kind = open_checkpoint(name, verify=False).trainer_state.get("task", {}).get("task", "text")
        if kind != "text":  # its tokens are the task's symbols: there is no text to prompt it with
            raise ZooError(f"{name} was trained on the {kind} task, not on text; zoo generate needs a text checkpoint")
        return zoo.load(name, device=device, backends=backends, allow_large=allow_large), load_tokenizer(name)
    spec = resolve_spec(name).model_dump(mode="json")
    if backends:
        spec, _ = spec_with_backends(spec, backends, strict=True, label=repr(name))
    return zoo.build(spec, device=device, requires_grad=False, allow_large=allow_large), ByteTokenizer()


def run(args: argparse.Namespace) -> int:
    import torch

    import zoo
    from zoo.overrides import parse_backend_overrides

    check_sampling_flags(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model_and_tokenizer(
        args.model, device, parse_backend_overrides(args.backend), args.allow_large
    )
    model.eval()
    ids = tokenizer.encode(args.prompt)
    if not ids:
        raise ValueError("--prompt encodes to no tokens")
    if max(ids) >= model.spec.vocab_size:
        raise ValueError(
            f"the prompt has token ids up to {max(ids)}, the model's vocabulary is {model.spec.vocab_size}"
        )
    prompt = torch.tensor([ids], device=device)
    import warnings

    from zoo.inference import TransPointWarning
    from zoo.inference.sampling import check_generation_args

    with warnings.catch_warnings():  # zoo.generate below warns, once, about an override
        warnings.simplefilter("ignore", TransPointWarning)
        # every argument checked before the prompt is echoed: a refusal stays the only line
        chosen = check_generation_args(
            model, prompt, args.max_new_tokens, allow_large=args.allow_large, **transpoint_options(args)
        )
    if args.max_new_tokens >= LONG:
        # a long run streams its tokens, but on a CPU it lasts minutes: say up front what it will take
        from zoo.memory import cache_bytes, format_bytes

        positions = len(ids) + args.max_new_tokens
        size = cache_bytes(model, 1, positions, transpoints=chosen)
        print(
            f"generating up to {args.max_new_tokens} tokens on {device} (a cache of {positions} positions, "
            f"{format_bytes(size)}); tokens stream as they come, Ctrl-C stops",
            file=sys.stderr,
        )
    eos_id = None if args.no_eos else getattr(tokenizer, "eos_id", None)
    pending: list[int] = []
    bar = None
    if args.max_new_tokens >= PROGRESS_MIN_TOKENS and not sys.stdout.isatty() and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.max_new_tokens, unit="tok", file=sys.stderr, leave=False, dynamic_ncols=True)

    def stream(tokens: list[int]) -> None:
        if bar is not None:
            bar.update(1)
        token = tokens[0]
        if token == eos_id:
            return
        pending.append(token)
        text = tokenizer.decode(pending)
        # wait for the rest of a multi-byte character (at most 4 bytes: never stall on bad bytes)
        if not text.endswith("\ufffd") or len(pending) >= 4:
            sys.stdout.write(text)
            sys.stdout.flush()
            pending.clear()

    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    with one_line_warnings("generate"):  # a TransPoint override that differs from training
        zoo.generate(
            model,
            prompt,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            eos_id=eos_id,
            on_token=stream,
            compile=args.compile,
            compile_mode="reduce-overhead" if device.startswith("cuda") else None,
            allow_large=args.allow_large,
            **transpoint_options(args),
        )
    if bar is not None:
        bar.close()
    if pending:
        sys.stdout.write(tokenizer.decode(pending))
    sys.stdout.write("\n")
    return 0
