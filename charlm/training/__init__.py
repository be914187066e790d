"""Training: the whole run behind `charlm train` (`run.py`) and the loop inside it (`loop.py`).

run.py        train_book: read and encode the books, build or load the model, train, save
loop.py       train/evaluate: truncated BPTT, gradient clipping, perplexity, best/last
config.py     TrainConfig and what a run reports (StepReport, EvalReport, TrainResult)
schedules.py  optimizers and learning-rate schedules
recorder.py   losses, metrics-log records, live reports
metrics_log.py, plotting.py   the JSON Lines metrics log and its plots
progress.py   the live display (Rich on a terminal, plain lines elsewhere)
resume.py     the training state a resumed run starts from, and the inputs it reads
state_checks.py   every value of a saved training state checked before the first step
signals.py, runlock.py, distributed.py, allocator.py   Ctrl-C/SIGTERM, one run per
              directory, torchrun, glibc's malloc tuned for CPU training
"""

from .config import (
    ITERATORS,
    NONFINITE,
    PRECISIONS,
    Checkpointer,
    EvalReport,
    MetricsSink,
    Reporter,
    SilentReporter,
    StepReport,
    TrainConfig,
    TrainResult,
)
from .loop import evaluate, train
from .run import DataOptions, RunSaver, TrainedModel, train_book
from .signals import StopFlag

__all__ = [
    "ITERATORS",
    "NONFINITE",
    "PRECISIONS",
    "Checkpointer",
    "DataOptions",
    "EvalReport",
    "MetricsSink",
    "Reporter",
    "RunSaver",
    "SilentReporter",
    "StepReport",
    "StopFlag",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "evaluate",
    "train",
    "train_book",
]
