"""Sampler benchmark: how close drawing text comes to the cost of the bare network.

    python -m benchmarks.sampling            # the default model (2-layer LSTM, 512 units)
    python -m benchmarks.sampling --quick    # a small model and few tokens: a smoke run for CI
    python -m benchmarks.sampling --device cuda --num-samples 64   # batch 1 and 64 on a GPU

1. Per-token cost: `Sampler.generate` with one sample, against a bare loop that steps the same
   network one token at a time with its state carried and does nothing else (target: <= 1.3x):
   `model.step`, the sampler's own step, so that the ratio is what drawing and decoding add.
   Beside it, the plain loop a PyTorch user writes: the model called on each one-token
   sequence (`model(token, state)`, the recurrent layer's own call); and the sampler alone,
   drawing from a model that answers every step at once with the same scores (after an
   8-character prefix): its own time per token, which every model pays on top of its step.
2. Batches: `num_samples=16` in one call against 16 separate calls, in tokens per second
   (target: >= 8x); `--num-samples 64` for a GPU's batch of 64.
3. The naive way: re-running the whole text so far through the network for every new token,
   against the sampler, which primes once and carries the state.
4. Priming: the prefix in one forward call against feeding it one token at a time.
5. The draw itself: torch.multinomial against the inverse-CDF draw the sampler uses and a
   Gumbel-max draw, for a few batch and vocabulary sizes.
6. A 5-gram model mixed in (`charlm train --ngram 5`; counted on Tiny Shakespeare's text where
   ../shared is present, else on the prefix's): the same sampler with and without it, at batch
   1 and `--num-samples`, each token then also looked up in the n-gram's counts.

The model has random weights: speed does not depend on what it learned. Each figure is the
best of a few repeats. Tables go to stdout, everything to benchmarks/results/sampling.json.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from benchmarks.common import CORPORA, BenchmarkCommand, results_option, write_results
from charlm.device import DEVICE_CHOICES, resolve_device
from charlm.errors import ConfigError
from charlm.models import RNNLM, ModelConfig
from charlm.models.ngram import NgramModel
from charlm.sampling import Sampler
from charlm.sampling.strategies import draw
from charlm.tokenizers.char import CharTokenizer

RESULTS = Path(__file__).resolve().parent / "results" / "sampling.json"
FULL = {"hidden": 512, "tokens": 2000, "batch_tokens": 200, "naive_tokens": 100, "repeats": 3}
QUICK = {"hidden": 64, "tokens": 100, "batch_tokens": 30, "naive_tokens": 30, "repeats": 1}
PREFIX_TOKENS = 1000
NUM_SAMPLES = 16  # the batch of part 2 unless --num-samples says otherwise
ALONE_PREFIX = 8  # characters of prefix for the sampler alone
BOOK = CORPORA / "tinyshakespeare" / "input.txt"  # what part 6's 5-gram counts


def best_time(run: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Fastest of `repeats` runs, in seconds (after one warm-up run)."""
    run()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def bare_loop(model: RNNLM, prefix: torch.Tensor, tokens: int) -> None:
    """The network alone, stepped as the sampler steps it: prime, then `model.step` per
    token with the state carried."""
    _, state = model(prefix)
    token = prefix[:, -1]
    for _ in range(tokens):
        _, state = model.step(token, state)


@torch.inference_mode()
def layer_call_loop(model: RNNLM, prefix: torch.Tensor, tokens: int) -> None:
    """The plain loop: prime, then the model called on each one-token sequence."""
    _, state = model(prefix)
    token = prefix[:, -1:]
    for _ in range(tokens):
        _, state = model(token, state)


@torch.inference_mode()
def naive_loop(model: RNNLM, prefix: torch.Tensor, tokens: int) -> None:
    """Re-run everything so far for each new token (what the sampler avoids)."""
    text = prefix
    for _ in range(tokens):
        logits, _ = model(text)
        token = logits[:, -1].softmax(-1).multinomial(1)
        text = torch.cat([text, token], dim=1)


@torch.inference_mode()
def token_by_token(model: RNNLM, prefix: torch.Tensor) -> None:
    state = None
    for i in range(prefix.shape[1]):
        _, state = model(prefix[:, i : i + 1], state)


