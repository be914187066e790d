"""`charlm serve`'s listening socket: an address it cannot listen on is a one-line error whose
hint points at the option to change (the CLI's own tests are in tests/cli/test_serve.py)."""

from __future__ import annotations

import socket

import click
import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.cli.serve import listen


def _refusal(host: str, port: int = 0) -> str:
    with pytest.raises(click.ClickException) as refused:
        listen(host, port)
    return refused.value.message


def test_a_host_that_is_not_this_machine_hints_at_host_not_port():
    # 192.0.2.1 (TEST-NET-1) is no machine's address: refused without asking any DNS server.
    _assert_host_hint(_refusal("192.0.2.1", 18733), "192.0.2.1")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    result = CliRunner().invoke(cli, ["serve", "x", "--host", "192.0.2.1", "--port", "18733"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    _assert_host_hint(result.output.removeprefix("Error: "), "192.0.2.1")


def test_a_host_name_that_does_not_resolve_hints_at_host(monkeypatch):
    # As socket.create_server raises it for --host 999.1.1.1 (no lookup: the result of a
    # real one depends on the machine's DNS).
    def unresolved(address, family):
        raise OSError(
            socket.EAI_NONAME,
            f"Name or service not known (while attempting to bind on address {address!r})",
        )

    monkeypatch.setattr(socket, "create_server", unresolved)
    _assert_host_hint(_refusal("999.1.1.1", 18733), "999.1.1.1")


def _assert_host_hint(message: str, host: str) -> None:
    assert message.startswith(f"cannot listen on {host}:18733: ")
    assert "--host" in message and "--port" not in message and "another server" not in message
    assert "while attempting" not in message  # the socket module's addition, the same again


def test_a_port_in_use_hints_at_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _refusal("127.0.0.1", port)
    assert "another server" in message and "--port" in message and "--host" not in message
