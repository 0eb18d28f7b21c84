"""A long-lived process that takes model files one by one through the first stages of a run, so
that each fuzzed model costs its stages and not a Python start and a TVM import.

The child (``python -m tests.fuzz.worker``) reads one JSON request per line on stdin and answers
one JSON line: a :class:`tvmq.errors.TvmqError` is a clean error, any other exception a
traceback (its text goes to the worker's log), a model that passes every stage a verdict. The
parent (:class:`StageWorker`) gives each model a deadline, and restarts the child when it died of
a signal or had to be killed.

The stages are the pipeline's (:mod:`tvmq.stages`), in its order: ``load``, ``inputs``,
``prepare``; optionally ``lower``, and ``build`` + ``verify`` against the TFLite reference; then
the reference itself on the model's inputs, which a run reaches after its build.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.outcomes import CLEAN, HANG, SIGNAL, TRACEBACK, UNCLEAR, VERDICT, signal_name

REPO = Path(__file__).resolve().parents[2]
#: a worker process may map this much memory; past it an allocation fails instead of taking the host
MEMORY_LIMIT = 4 << 30


def cap_memory(pid: int, limit: int = MEMORY_LIMIT) -> None:
    """Cap a child's address space, right after it started (not in ``preexec_fn``, which is not
    safe with the threads the corpus runs): a mutant's 2**31-element tensor, or ``/dev/zero`` read
    whole, then fails with MemoryError instead of swallowing the host."""
    with contextlib.suppress(ProcessLookupError):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


@dataclass(frozen=True)
class Request:
    model: str
    lower: bool = False
    build: bool = False
    name: str = ""  # the case, for the log


# ---------------------------------------------------------------------------------- the child


def _drive(req: Request, plan_) -> str:
    """The stages a run takes a model through; returns how far it went."""
    from tvmq.model import Reference
    from tvmq.options import MeasurementOptions, SourceOptions
    from tvmq.stages import Steps, build, inputs, load, lower, prepare, runnable, verify

    quiet = Steps.quiet()
    source = SourceOptions(model=req.model)
    model, info = load(source, quiet)
    feed = inputs(info, source)
    prepared = prepare(model, info, plan_.profile, plan_.codegen, quiet)
    done = "imported"
    reference = None
    if req.lower or req.build:
        lowered = lower(prepared, plan_.target, quiet)
        done = "lowered"
        if req.build:
            executable = build(lowered, None, "naive", quiet)
            reference = Reference(model, num_threads=1)
            checked = verify(runnable(executable, None, plan_.where), reference, feed, MeasurementOptions(), quiet)
            done = f"built, verification {checked.verdict}"
    reference = reference or Reference(model, num_threads=1)
    reference.run(feed.samples[0].arrays)
    return done + ", TFLite ran it"


def _child_plan():
    """The host's plan, once: one thread, the profile's code generation."""
    from types import SimpleNamespace

    from tvmq.options import CodegenOptions, TargetOptions
    from tvmq.stages import Steps, plan
    from tvmq.tuner.compile import set_threads

    where = TargetOptions(name="native", threads=1)
    p = plan(where, Steps.quiet())
    set_threads(1)
    return SimpleNamespace(profile=p.profile, target=p.target, where=where, codegen=CodegenOptions())


def serve() -> None:
    import faulthandler
    import traceback

    from tvmq.errors import TvmqError, one_line

    reply = os.fdopen(os.dup(1), "w")  # the answers; anything native code prints goes to the log
    os.dup2(2, 1)
    faulthandler.enable()  # a fatal signal leaves the Python stack in the log
    plan_ = _child_plan()
    reply.write(json.dumps({"ready": True}) + "\n")
    reply.flush()
    for line in sys.stdin:
        req = Request(**json.loads(line))
        print(f"=== {req.name or req.model}", file=sys.stderr, flush=True)
        try:
            answer = {"class": VERDICT, "detail": _drive(req, plan_)}
        except TvmqError as err:  # what run_command prints: one line, exit 2 (3: tvmq's own bug)
            klass = TRACEBACK if err.exit_code == 3 else CLEAN if err.exit_code == 2 and "\n" not in err.message \
                else UNCLEAR
            answer = {"class": klass, "detail": f"{err.kind}: {err.message}"}
        except Exception as err:  # noqa: BLE001 - what escapes a stage is the finding
            traceback.print_exc()
            answer = {"class": TRACEBACK, "detail": f"{type(err).__name__}: {one_line(err, 240)}"}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


# --------------------------------------------------------------------------------- the parent


class StageWorker:
    """The parent's side: ``check(path)`` → ``(class, detail)``; restarts the child as needed."""

    def __init__(self, log: Path, deadline_s: float = 60.0, start_deadline_s: float = 180.0):
        self.log = log
        self.deadline_s = deadline_s
        self.start_deadline_s = start_deadline_s
        self.proc: subprocess.Popen | None = None
        self._buffer = b""

    def __enter__(self) -> StageWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> int | None:
        """Kill the child (and anything it started) unless it is gone; its exit status."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:  # not reaped yet: the group id is still the child's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        self.proc = None
        return code

    def _start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker"], cwd=REPO, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True)
        cap_memory(self.proc.pid)
        self._buffer = b""
        line = self._read_line(self.start_deadline_s)
        if not line or not json.loads(line).get("ready"):
            code = self.proc.poll()
            self.close()
            raise RuntimeError(f"the stage worker did not start (exit {code}); see {self.log}")

    def _read_line(self, timeout: float) -> str | None:
        """The child's next line; "" when it is gone, None when ``timeout`` passed first."""
        end = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def check(self, request: Request) -> tuple[str, str]:
        if self.proc is None:
            self._start()
        with contextlib.suppress(BrokenPipeError):  # it died since: its end of stdout tells
            self.proc.stdin.write((json.dumps(request.__dict__) + "\n").encode())
            self.proc.stdin.flush()
        line = self._read_line(self.deadline_s)
        if line:
            answer = json.loads(line)
            return answer["class"], answer["detail"]
        if line is None:
            self.close()
            return HANG, f"no answer within {self.deadline_s:g} s"
        code = self.close()  # its stdout closed: it is gone, or going
        if code < 0:
            return SIGNAL, f"the worker died of {signal_name(code)} (log: {self.log})"
        return TRACEBACK, f"the worker exited with status {code} (log: {self.log})"


if __name__ == "__main__":
    serve()