class AnswersAtOnce(nn.Module):
    """`model` primed as it is, but every step answers with the same scores at once: what
    a sampler takes of a token's time on its own."""

    def __init__(self, model: RNNLM) -> None:
        super().__init__()
        self.model = model
        self.scores = torch.randn(1, model.config.vocab_size, device=model.reference.device)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.model(tokens, state)

    def step(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.scores.expand(tokens.shape[0], -1), state


def per_token(sampler: Sampler, prefix: str, ids: torch.Tensor, n: int, repeats: int) -> list:
    device = sampler.device
    bare = best_time(lambda: bare_loop(sampler.model, ids, n), repeats, device)
    cases = {
        "sample (temperature 1)": {"temperature": 1.0},
        "sample (temperature 0.8)": {"temperature": 0.8},
        "greedy (temperature 0)": {"temperature": 0.0},
        "top-k 40, top-p 0.9, penalty 1.2": {
            "top_k": 40,
            "top_p": 0.9,
            "repetition_penalty": 1.2,
        },
    }
    plain = best_time(lambda: layer_call_loop(sampler.model, ids, n), repeats, device)
    rows = [
        {"case": "bare network loop (model.step)", "us_per_token": bare / n * 1e6, "ratio": 1.0},
        {"case": "plain loop (model per token)", "us_per_token": plain / n * 1e6,
         "ratio": plain / bare},
    ]  # fmt: skip
    for name, options in cases.items():
        seconds = best_time(
            lambda o=options: sampler.generate(prefix, n, seed=0, **o), repeats, device
        )
        rows.append({"case": name, "us_per_token": seconds / n * 1e6, "ratio": seconds / bare})
    alone = Sampler(AnswersAtOnce(sampler.model), sampler.tokenizer, device)
    # A short prefix: priming runs the real network, which would be the most of its time.
    short = prefix[:ALONE_PREFIX]
    seconds = best_time(lambda: alone.generate(short, n, 0.8, seed=0), repeats, device)
    rows.append({"case": "the sampler alone (temperature 0.8)", "us_per_token": seconds / n * 1e6,
                 "ratio": seconds / bare})  # fmt: skip
    return rows


def batches(
    sampler: Sampler, prefix: str, n: int, repeats: int, samples: int = NUM_SAMPLES
) -> dict[str, float]:
    device = sampler.device
    together = best_time(
        lambda: sampler.generate(prefix, n, seed=0, num_samples=samples), repeats, device
    )
    separate = best_time(
        lambda: [sampler.generate(prefix, n, seed=i) for i in range(samples)], repeats, device
    )
    total = n * samples
    return {
        "num_samples": samples,
        "tokens_per_s_batch": total / together,
        "tokens_per_s_separate": total / separate,
        "speedup": separate / together,
    }


def with_ngram(
    sampler: Sampler, prefix: str, n: int, repeats: int, samples: int = NUM_SAMPLES
) -> dict[str, Any]:
    """Tokens per second with and without a 5-gram model mixed in, at batch 1 and `samples`:
    cold (the n-gram's cache of next-token rows emptied before each run, as a model just
    loaded has it) and warm (each run repeats the last one's text, every row cached)."""
    text = BOOK.read_text(encoding="utf-8") if BOOK.is_file() else prefix * 50
    ngram = NgramModel.fit(sampler.tokenizer.encode_array(text, "skip"), sampler.vocab_size, 5)
    rows = []
    for batch in (1, samples):
        times = {}
        for name, model, cold in (("network", None, False), ("with 5-gram, cold", ngram, True),
                                  ("with 5-gram, warm", ngram, False)):  # fmt: skip

            def run(batch: int = batch, cold: bool = cold) -> None:
                if cold:
                    ngram.forget_rows()
                sampler.generate(prefix, n, seed=0, num_samples=batch)

            sampler.ngram, sampler.ngram_weight = model, 0.75
            times[name] = best_time(run, repeats, sampler.device)
        sampler.ngram, sampler.ngram_weight = None, 1.0
        rows.append({
            "num_samples": batch,
            **{f"tokens_per_s {k}": n * batch / s for k, s in times.items()},
            **{f"slowdown {k}": s / times["network"] for k, s in times.items() if k != "network"},
        })  # fmt: skip
    return {"ngram_text": str(BOOK) if BOOK.is_file() else "the prefix", "rows": rows}


def naive(sampler: Sampler, prefix: str, ids: torch.Tensor, n: int, repeats: int) -> dict:
    device = sampler.device
    naive_s = best_time(lambda: naive_loop(sampler.model, ids, n), repeats, device)
    ours = best_time(lambda: sampler.generate(prefix, n, seed=0), repeats, device)
    return {
        "prefix_tokens": ids.shape[1],
        "tokens": n,
        "naive_s": naive_s,
        "sampler_s": ours,
        "speedup": naive_s / ours,
    }


def priming(sampler: Sampler, ids: torch.Tensor, repeats: int) -> dict[str, float]:
    device = sampler.device
    prefix = sampler.tokenizer.decode(ids[0].tolist())
    one_call = best_time(lambda: sampler.generate(prefix, 0), repeats, device)  # primes only
    stepwise = best_time(lambda: token_by_token(sampler.model, ids), repeats, device)
    return {
        "prefix_tokens": ids.shape[1],
        "one_call_s": one_call,
        "token_by_token_s": stepwise,
        "speedup": stepwise / one_call,
    }


def draw_methods(logits: torch.Tensor, generator: torch.Generator) -> dict[str, Callable]:
    """Three ways to draw one id per row of `logits` from softmax(logits)."""
    uniform = torch.rand(logits.shape[0], 1, device=logits.device, generator=generator)

    def gumbel_max() -> torch.Tensor:
        noise = torch.empty_like(logits).exponential_(generator=generator).log_()
        return (logits - noise).argmax(-1)

    return {
        "multinomial": lambda: logits.softmax(-1).multinomial(1, generator=generator),
        "inverse_cdf": lambda: draw(logits, uniform),
        "gumbel_max": gumbel_max,
    }


def draws(device: torch.device, repeats: int, quick: bool) -> list[dict[str, Any]]:
    generator = torch.Generator(device=device).manual_seed(0)
    calls = 20 if quick else 200
    rows = []
    for batch, vocab in [(1, 100), (16, 100), (1, 10_000), (16, 10_000), (16, 33_000)]:
        logits = torch.randn(batch, vocab, device=device, generator=generator)
        row: dict[str, Any] = {"batch": batch, "vocab": vocab}
        for name, method in draw_methods(logits, generator).items():
            seconds = best_time(lambda m=method: [m() for _ in range(calls)], repeats, device)
            row[f"{name}_us"] = seconds / calls * 1e6
        rows.append(row)
    return rows


def print_report(results: dict[str, Any]) -> None:
    click.echo(
        f"model: {results['model']}  device: {results['device']}  threads: {results['threads']}\n"
    )
    click.echo(f"1. per-token cost, batch 1, {results['settings']['tokens']} tokens")
    for row in results["per_token"]:
        click.echo(
            f"   {row['case']:<36} {row['us_per_token']:9.1f} us/token {row['ratio']:6.2f}x bare"
        )
    b = results["batches"]
    click.echo(
        f"\n2. num_samples={b['num_samples']}: {b['tokens_per_s_batch']:,.0f} tokens/s; "
        f"{b['num_samples']} separate calls: {b['tokens_per_s_separate']:,.0f} tokens/s; "
        f"{b['speedup']:.1f}x"
    )
    n = results["naive"]
    click.echo(
        f"\n3. naive re-run of the prefix ({n['prefix_tokens']} + {n['tokens']} tokens): "
        f"{n['naive_s']:.3f} s vs sampler {n['sampler_s']:.3f} s: {n['speedup']:.1f}x"
    )
    p = results["priming"]
    click.echo(
        f"\n4. priming {p['prefix_tokens']} tokens: one call {p['one_call_s'] * 1e3:.1f} ms, "
        f"token by token {p['token_by_token_s'] * 1e3:.1f} ms: {p['speedup']:.1f}x"
    )
    click.echo("\n5. one draw (us): batch x vocab   multinomial  inverse-CDF  Gumbel-max")
    for r in results["draws"]:
        click.echo(
            f"   {r['batch']:>3} x {r['vocab']:<8} {r['multinomial_us']:12.1f} "
            f"{r['inverse_cdf_us']:12.1f} {r['gumbel_max_us']:11.1f}"
        )
    g = results["ngram"]
    click.echo(f"\n6. a 5-gram mixed in (counted on {g['ngram_text']}): tokens/s")
    for r in g["rows"]:
        click.echo(
            f"   num_samples={r['num_samples']:<3} network {r['tokens_per_s network']:9,.0f}  "
            f"with 5-gram: cold {r['tokens_per_s with 5-gram, cold']:9,.0f} "
            f"({r['slowdown with 5-gram, cold']:.2f}x the time), warm "
            f"{r['tokens_per_s with 5-gram, warm']:9,.0f} ({r['slowdown with 5-gram, warm']:.2f}x)"
        )


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A small model and few tokens (a smoke run).")
@click.option(
    "--device",
    type=click.Choice(DEVICE_CHOICES),
    default="cpu",
    show_default=True,
    help="Where to run the model.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch.  [default: torch's choice]",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=NUM_SAMPLES,
    show_default=True,
    help="Samples drawn together in part 2, against as many calls of one.",
)
@results_option(RESULTS)
def main(quick: bool, device: str, threads: int | None, num_samples: int, out: Path) -> None:
    """Time the sampler against the bare network (see the module docstring)."""
    if threads is not None:
        torch.set_num_threads(threads)
    settings = QUICK if quick else FULL
    try:
        resolved = resolve_device(device)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    tokenizer = CharTokenizer(list(string.printable))
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, hidden_size=settings["hidden"])
    sampler = Sampler(RNNLM(config), tokenizer, resolved)
    prefix = ("It was the best of times, it was the worst of times. " * 40)[:PREFIX_TOKENS]
    ids = torch.as_tensor(tokenizer.encode_array(prefix), device=resolved).unsqueeze(0)
    short_prefix, short_ids = prefix[:200], ids[:, :200]
    repeats = settings["repeats"]
    results = {
        "quick": quick,
        "settings": settings,
        "model": config.to_dict(),
        "device": str(resolved),
        "threads": torch.get_num_threads(),
        "per_token": per_token(sampler, short_prefix, short_ids, settings["tokens"], repeats),
        "batches": batches(sampler, short_prefix, settings["batch_tokens"], repeats, num_samples),
        "naive": naive(sampler, short_prefix, short_ids, settings["naive_tokens"], repeats),
        "priming": priming(sampler, ids, repeats),
        "draws": draws(resolved, repeats, quick),
        "ngram": with_ngram(sampler, short_prefix, settings["batch_tokens"], repeats, num_samples),
    }
    print_report(results)
    click.echo(f"\nresults written to {write_results(out, results)}")


if __name__ == "__main__":
    main()
