"""The settings of a running server, each written once (its `charlm serve` option comes from
the field, as for training: see charlm/options.py)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from charlm.device import DEVICE_CHOICES
from charlm.errors import ConfigError
from charlm.options import option

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens, what it loads the models on, and the limits of a request."""

    host: str = option(
        "127.0.0.1",
        "Address to listen on. Only this machine can connect to the default; 0.0.0.0 lets "
        "anyone who can reach the machine use the models (docs/serving.md).",
    )
    port: int = option(8000, "Port to listen on.", low=1, high=65535)
    device: str = option(
        "auto",
        "Run the models here; auto uses a CUDA GPU when there is one.",
        choices=DEVICE_CHOICES,
    )
    threads: int | None = option(
        None,
        "CPU threads for tensor maths (1 suits small models on a busy machine).",
        low=1,
        shown_default="PyTorch's choice",
    )
    max_tokens: int = option(
        4096, "The most tokens one completion may ask for (max_tokens).", low=1
    )
    max_choices: int = option(
        16, "The most completions one request may ask for (n times the prompts).", low=1
    )
    max_body: int = option(
        1 << 20,
        "The largest request body, in bytes (prompts, texts to score or classify).",
        low=1024,
        metavar="BYTES",
    )
    max_batch: int = option(
        64,
        "The most samples one model draws at once; later requests wait for room.",
        low=1,
    )
    stream_interval: float = option(
        0.02,
        "Send a stream's new text at most this often: pieces drawn in between go out in one "
        "event (the first piece and the end go at once; 0: an event per piece).",
        low=0,
        high=1,
        metavar="SECONDS",
    )
    batch: bool = option(
        True,
        "Draw the requests for the same model together, one network step for all of them "
        "(--no-batch: a step per request, in turn; docs/benchmarks.md compares the two).",
        negatable=True,
    )

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host must be an address, e.g. 127.0.0.1")

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect: localhost, 127.0.0.0/8 or ::1."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a name
            return self.host.lower() in LOOPBACK_HOSTS

    def limits(self) -> dict[str, int]:
        """What a client may ask for (GET /health shows them)."""
        names = ("max_tokens", "max_choices", "max_body", "max_batch")
        return {name: getattr(self, name) for name in names}
