"""How a stage tells the user where the time goes: a named, timed step with a spinner and a tick."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console


class Steps:
    """Times named steps into ``timings`` (seconds) and prints each as it ends.

    A stage takes a ``Steps`` so that it can be called on its own from Python: ``Steps.quiet()``
    times without printing."""

    def __init__(self, console: Console | None = None, timings: dict[str, float] | None = None):
        self.console = console or Console(stderr=True)
        self.timings = timings if timings is not None else {}

    @classmethod
    def quiet(cls) -> Steps:
        return cls(Console(quiet=True))

    @contextlib.contextmanager
    def step(self, name: str, text: str):
        start = time.perf_counter()
        with self.console.status(text + " …"):
            yield
        elapsed = time.perf_counter() - start
        self.timings[name] = round(elapsed, 3)
        self.console.print(f"[green]✓[/] {text} [dim]({elapsed:.1f} s)[/]")

    def print(self, *things) -> None:
        self.console.print(*things)
