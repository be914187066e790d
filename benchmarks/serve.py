"""Serving benchmark: what the HTTP server adds to drawing text, and what many clients get.

    python -m benchmarks.serve            # a 2-layer LSTM of 512 units (random weights)
    python -m benchmarks.serve --quick    # a small model and few tokens: a smoke run for CI

1. Time to first token: a streamed request (prefix of 200 characters) until its first piece
   of text arrives, against `Sampler.stream` in this process until its first piece.
2. Streaming rate: one client streaming a long completion, in tokens per second, against
   `Sampler.stream` in this process (target: >= 90%); served with the default
   `--stream-interval` and with `--stream-interval 0` (an event for every piece).
3. Throughput: 1, 4 and 16 clients streaming at once (each its own seed), in tokens per second
   all together, with the server's batching on (one network step for every request) and off
   (`--no-batch`: a step per request, in turn).

The servers are `charlm serve` in subprocesses on loopback ports (batching or not), so the
clients here do not share their interpreter; they and the in-process figures use the same
number of CPU threads. Runs that are compared alternate (here / served; batched / in turn), so
that on a shared machine both sides of a comparison meet the same load.
The model has random weights: speed does not depend on what it learned. Each figure is the
median of a few repeats. Tables go to stdout, everything to benchmarks/results/serve.json.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
import torch

from benchmarks.common import BenchmarkCommand, print_table, results_option, write_results
from charlm.checkpoint import save_checkpoint
from charlm.device import DEVICE_CHOICES
from charlm.models import RNNLM, ModelConfig
from charlm.sampling import Sampler, load
from charlm.tokenizers.char import CharTokenizer
from charlm.training.allocator import keep_freed_memory

RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"
FULL = {"hidden": 512, "tokens": 1000, "clients": (1, 4, 16), "client_tokens": 200, "repeats": 3}
QUICK = {"hidden": 64, "tokens": 200, "clients": (1, 4), "client_tokens": 50, "repeats": 1}
PREFIX = ("It was the best of times, it was the worst of times, " * 4)[:200]
SIDES = ("in_process", "served", "every_piece")
STARTUP_SECONDS = 180  # importing torch and loading the model, on a busy machine


def make_checkpoint(directory: Path, hidden: int) -> Path:
    tokenizer = CharTokenizer.train(string.printable)
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(tokenizer.vocab_size, hidden_size=hidden, num_layers=2))
    return save_checkpoint(directory / "bench", model, tokenizer)


@contextmanager
def server(checkpoint: Path, device: str, threads: int, batch: bool, interval: float | None = None):
    """`charlm serve` in a subprocess (`interval`: its --stream-interval, None: the default);
    yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        *(sys.executable, "-m", "charlm", "serve", str(checkpoint), "--port", str(port)),
        *("--device", device, "--threads", str(threads), "--max-tokens", "100000"),
        "--batch" if batch else "--no-batch",
        *(() if interval is None else ("--stream-interval", str(interval))),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"charlm serve exited with status {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise click.ClickException(f"charlm serve did not answer within {STARTUP_SECONDS} s")


