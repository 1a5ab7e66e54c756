"""bertconv's own exception types.

Every failure a user can cause is one of these, and each renders as one line that names the file,
the tensor when there is one, what is wrong and what to do. The CLI maps them to exit codes:
2 for bad input or usage (``InputError`` and its subclasses), 1 for a check that ran and failed
(``CheckFailed``). A traceback is shown only with ``--debug``.
"""
from __future__ import annotations

from pathlib import Path


class BertconvError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, tensor: str | None = None,
                 hint: str | None = None, cli_hint: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.tensor = tensor
        self.hint = hint
        #: the hint as the command line words it, where the API's names an argument (overwrite=True)
        #: that the command spells as an option (--overwrite)
        self.cli_hint = cli_hint
        super().__init__(self.render())

    def render(self, *, cli: bool = False) -> str:
        """The one line; ``cli``: with the hint in the command line's words."""
        parts = []
        if self.path:
            parts.append(f"{self.path}:")
        if self.tensor:
            parts.append(f"tensor {self.tensor!r}:")
        parts.append(self.message.rstrip("."))
        line = " ".join(parts)
        hint = self.cli_hint if cli and self.cli_hint else self.hint
        if hint:
            line += f" ({hint.rstrip('.')})"
        return line


class InputError(BertconvError):
    """Bad input or usage: a missing file, a wrong option, a contradiction. Exit code 2."""


class CheckpointFormatError(InputError):
    """A file is not a checkpoint of a supported format, or its structure is damaged."""


class CorruptDataError(CheckpointFormatError):
    """Stored bytes fail their checksum or do not fit the size the index claims."""


class ConfigError(InputError):
    """A config file is malformed or contradicts the weights."""


class VocabError(InputError):
    """A vocabulary file is malformed or does not fit the embeddings."""


class MappingError(InputError):
    """Tensor names that cannot be mapped, or expected tensors that are missing."""


class OutputError(InputError):
    """The output path exists, is of the wrong kind, or cannot be written."""


class CheckFailed(BertconvError):
    """A validation or diff ran to completion and found differences. Exit code 1."""

    exit_code = 1


class DataUnavailableError(InputError):
    """A tensor's data file is not here: missing, or a Git LFS pointer in place of the file. The
    index alone lists the checkpoint; reading values needs the data. Exit code 2."""


class EmptyFileError(DataUnavailableError, CorruptDataError):
    """A file of 0 bytes where data was expected: a download or copy that never wrote a byte.
    Both unavailable (fetch it again) and damaged (its size contradicts what names it)."""


class Stopped(BaseException):
    """A signal that stops the run (SIGTERM, SIGHUP) arrived: raised in the main thread and
    unwound like KeyboardInterrupt, so that every temporary and lock is removed on the way out.
    Not an ``Exception``: nothing that handles errors may swallow it. Exit code 2."""

    exit_code = 2

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(f"stopped by {signal_name}")
