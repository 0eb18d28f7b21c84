"""Errors a user can cause.

Every exception here carries one clear, complete sentence for the user. The command-line
entry points catch :class:`TvmqError`, print its message on one line and exit with its
``exit_code``; they never show a traceback for these.

Exit statuses: 0 success, 1 a verdict (:class:`VerificationFailed`: TVM and TFLite disagree;
``tvmq-db check``: problems found), 2 a bad input or option (every other error here), 3 an
internal error (:class:`InternalError`: any other exception, a bug), 130 Ctrl-C
(:class:`Interrupted`).
"""

from __future__ import annotations


class TvmqError(Exception):
    """Base class of every user-facing error."""

    exit_code = 2
    kind = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelFileNotFound(TvmqError):
    kind = "model-not-found"


class NotATFLiteModel(TvmqError):
    kind = "not-tflite"


class TruncatedModel(TvmqError):
    kind = "truncated-model"


class ModelTooLarge(TvmqError):
    kind = "model-too-large"


class UnsupportedOperators(TvmqError):
    kind = "unsupported-operators"

    def __init__(self, message: str, operators: list[str] | None = None):
        super().__init__(message)
        self.operators = list(operators or [])


class CustomOperators(UnsupportedOperators):
    kind = "custom-operators"


class DynamicRangeModel(TvmqError):
    kind = "dynamic-range-model"


class DownloadError(TvmqError):
    kind = "download-failed"


class ImageError(TvmqError):
    kind = "bad-image"


class InputArrayError(TvmqError):
    """An --input NAME=FILE.npy that names no input, cannot be read, or does not fit the input."""

    kind = "bad-input"


class LabelsError(TvmqError):
    kind = "bad-labels"


class UnknownTarget(TvmqError):
    kind = "unknown-target"


class MissingISA(TvmqError):
    """The target's code needs CPU features this host lacks, so it cannot be measured here."""

    kind = "missing-isa"

    def __init__(self, message: str, missing: list[str] | None = None):
        super().__init__(message)
        self.missing = list(missing or [])


class DatabaseError(TvmqError):
    kind = "database"


class DatabaseLocked(DatabaseError):
    kind = "database-locked"


class ArtifactError(TvmqError):
    kind = "bad-artifact"


class CompileError(TvmqError):
    kind = "compile-failed"


class RemoteError(TvmqError):
    kind = "remote"


class Interrupted(TvmqError):
    """Ctrl-C: what was measured so far is committed; the run stops cleanly."""

    kind = "interrupted"
    exit_code = 130


class VerificationFailed(TvmqError):
    kind = "verification-failed"
    exit_code = 1


class UsageError(TvmqError):
    """An option value out of range, or options that cannot go together."""

    kind = "usage"


class OutputError(TvmqError):
    """An output path (``--out``, ``--json``) that cannot be written."""

    kind = "bad-output"


class MissingDependency(TvmqError):
    """An optional package this use needs is not installed; the message names the extra to install."""

    kind = "missing-dependency"


class InternalError(TvmqError):
    """Not raised: the status and kind ``run_command`` gives any exception that is not a
    :class:`TvmqError` (a bug, not a verdict and not a bad input)."""

    kind = "internal-error"
    exit_code = 3


def one_line(err: BaseException | str, limit: int = 300, pick: str = "all") -> str:
    """An error's text as one line for a user, at most ``limit`` characters.

    ``pick``: ``"all"`` joins every line (whitespace collapsed), ``"first"`` keeps the first
    non-empty line, ``"last"`` the last one (where TVM's C++ errors put the actual message).
    An exception with no text reads as its class name.
    """
    text = str(err)
    lines = [" ".join(ln.split()) for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__ if isinstance(err, BaseException) else ""
    if pick == "first":
        out = lines[0]
    elif pick == "last":
        out = lines[-1]
    else:
        out = " ".join(lines)
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"
