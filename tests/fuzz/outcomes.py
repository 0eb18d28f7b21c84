"""What became of a fuzz case, in five classes (and one for what fits none), and the table of them.

A case ends as a **clean error** (exit 2, its last line on stderr ``PROG: ...`` or ``PROG
SUBCOMMAND: ...``, no traceback), a **verdict** (exit 0 or 1: the command did its job, or said its
inputs disagree), a **traceback** (any "Traceback", or exit 3, tvmq's internal error), a
**signal** (killed by one: SIGSEGV, SIGBUS, ...), a **hang** (still running at its deadline) or
**unclear** (exit 2 without such a line, or an exit status no command documents).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

CLEAN, VERDICT, TRACEBACK, SIGNAL, HANG, UNCLEAR = "clean error", "verdict", "traceback", "signal", "hang", "unclear"
CLASSES = (CLEAN, VERDICT, TRACEBACK, SIGNAL, HANG, UNCLEAR)
#: classes that are a defect whatever the case expected
NEVER = frozenset({TRACEBACK, SIGNAL, HANG, UNCLEAR})
INTERNAL_ERROR_STATUS = 3


@dataclass(frozen=True)
class Outcome:
    case: str
    klass: str
    detail: str  # one line: the error line, the verdict, the signal's name
    expected: frozenset[str] = frozenset({CLEAN, VERDICT})
    problem: str | None = None  # a check that failed although the class is fine (a secret printed...)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.klass in NEVER or self.klass not in self.expected or self.problem is not None

    def line(self) -> str:
        why = self.problem or (f"expected {' or '.join(sorted(self.expected))}" if self.klass not in self.expected
                               and self.klass not in NEVER else "")
        return f"{self.case}: {self.klass}: {self.detail}" + (f" [{why}]" if why else "")


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def last_line(text: str) -> str:
    """The last line that says something (a table's bottom border does not)."""
    lines = [ln.strip() for ln in text.splitlines() if any(c.isalnum() for c in ln)]
    return lines[-1] if lines else ""


def classify_exit(prog: str, returncode: int | None, stdout: str, stderr: str) -> tuple[str, str]:
    """``(class, detail)`` of a finished command (``returncode`` None: it hung and was killed)."""
    if returncode is None:
        return HANG, "still running at its deadline: " + (last_line(stderr) or "no output")[:200]
    if returncode < 0:
        return SIGNAL, f"killed by {signal_name(returncode)}; " + (last_line(stderr) or "no output")[:200]
    if "Traceback (most recent call last)" in stdout + stderr or returncode == INTERNAL_ERROR_STATUS:
        return TRACEBACK, f"exit {returncode}: " + last_line(stderr)[:300]
    if returncode == 2:
        line = last_line(stderr)
        one_line = line.startswith((f"{prog}: ", f"{prog} "))  # "tvmq-db prune: usage: ..." too
        return (CLEAN, line[:300]) if one_line else (UNCLEAR, f"exit 2, last line: {line[:200]!r}")
    if returncode in (0, 1):
        return VERDICT, f"exit {returncode}: " + (last_line(stdout) or last_line(stderr))[:200]
    return UNCLEAR, f"exit {returncode}: " + last_line(stderr)[:200]


def counts(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.klass for o in outcomes)


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.failed]


def table(outcomes: list[Outcome], title: str):
    """A rich table: per group (the part of a case's name before the first ``:``) the cases of each
    class, and the failures (a class that is never right, one the case did not expect, or a check
    that failed)."""
    from rich.table import Table

    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(o.case.split(":", 1)[0], []).append(o)
    t = Table(title=title, title_justify="left")
    t.add_column("group")
    for k in CLASSES:
        t.add_column(k, justify="right")
    t.add_column("failed", justify="right")
    t.add_column("seconds", justify="right")
    for name, items in [*groups.items(), ("all", outcomes)]:
        c = counts(items)
        bad = len(failures(items))
        t.add_row(name, *(str(c.get(k, 0)) for k in CLASSES), f"[red]{bad}[/]" if bad else "0",
                  f"{sum(o.seconds for o in items):.0f}",
                  end_section=name == list(groups)[-1])
    return t


def report_text(outcomes: list[Outcome], title: str, width: int = 160) -> str:
    """The table and one line per failed case, as plain text (for an assertion message)."""
    import io

    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table(outcomes, title))
    for o in failures(outcomes):
        console.print(o.line(), highlight=False, markup=False, soft_wrap=True)
    return console.export_text()