async def stream_one(client: httpx.AsyncClient, tokens: int, seed: int) -> dict[str, float]:
    """One streamed completion: seconds to the first text, in all, and tokens drawn."""
    body = {
        "prompt": PREFIX,
        "max_tokens": tokens,
        "seed": seed,
        "temperature": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, drawn = None, 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            if first is None and '"text":""' not in line and '"choices":[]' not in line:
                first = time.perf_counter() - start
            if '"usage"' in line:
                drawn = json.loads(line[6:])["usage"]["completion_tokens"]
    return {"first_s": first, "total_s": time.perf_counter() - start, "tokens": drawn}


async def clients_at_once(url: str, clients: int, tokens: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        runs = await asyncio.gather(*(stream_one(client, tokens, s) for s in range(clients)))
        wall = time.perf_counter() - start
    return {
        "tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "first_token_ms": statistics.median(r["first_s"] for r in runs) * 1000,
    }


def in_process(sampler: Sampler, tokens: int, seed: int) -> dict[str, float]:
    """`Sampler.stream` here: seconds to the first piece, and tokens per second."""
    start = time.perf_counter()
    pieces = sampler.stream(PREFIX, tokens, temperature=1.0, seed=seed)
    next(pieces)
    first = time.perf_counter() - start
    for _ in pieces:
        pass
    return {"first_token_ms": first * 1000, "tokens_per_s": tokens / (time.perf_counter() - start)}


def one_client(
    sampler: Sampler, urls: dict[str, str], tokens: int, repeats: int
) -> dict[str, float]:
    """Sections 1 and 2: a run here, then one on each server (`urls`: "served", the default
    settings, and others by name), in turn, so that on a shared machine every side meets the
    same load; the medians, and the median of each run's ratio to the run here before it."""
    in_process(sampler, 20, seed=0)  # warm-ups
    for url in urls.values():
        asyncio.run(clients_at_once(url, 1, 20))
    runs = []
    for seed in range(repeats):
        here = in_process(sampler, tokens, seed)
        there = {name: asyncio.run(clients_at_once(url, 1, tokens)) for name, url in urls.items()}
        runs.append((here, there))
    found = {
        "in_process_first_token_ms": statistics.median(h["first_token_ms"] for h, _ in runs),
        "in_process_tokens_per_s": statistics.median(h["tokens_per_s"] for h, _ in runs),
    }
    for name in urls:
        found |= {
            f"{name}_first_token_ms": statistics.median(t[name]["first_token_ms"] for _, t in runs),
            f"{name}_tokens_per_s": statistics.median(t[name]["tokens_per_s"] for _, t in runs),
            f"{name}_ratio": statistics.median(
                t[name]["tokens_per_s"] / h["tokens_per_s"] for h, t in runs
            ),
        }
    return found


def many_clients(urls: dict[str, str], clients: int, tokens: int, repeats: int) -> dict:
    """Section 3 for one number of clients: each server in turn, `repeats` times."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    for url in urls.values():
        asyncio.run(clients_at_once(url, clients, min(tokens, 20)))  # warm-up
    for _ in range(repeats):
        for name, url in urls.items():
            runs[name].append(asyncio.run(clients_at_once(url, clients, tokens)))
    row: dict[str, Any] = {"clients": clients}
    for name, results in runs.items():
        row[name] = {key: statistics.median(r[key] for r in results) for key in results[0]}
    row["speedup"] = row["batched"]["tokens_per_s"] / row["in_turn"]["tokens_per_s"]
    return row


@click.command(cls=BenchmarkCommand)
@click.option("--quick", is_flag=True, help="A small model and few tokens (a smoke run).")
@click.option("--hidden", type=int, default=None, help="Hidden units per layer.")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="cpu", show_default=True)
@click.option(
    "--threads", type=int, default=1, show_default=True, help="CPU threads, here and served."
)
@results_option(RESULTS)
def main(quick: bool, hidden: int | None, device: str, threads: int, out: Path) -> None:
    """Time to first token, streaming rate and throughput of `charlm serve`."""
    settings = dict(QUICK if quick else FULL)
    settings["hidden"] = hidden or settings["hidden"]
    torch.set_num_threads(threads)
    # The server draws on a worker thread, whose malloc arena keeps freed memory; this
    # process's main thread, left alone, gives it back and page-faults it in again every token,
    # which made the same sampling half as fast here (docs/benchmarks.md). Compare like with like.
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = make_checkpoint(Path(scratch), settings["hidden"])
        sampler = load(checkpoint, device=device)
        with (
            server(checkpoint, device, threads, batch=True) as batched,
            server(checkpoint, device, threads, batch=True, interval=0) as every_piece,
            server(checkpoint, device, threads, batch=False) as in_turn,
        ):
            served = {"served": batched, "every_piece": every_piece}
            single = one_client(sampler, served, settings["tokens"], settings["repeats"])
            urls = {"batched": batched, "in_turn": in_turn}
            throughput = [
                many_clients(urls, n, settings["client_tokens"], settings["repeats"])
                for n in settings["clients"]
            ]
    results = {
        "settings": {**settings, "device": device, "threads": threads, "prefix": len(PREFIX)},
        "one_client": single,
        "throughput": throughput,
    }
    report(results)
    write_results(out, results)


def report(results: dict[str, Any]) -> None:
    one = results["one_client"]
    print("1. time to first token (ms), 200-character prefix; served with the default")
    print("   --stream-interval, and with --stream-interval 0 (an event for every piece)")
    print_table(
        ["", "in process", "served", "every piece"],
        [["median"] + [one[f"{side}_first_token_ms"] for side in SIDES]],
    )
    print("\n2. streaming one completion (tokens/s; target: served >= 90% of in process)")
    print_table(
        ["", "in process", "served", "ratio", "every piece", "ratio"],
        [["median", one["in_process_tokens_per_s"], one["served_tokens_per_s"],
          one["served_ratio"], one["every_piece_tokens_per_s"], one["every_piece_ratio"]]],
    )  # fmt: skip
    print("\n3. clients at once: tokens/s in all (median first token, ms)")
    rows = [
        [
            row["clients"],
            row["batched"]["tokens_per_s"],
            row["batched"]["first_token_ms"],
            row["in_turn"]["tokens_per_s"],
            row["in_turn"]["first_token_ms"],
            row["speedup"],
        ]
        for row in results["throughput"]
    ]
    print_table(
        ["clients", "batched", "first ms", "in turn", "first ms", "batched / in turn"], rows
    )


if __name__ == "__main__":
    main()
