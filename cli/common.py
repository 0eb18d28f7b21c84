"""What every tvmq command shares: quiet imports, an argument parser whose errors are one line,
argparse types built from :mod:`tvmq.options`' rules, and one catch that turns every error into
one line and an exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console

from tvmq.options import INT32_MAX, RANGES, layout_problem, range_problem


def quiet_native_logs() -> None:
    """TensorFlow/LiteRT print banners on import; users asked for tvmq's output, not theirs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def exit_status_help(zero: str, one: str | None = None) -> str:
    """The ``exit status:`` paragraph of a command's ``--help`` (``zero``, ``one``: what 0 and 1 mean)."""
    return (f"exit status:\n  0 {zero}" + (f"; 1 {one}" if one else "")
            + ";\n  2 a bad input or option (one line on stderr); 3 an internal error of tvmq (one line, and a"
            "\n  log file with the traceback under $TVMQ_CACHE/logs or ~/.cache/tvmq/logs); 130 Ctrl-C.\n")


def version_line(command: str) -> str:
    """What ``COMMAND --version`` prints: ``tvmq-db 0.1.0 (TVM 0.27.0.post1, tvm-ffi 0.1.14.post0)``,
    from the installed distributions' metadata (importing TVM would take seconds)."""
    from tvmq.versions import stack_versions

    found = stack_versions()
    return (f"{command} {found['tvmq']} (TVM {found.get('tvm', 'not installed')}, "
            f"tvm-ffi {found.get('tvm-ffi', 'not installed')})")


class _PrintVersion(argparse.Action):
    """``--version``: print :func:`version_line` and exit 0 (worked out only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        # as argparse's own --help and version action do (a closed stdout is not an error)
        parser._print_message(version_line(parser.prog.split()[0]) + "\n", sys.stdout)
        parser.exit()


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2, like every other bad input; ``--help``
    still prints the whole usage. Every parser of this class (subcommands' too) takes ``--version``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action=_PrintVersion, help="print the versions of tvmq, TVM and tvm-ffi and exit")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: usage: {' '.join(message.split())} (see {self.prog} --help)\n")


def number_in(low: int | float, high: int | float | None = None) -> Callable[[str], int | float]:
    """An argparse ``type=`` for a number from ``low`` to ``high`` (both included): a whole number
    when ``low`` is an int, else any finite number. The rule is :func:`tvmq.options.range_problem`,
    the one that :meth:`tvmq.options.RunOptions.validate` applies."""
    whole = isinstance(low, int)
    top = (INT32_MAX if whole else float("inf")) if high is None else high

    def parse(text: str) -> int | float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {'whole ' if whole else ''}number, not {text!r}") from None
        problem = range_problem(value, low, top)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def run_option(name: str) -> Callable[[str], int | float]:
    """The argparse ``type=`` of the run option ``name`` (``tvmq.options.RANGES``)."""
    return number_in(*RANGES[name])


def fraction(text: str) -> float:
    """argparse ``type=`` of a gate threshold: :func:`tvmq.release.plan.fraction_problem`'s rule."""
    from tvmq.release.plan import fraction_problem

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1 (0.05 is 5%), not {text!r}") from None
    problem = fraction_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def layout(text: str) -> str:
    """argparse ``type=`` of ``--layout``: ``profile`` or a layout :func:`tvmq.options.layout_problem` allows."""
    problem = None if text == "profile" else layout_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem.replace("must be ", "must be profile, ", 1))
    return text


def run_command(prog: str, body: Callable[[], int], console: Console) -> int:
    """Run ``body``; any error becomes one line on stderr (secrets masked) and an exit status:
    a :class:`~tvmq.errors.TvmqError` its own (1 or 2), Ctrl-C 130, anything else 3 with the
    traceback written to a log file."""
    from rich.markup import escape

    from tvmq.errors import InternalError, Interrupted, TvmqError, one_line
    from tvmq.redact import redact_text

    def say(kind: str, text: str) -> None:
        console.print(f"[bold red]{prog}: {kind}:[/] {escape(redact_text(text))}", highlight=False, soft_wrap=True)

    try:
        return body()
    except TvmqError as err:
        say(err.kind, err.message)
        return err.exit_code
    except KeyboardInterrupt:
        say("interrupted", "stopped by Ctrl-C; everything measured so far is kept in the database")
        return Interrupted.exit_code
    except Exception as err:  # a bug: not a verdict, not a bad input
        log = _write_crash_log(prog, err)
        where = f"the traceback is in {log}" if isinstance(log, Path) else f"no log written ({log})"
        say(InternalError.kind, f"{type(err).__name__}: {one_line(err)} (a bug in tvmq; {where})")
        return InternalError.exit_code


def _write_crash_log(prog: str, err: BaseException) -> Path | str:
    """The command line and ``err``'s traceback, secrets masked, in a new private file under the
    cache's ``logs`` folder; its path, or why it could not be written."""
    from tvmq.model.loader import cache_dir
    from tvmq.redact import redact_text

    text = " ".join(sys.argv) + "\n\n" + "".join(traceback.format_exception(err))
    try:
        folder = cache_dir() / "logs"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{prog}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact_text(text))
        return Path(path)
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep stdout for the data a command prints after this block (``tvmq-tune --json -``): inside
    it, whatever writes to stdout (``print``, TVM's and LiteRT's native code, child processes
    started here) goes to stderr instead."""
    data = sys.stdout
    data.flush()
    saved = None
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # stdout or stderr closed: nothing to keep clean, or nowhere else to write
        if saved is not None:
            os.close(saved)
            saved = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = data
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def exit_with(code: int) -> None:
    sys.stdout.flush()
    sys.exit(code)
