"""What every tvmq command shares: quiet imports, and errors as one line with an exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from rich.console import Console


def quiet_native_logs() -> None:
    """TensorFlow/LiteRT print banners on import; users asked for tvmq's output, not theirs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def run_command(prog: str, body: Callable[[], int], console: Console) -> int:
    """Run ``body``; a TvmqError or Ctrl-C becomes one line on stderr and an exit status."""
    from tvmq.errors import Interrupted, TvmqError

    try:
        return body()
    except TvmqError as err:
        console.print(f"[bold red]{prog}: {err.kind}:[/] {err.message}", highlight=False, soft_wrap=True)
        return err.exit_code
    except KeyboardInterrupt:
        console.print(f"[bold red]{prog}: interrupted:[/] stopped by Ctrl-C; everything measured so far "
                      "is kept in the database", highlight=False, soft_wrap=True)
        return Interrupted.exit_code


def exit_with(code: int) -> None:
    sys.stdout.flush()
    sys.exit(code)
