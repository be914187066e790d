"""The interactive prompt in a real terminal: `charlm generate --interactive` inside tmux.

Needs tmux (`.ci/run` installs it); skipped, saying so, without it.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY_TEXT
from tests.tiny_models import save_tiny_checkpoint

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")
# A terminal's own line editor keeps at most this many characters of a typed line.
TERMINAL_LINE_LIMIT = 4095


class Terminal:
    """One command in a detached tmux session on a server of its own."""

    def __init__(self, command: list[str]) -> None:
        self.server = f"charlm-test-{os.getpid()}"
        self._tmux("new-session", "-d", "-x", "160", "-y", "50", " ".join(command))

    def _tmux(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-L", self.server, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        """Everything the terminal has shown, wrapped lines joined."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-")

    def wait_for(self, text: str, seconds: float = 60, times: int = 1) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if (shown := self.screen()).count(text) >= times:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()[-2000:]}")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def paste(self, text: str) -> None:
        """`text` as a terminal receives a paste, then Enter."""
        self._tmux("set-buffer", "-b", "paste", text)
        self._tmux("paste-buffer", "-b", "paste", "-d")
        self.keys("Enter")

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.server, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", TINY_TEXT))


@pytest.mark.slow
def test_a_pasted_prefix_longer_than_a_terminal_line_arrives_whole(checkpoint):
    terminal = Terminal(
        [sys.executable, "-m", "charlm", "generate", checkpoint, "--interactive", "--length", "3"]
    )
    try:
        terminal.wait_for("/quit to end")
        # A character the model never saw, only at the very end: the prompt names it only
        # if the whole line reached it (the terminal's own editor cut it after 4,095).
        line = "the " * 1500 + "\u65e5"
        assert len(line) > TERMINAL_LINE_LIMIT
        terminal.paste(line)
        error = terminal.wait_for("Error:").split("Error:")[-1].splitlines()[0]
        assert "\u65e5" in error, error
        terminal.paste("/quit")
    finally:
        terminal.close()


@pytest.mark.slow
def test_the_up_arrow_recalls_the_last_line(checkpoint):
    terminal = Terminal([sys.executable, "-m", "charlm", "generate", checkpoint, "--interactive"])
    try:
        terminal.wait_for("/quit to end")
        terminal.paste("/top-k 7")
        terminal.wait_for("top-k = 7")
        terminal.keys("Up", "Enter")  # without line editing: the prefix "\x1b[A", an error
        terminal.wait_for("top-k = 7", times=2)
        terminal.paste("/quit")
    finally:
        terminal.close()
