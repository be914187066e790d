"""`charlm serve`: the HTTP API and the playground page, over one or more checkpoints."""

from __future__ import annotations

import contextlib
import errno
import socket
from pathlib import Path
from typing import Any

import click

from charlm.cli import cli, stderr_console
from charlm.cli.generate import resolve_checkpoint
from charlm.cli.options import NonEmptyPath, config_options, config_values, inference_device
from charlm.models import IMPLS
from charlm.models.quantized import InferenceOptions
from charlm.serve import ServeConfig

INSTALL = 'pip install "charlm[serve]"'

_HOST_HINT = " (choose another with --host: an address of this machine, e.g. 127.0.0.1)"
# What to change, by the error: the port only when it is taken. A host that does not resolve
# fails in getaddrinfo, whose EAI_* codes create_server passes on as a plain OSError's errno.
_LISTEN_HINTS = {
    errno.EADDRINUSE: " (is another server using the port? choose another with --port)",
    errno.EADDRNOTAVAIL: _HOST_HINT,
    **{
        getattr(socket, name): _HOST_HINT
        for name in ("EAI_NONAME", "EAI_AGAIN", "EAI_FAIL", "EAI_NODATA", "EAI_ADDRFAMILY")
        if hasattr(socket, name)
    },
}


@cli.command()
@click.argument(
    "checkpoints", nargs=-1, metavar="[CHECKPOINT]...", type=NonEmptyPath(path_type=Path)
)
@config_options(ServeConfig)
@click.option(
    "--impl",
    type=click.Choice(list(IMPLS)),
    default=None,
    help="Run the recurrent layers with this implementation, e.g. torch to serve a "
    "--impl scratch model at full speed.  [default: the one that trained it]",
)
@config_options(InferenceOptions)
def serve(
    checkpoints: tuple[Path, ...],
    impl: str | None,
    quantize: str | None,
    ngram: bool,
    **params: Any,
) -> None:
    """Serve CHECKPOINTs over HTTP (default: the latest under ./checkpoints).

    The API follows OpenAI's completions (POST /v1/completions, streamed with "stream": true),
    so its clients work unchanged; /v1/models, /v1/score and /health as well. Open the
    address in a browser for the playground. Each model is named after its directory.
    Stop with Ctrl-C. See docs/serving.md.
    """
    uvicorn = _server_modules()
    from charlm.serve.app import create_app
    from charlm.serve.models import load_models

    config = ServeConfig(**config_values(ServeConfig, params))
    inference_device(config.device, quantize)  # before the port is taken
    paths = list(checkpoints) or [resolve_checkpoint(None)]
    listening = listen(config.host, config.port)  # a taken port fails before the loading
    models = load_models(paths, config, impl, quantize, ngram)
    console = stderr_console()
    names = ", ".join(model.id for model in models)
    host = f"[{config.host}]" if ":" in config.host else config.host
    console.print(f"serving {names} at http://{host}:{config.port}/ (Ctrl-C stops)")
    if not config.loopback:
        console.print(
            f"[bold]warning:[/] listening on {config.host}: anyone who can reach this machine "
            "can use the models, with no password (docs/serving.md)"
        )
    server = uvicorn.Server(uvicorn.Config(create_app(models, config), log_level="info"))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server ends: exit 0
        server.run(sockets=[listening])


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or a one-line error saying why it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        # create_server adds "(while attempting to bind on address ...)": the same again.
        reason = str(exc.strerror or exc).split(" (while attempting")[0]
        hint = _LISTEN_HINTS.get(exc.errno, "")
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}{hint}") from exc


def _server_modules() -> Any:
    """uvicorn, after checking that the serve extra is installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise click.ClickException(
            f"charlm serve needs Starlette and Uvicorn, which are not installed: {INSTALL}"
        ) from exc
    return uvicorn
