"""Showing a training run as it happens: a Rich live display, or plain lines when logging.

    epoch 3  step 1,234  ━━━━━━━━━━━━━━━━━━━━━━━━╸━━━━━━━━━━━  45%  0:01:23 elapsed  0:02:00 left
    train ppl 4.123  val ppl 4.321 (best 4.300)  9,873 tokens/s

On a terminal of about 150 columns or more it is one line; narrower, two (the bar shrinks,
then goes), and on a very narrow one more, so the numbers are never cut. Both reporters say
once when training becomes much slower than it was (another program on the same cores,
usually).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from charlm.training.config import EvalReport, StepReport

MIN_BAR = 10  # columns; a narrower bar says nothing, so the line goes without one
MAX_BAR = 50  # on a line of its own the bar need not fill a wide terminal
GAP = 2  # columns between the parts of a line


def clock(seconds: float | None) -> str:
    """h:mm:ss, or "-" when not known."""
    if seconds is None:
        return "-"
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def time_left(report: StepReport) -> float | None:
    """Training time still to go, from the share done so far (None until it means something)."""
    if report.fraction_done <= 0 or report.elapsed_s < 1:
        return None
    return report.elapsed_s * (1 - report.fraction_done) / report.fraction_done


class SlowdownWatch:
    """Notices when training becomes much slower than it was, and says so once.

    Speeds are compared over windows of `window_s` seconds of training, so that a slow first
    step or a pause for evaluation is not taken for a slowdown.
    """

    def __init__(self, factor: float = 3.0, window_s: float = 10.0) -> None:
        self.factor, self.window_s = factor, window_s
        self.fastest: float | None = None
        self._tokens = self._seconds = 0.0
        self._elapsed: float | None = None
        self._said = False

    def update(self, report: StepReport) -> str | None:
        """A message the first time speed falls below 1/`factor` of the best window's."""
        last, self._elapsed = self._elapsed, report.elapsed_s
        if last is None or report.elapsed_s <= last:
            return None
        self._tokens += report.tokens_per_s * (report.elapsed_s - last)
        self._seconds += report.elapsed_s - last
        if self._seconds < self.window_s:
            return None
        rate, self._tokens, self._seconds = self._tokens / self._seconds, 0.0, 0.0
        if self.fastest is not None and rate * self.factor < self.fastest and not self._said:
            self._said = True
            return (
                f"training slowed from {self.fastest:,.0f} to {rate:,.0f} tokens/s: is another "
                "program using the same cores? When cores are shared, fewer threads "
                "(--threads) often go faster"
            )
        self.fastest = max(self.fastest or 0.0, rate)
        return None


class Status:
    """What the live display shows, drawn to fit the console's width at every refresh."""

    def __init__(self) -> None:
        self.epoch, self.step, self.fraction = 1, 0, 0.0
        self.train_ppl: float | None = None
        self.val_ppl: float | None = None
        self.best_ppl: float | None = None
        self.rate: float | None = None
        self.elapsed: float | None = None
        self.left: float | None = None

    def update(self, report: StepReport) -> None:
        self.epoch, self.step, self.fraction = report.epoch, report.step, report.fraction_done
        self.train_ppl, self.rate = report.train_perplexity, report.tokens_per_s
        self.elapsed, self.left = report.elapsed_s, time_left(report)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        where = Text.assemble(
            ("epoch ", "bold"), (f"{self.epoch}", "bold"), f"  step {self.step:,}"
        )
        done = Text(f"{self.fraction:>4.0%}")
        times = Text(f"{clock(self.elapsed)} elapsed  {clock(self.left)} left")
        quality = Text.assemble(
            "train ppl ",
            (_number(self.train_ppl), "cyan"),
            "  val ppl ",
            (_number(self.val_ppl), "magenta"),
            " (best ",
            (_number(self.best_ppl), "green"),
            ")",
        )
        speed = Text(f"{_number(self.rate, '{:,.0f}')} tokens/s")
        width = options.max_width
        one_line = [where, done, quality, speed, times]
        if _room(width, one_line) >= 2 * MIN_BAR:
            yield self._line(where, _room(width, one_line), done, quality, speed, times)
            return
        # Two lines, the bar shrinking and then going; on a very narrow terminal, more.
        if _room(width, [where, done, times]) >= 0:
            yield self._line(where, min(MAX_BAR, _room(width, [where, done, times])), done, times)
        else:
            yield from (self._line(where, 0, done), times)
        if _room(width, [quality, speed]) >= 0:
            yield self._line(quality, 0, speed)
        else:
            yield from (quality, speed)

    def _line(self, first: Text, bar_width: int, *rest: Text) -> Table:
        """`first`, a bar of `bar_width` columns (none if that is too narrow), then `rest`."""
        grid = Table.grid(padding=(0, GAP))
        cells: list[Any] = [first]
        if bar_width >= MIN_BAR:
            cells.append(ProgressBar(total=1.0, completed=self.fraction, width=bar_width))
        cells += rest
        for _ in cells:
            grid.add_column(no_wrap=True)
        grid.add_row(*cells)
        return grid


def _room(width: int, parts: list[Text]) -> int:
    """Columns left for a bar on a line of `width` holding `parts` and the bar, spaced."""
    return width - sum(len(part) for part in parts) - GAP * len(parts)


def _number(value: float | None, form: str = "{:.3f}") -> str:
    return "-" if value is None else form.format(value)


class RichReporter:
    """A live display of epoch, step, perplexities, speed and time; for a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = Status()
        self.slowdown = SlowdownWatch()
        # The loop reports 4 times a second; redrawing more often (Rich's default is 10)
        # only takes CPU from training: ~1% of a core at 10/s, ~0.35% at 4/s.
        self.live = Live(self.status, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> RichReporter:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.refresh()
        self.live.stop()

    def message(self, text: str) -> None:
        self.live.console.log(text, highlight=False)

    def on_step(self, report: StepReport) -> None:
        self.status.update(report)
        warning = self.slowdown.update(report)
        if warning:
            self.message(warning)

    def on_eval(self, report: EvalReport) -> None:
        self.status.val_ppl = report.val_perplexity
        self.status.best_ppl = report.best_val_perplexity
        self.message(report.line())


class LineReporter:
    """One line every `interval_s` seconds and at each evaluation; for logs and pipes.

    Lines are written whole, never cut at the console's width, so a log can be searched.
    """

    def __init__(self, console: Console, interval_s: float = 10.0) -> None:
        self.console = console
        self.interval_s = interval_s
        self.slowdown = SlowdownWatch()
        self._last = time.monotonic()

    def __enter__(self) -> LineReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def on_step(self, report: StepReport) -> None:
        warning = self.slowdown.update(report)
        if warning:
            self.message(warning)
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.message(
            f"epoch {report.epoch} step {report.step:,} ({report.fraction_done:.0%}): "
            f"train perplexity {report.train_perplexity:.3f}, "
            f"{report.tokens_per_s:,.0f} tokens/s, {clock(report.elapsed_s)} elapsed, "
            f"{clock(time_left(report))} left"
        )

    def on_eval(self, report: EvalReport) -> None:
        self.message(report.line())


def make_reporter(console: Console) -> RichReporter | LineReporter:
    """A live display on a terminal, plain lines otherwise."""
    return RichReporter(console) if console.is_terminal else LineReporter(console)
