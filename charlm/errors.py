"""Typed errors. Each message is one line that names the problem and says what to do.

The CLI turns any `CharlmError` into a one-line message and a non-zero exit; Python users
catch the specific class they care about.
"""


class CharlmError(Exception):
    """Base class of every error charlm raises on purpose."""


class CorpusError(CharlmError):
    """A book cannot be read or is unusable for training."""


class TokenizerError(CharlmError):
    """A tokenizer cannot be built, restored or found."""


class MissingTokenizerError(TokenizerError):
    """No tokenizer of the requested name is installed (e.g. a plugin package is missing)."""


class UnknownTokenError(TokenizerError, ValueError):
    """Text contains pieces the tokenizer's vocabulary does not have."""


class CheckpointError(CharlmError):
    """A checkpoint is missing, corrupt or from an incompatible version."""


class ConfigError(CharlmError, ValueError):
    """A setting has a value that cannot work."""


class DownloadError(CorpusError):
    """A catalogue book could not be downloaded, or its bytes are not the catalogued ones."""


class TrainingError(CharlmError):
    """Training cannot go on, e.g. the loss became non-finite."""


class DeviceMemoryError(CharlmError):
    """The device (GPU or CPU) ran out of memory; smaller batches or a smaller model fit."""


class SamplingError(CharlmError):
    """The model's outputs cannot be sampled from (e.g. they are NaN)."""
