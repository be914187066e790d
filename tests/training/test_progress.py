"""The live display and the plain lines: whole numbers at 80 columns, whole lines in a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from charlm.training.config import EvalReport, StepReport
from charlm.training.progress import LineReporter, RichReporter, SlowdownWatch, Status

# 83 s of training, 45% done: 101 s left.
REPORT = StepReport(
    step=1234,
    epoch=3,
    train_loss=1.4,
    train_perplexity=4.123,
    tokens_per_s=9873.2,
    elapsed_s=83.0,
    fraction_done=0.45,
)
EVAL = EvalReport(step=1200, epoch=3, val_loss=1.46, val_perplexity=4.321, best_val_perplexity=4.3)
SHOWN = [
    "epoch 3",
    "step 1,234",
    "45%",
    "train ppl 4.123",
    "val ppl 4.321 (best 4.300)",
    "9,873 tokens/s",
    "0:01:23 elapsed",
    "0:01:41 left",
]


def terminal(width: int) -> Console:
    return Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)


def rendered(width: int) -> list[str]:
    status = Status()
    status.update(REPORT)
    status.val_ppl, status.best_ppl = EVAL.val_perplexity, EVAL.best_val_perplexity
    console = terminal(width)
    console.print(status)
    return console.file.getvalue().splitlines()


def test_at_80_columns_every_number_is_whole_on_two_lines():
    lines = rendered(80)
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert all(part in text for part in SHOWN), text
    assert "…" not in text
    assert "━" in lines[0]  # the bar is still there, between the step and the share done


def test_a_wide_terminal_shows_one_line_and_a_narrow_one_drops_the_bar():
    wide = rendered(160)
    assert len(wide) == 1 and all(part in wide[0] for part in SHOWN)
    narrow = "\n".join(rendered(50))
    assert all(part in narrow for part in SHOWN) and "━" not in narrow and "…" not in narrow


def test_the_live_display_in_an_80_column_terminal():
    console = terminal(80)
    with RichReporter(console) as reporter:
        reporter.on_step(REPORT)
        reporter.on_eval(EVAL)
    output = console.file.getvalue()
    assert "validation perplexity 4.321" in output
    last = "\n".join(output.splitlines()[-3:])  # the display as the run left it
    assert all(part in last for part in SHOWN) and "…" not in output, last


def test_lines_in_a_pipe_are_whole_and_carry_the_times():
    pipe = Console(width=80, file=io.StringIO())  # Rich takes a pipe for 80 columns
    reporter = LineReporter(pipe, interval_s=0)
    reporter.on_step(REPORT)
    long = "read /a/very/long/path/" + "x" * 90 + ".txt: utf-8, 1,000 characters"
    reporter.message(long)
    lines = pipe.file.getvalue().splitlines()
    assert lines == [
        "epoch 3 step 1,234 (45%): train perplexity 4.123, 9,873 tokens/s, 0:01:23 elapsed, "
        "0:01:41 left",
        long,
    ]


def steady(rate: float, start: float, seconds: float) -> list[StepReport]:
    """Reports every quarter second of training at `rate` tokens/s."""
    times = [start + 0.25 * (i + 1) for i in range(int(seconds * 4))]
    return [StepReport(1, 1, 1.0, 2.7, rate, t, t / 100) for t in times]


def test_a_sharp_slowdown_is_reported_once_with_the_threads_advice():
    watch = SlowdownWatch()
    reports = steady(9000, 0, 30) + steady(400, 30, 30) + steady(300, 60, 30)
    said = [message for message in map(watch.update, reports) if message]
    assert len(said) == 1
    assert said[0].startswith("training slowed from 9,000 to 400 tokens/s")
    assert "--threads" in said[0]


def test_ordinary_ups_and_downs_are_not_a_slowdown():
    watch = SlowdownWatch()
    reports = steady(300, 0, 2) + steady(9000, 2, 30) + steady(5000, 32, 30)
    assert not any(map(watch.update, reports))  # a slow first step, then 45% slower
