"""A scripted case: one real command (``tvmq-tune``, ``tvmq-run``, ``tvmq-db``) in its own process
group, under a deadline and a memory cap, classified by :func:`tests.fuzz.outcomes.classify_exit`
and checked for what must never happen even when it exits cleanly: a planted secret printed or
written, a planted library's code run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.outcomes import CLEAN, Outcome, classify_exit
from tests.fuzz.worker import cap_memory


@dataclass(frozen=True)
class CliCase:
    name: str  # "group:what it does", the group being the table's row
    prog: str  # tvmq-tune | tvmq-run | tvmq-db
    args: tuple[str, ...]
    expect: frozenset[str] = frozenset({CLEAN})
    env: Mapping[str, str] = field(default_factory=dict)
    deadline_s: float = 120.0
    secret: str | None = None  # appears in no output, and in no name or content under ``watch``
    watch: tuple[Path, ...] = ()
    marker: Path | None = None  # exists afterwards: a planted library's constructor ran


def program(prog: str) -> str:
    """The command installed next to this interpreter (the project's virtual environment)."""
    beside = Path(sys.executable).parent / prog
    return str(beside) if beside.is_file() else (shutil.which(prog) or prog)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_cli(case: CliCase, cwd: Path, base_env: Mapping[str, str]) -> Outcome:
    env = {**base_env, **case.env}
    start = time.monotonic()
    proc = subprocess.Popen([program(case.prog), *case.args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    cap_memory(proc.pid)
    try:
        out, err = proc.communicate(timeout=case.deadline_s)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild outside the group holds the pipes
            out, err = b"", b""
        code = None
    _kill_group(proc.pid)  # what the command left behind (a builder pool's workers)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    klass, detail = classify_exit(case.prog, code, stdout, stderr)
    problem = None
    if case.secret:
        problem = find_secret(case.secret, stdout, stderr, case.watch)
    if case.marker is not None and case.marker.exists():
        problem = "the planted library's constructor ran"
    return Outcome(case.name, klass, detail, case.expect, problem, time.monotonic() - start)


def find_secret(secret: str, stdout: str, stderr: str, watch: tuple[Path, ...]) -> str | None:
    """Where ``secret`` shows: stdout, stderr, a file's name or a file's content under ``watch``."""
    if secret in stdout:
        return "the secret is printed on stdout"
    if secret in stderr:
        return "the secret is printed on stderr"
    for root in watch:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if secret in str(path.relative_to(root.parent)):
                return f"the secret is in the file name {path}"
            if path.is_file() and secret.encode() in path.read_bytes():
                return f"the secret is written in {path}"
    return None
