"""`charlm serve`: its options come from ServeConfig, its mistakes are one line, and it serves."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from charlm.cli import cli
from charlm.cli import serve as serve_command
from charlm.cli.options import param_name
from charlm.options import flag_name, option_fields
from charlm.serve import ServeConfig
from tests.conftest import TINY_TEXT
from tests.tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("serve-cli") / "tiny", TINY_TEXT))


def test_every_serve_config_field_is_an_option_with_the_same_default():
    params = {p.name: p for p in cli.commands["serve"].params}
    assert len(option_fields(ServeConfig)) == len(dataclasses.fields(ServeConfig))
    for field, spec in option_fields(ServeConfig):
        param = params[param_name(field, spec)]
        assert flag_name(field, spec) in param.opts
        assert param.default == field.default and spec.help in param.help


def test_without_the_serve_extra_it_says_how_to_install_it(checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)  # `import starlette` now fails
    result = CliRunner().invoke(cli, ["serve", checkpoint], standalone_mode=True)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: charlm serve needs Starlette and Uvicorn, which are not installed: "
        'pip install "charlm[serve]"'
    )


def test_no_checkpoint_and_a_damaged_one_are_one_line_errors(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    monkeypatch.chdir(tmp_path)
    none = CliRunner().invoke(cli, ["serve"])
    assert none.exit_code == 1 and "charlm train" in none.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{", encoding="utf-8")
    broken = CliRunner().invoke(cli, ["serve", "broken"])
    assert broken.exit_code == 1 and broken.output.count("\n") == 1, broken.output


def test_listening_beyond_loopback_warns_what_it_exposes(checkpoint, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    listened, served = [], []
    # Nothing binds: the address is recorded, and the server returns at once.
    monkeypatch.setattr(serve_command, "listen", lambda host, port: listened.append((host, port)))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets))
    result = CliRunner().invoke(cli, ["serve", checkpoint, "--host", "0.0.0.0", "--port", "9"])
    assert result.exit_code == 0, result.output
    assert listened == [("0.0.0.0", 9)] and len(served) == 1
    assert "serving tiny at http://0.0.0.0:9/" in result.output
    assert "anyone who can reach this machine" in result.output
    quiet = CliRunner().invoke(cli, ["serve", checkpoint])
    assert "anyone" not in quiet.output and listened[1] == ("127.0.0.1", 8000)


def test_a_port_in_use_is_a_one_line_error(checkpoint):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", checkpoint, "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert result.output.count("\n") == 1


@pytest.mark.slow  # a new Python imports torch and loads the model
def test_charlm_serve_answers_on_loopback_and_stops_on_ctrl_c(checkpoint):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "charlm", "serve", checkpoint, "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        health = _get_json(f"http://127.0.0.1:{port}/health", server)
        assert health["status"] == "ok" and health["models"][0]["id"] == "tiny"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert f"serving tiny at http://127.0.0.1:{port}/" in stderr


def _get_json(url: str, server: subprocess.Popen, seconds: float = 60) -> dict:
    """GET `url` once the server answers (it needs a moment to import torch and load)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url} within {seconds} s")
