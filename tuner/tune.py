"""The search: MetaSchedule's evolutionary search with the XGBoost cost model and the
gradient rule of its task scheduler (joining every batch at once: :mod:`.scheduler`), over the model's tasks, measuring into the tuning database.

Everything MetaSchedule offers stays pluggable: tvmq only chooses the parts — its persistent
builder, an isolated local runner (or the RPC runner), its SQL database behind MetaSchedule's
Database interface — and adds two measure callbacks: the progress bar with the tuning curve,
and the early stop of a task that no longer improves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from tvmq.errors import Interrupted, TvmqError
from tvmq.files import native_stderr_to

from .rules import space_generator
from .scheduler import EagerGradientScheduler, median_ms, plan_search
from .tasks import DEFAULT_MODULE_EQUALITY, TaskInfo, describe
from .warmstart import warm_start


@dataclass
class TuneConfig:
    trials: int
    trials_per_task: int | None = None
    seed: int = 0
    num_trials_per_iter: int = 32  # candidates per round of one task, at most (scheduler.round_size halves it for
    # a search too short to give every task a round)
    population: int = 128  # evolutionary search population (MetaSchedule's default 512 costs
    # ~25 s of search per round on 2 cores; 128 costs ~7 s for the same 16 measured candidates)
    patience: int | None = None  # trials without a 1% gain before a task stops; None: 2 rounds
    min_gain: float = 0.01
    module_equality: str = DEFAULT_MODULE_EQUALITY
    retune: bool = False  # also tune tasks the database already covers
    threads: int = 1
    builder_workers: int | None = None
    builder: object | None = None  # an ms Builder; None: a PersistentBuilder owned by the run
    runner: object | None = None  # an ms Runner (e.g. RPC); None: isolated local runner
    runner_timeout_s: float = 30.0
    min_repeat_ms: int = 20  # each candidate is timed for at least this long: 1,000 runs of a 20 us kernel
    # (50 ms made the measurement ~half of the runner's ~115 ms per candidate on the built-in model)
    genetic_iters: int = 3  # evolutionary search generations per round (MetaSchedule's default 4: mutation
    # then took 15% of a tuning run's time, the largest share after building and measuring)
    build_timeout_s: float = 60.0
    # measure every task's unscheduled kernel before the first trial: about two minutes on an int8
    # mobilenet_v2 on 2 cores, before any trial; off, tasks are ordered by their FLOPs and the
    # per-task "before" is the best of their first round
    measure_untuned: bool = False
    budget_s: float | None = None  # wall-clock seconds for the whole search; then every task stops
    warm_start: bool = True  # train the cost model on the database's records of the target first (.warmstart)
    work_dir: Path = Path("tvmq_out/tuning_logs")


@dataclass(frozen=True)
class Records:
    """Where a run's measurements go: the tuning database, the run's session in it (None when
    nothing is tuned) and the one MetaSchedule view of it for this target, which the search
    writes through and the build reads."""

    database: object  # tvmq.db.TuningDatabase
    view: object  # its scoped MetaSchedule Database for the target
    session_id: int | None = None

    @classmethod
    def open(cls, database, target, session_id: int | None = None,
             module_equality: str = DEFAULT_MODULE_EQUALITY) -> Records:
        return cls(database, database.scoped(target, module_equality=module_equality, session_id=session_id),
                   session_id)

    def heartbeat(self) -> contextlib.AbstractContextManager:
        """While the search runs: the session's heartbeat thread (see :mod:`tvmq.db.heartbeat`)."""
        if self.session_id is None:
            return contextlib.nullcontext()
        return self.database.heartbeat(self.session_id)

    def trials_kept(self, counted: int) -> int:
        """The trials this run's session committed, counted in the database; ``counted`` (what the
        progress callback saw) when there is no session or the database cannot say."""
        if self.session_id is None:
            return counted
        try:
            return self.database.session(self.session_id).num_records
        except TvmqError:
            return counted


@dataclass
class TuningResult:
    tasks: list[TaskInfo]
    trials: int = 0
    curve: list[dict] = field(default_factory=list)
    dedup: dict = field(default_factory=dict)
    tuned_task_indices: list[int] = field(default_factory=list)
    stopped_early: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warm_start_records: int = 0  # database records the cost model learnt from before the first trial

    @property
    def tasks_total(self) -> int:
        return len(self.tasks)

    @property
    def tasks_from_db(self) -> int:
        return sum(1 for t in self.tasks if t.from_earlier_session)

    def estimated_ms(self, which: str = "tuned") -> float | None:
        total = 0.0
        for t in self.tasks:
            v = t.untuned_ms if which == "untuned" else (t.tuned_ms or t.db_best_ms or t.untuned_ms)
            if v is None:
                return None
            total += v * t.weight
        return total

    def to_dict(self) -> dict:
        return {
            "trials": self.trials,
            "tasks_total": self.tasks_total,
            "tasks_from_db": self.tasks_from_db,
            "tasks_tuned_now": len(self.tuned_task_indices),
            "task_dedup": self.dedup,
            "stopped_early": self.stopped_early,
            "warm_start_records": self.warm_start_records,
            "estimated_ms": {"untuned": self.estimated_ms("untuned"), "tuned": self.estimated_ms("tuned")},
            "curve": self.curve,
            "seconds": round(self.seconds, 1),
            "tasks": [t.to_dict() for t in self.tasks],
        }


def device_type(target) -> str:
    """The runtime device a target's code runs on ("llvm" code runs on "cpu")."""
    kind = str(target.kind.name)
    return "cpu" if kind in ("llvm", "c") else kind


def tune_contexts(tasks, work_dir: Path, seed: int, threads: int, population: int = 128, genetic_iters: int = 3):
    """One TuneContext per task (:func:`.rules.space_generator`, evolutionary search), seeded per task.

    MetaSchedule's ``extracted_tasks_to_tune_contexts`` sets up file loggers that break when it
    is called twice in one process; these contexts share one log file under ``work_dir``.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("tvmq.tuning")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log_file = str((work_dir / "tuning.log").resolve())
    if not any(getattr(h, "baseFilename", None) == log_file for h in logger.handlers):
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
        logger.addHandler(logging.FileHandler(log_file))
    seeds = ms.utils.fork_seed(seed, n=len(tasks))
    ctxs = [
        ms.TuneContext(mod=t.dispatched[0], target=t.target, space_generator=space_generator(),
                       search_strategy=ms.search_strategy.EvolutionarySearch(
                           population_size=population, init_min_unmeasured=min(50, population // 2),
                           genetic_num_iters=genetic_iters),
                       task_name=t.task_name, logger=logger,
                       rand_state=rs, num_threads=threads).clone()
        for t, rs in zip(tasks, seeds)
    ]
    return ctxs, [float(t.weight) for t in tasks]


#: what a FLOP of plain loops costs against one of a dot product at its first design-space point,
#: the two forms an untuned build gives its functions. In one untuned-but-for-13-tasks build of the
#: built-in model on a 2-vCPU Zen 4, the naive depthwise convolutions ran at 12-46 GFLOP/s and the
#: untuned dot-product convolutions at 84-162: ordered by FLOPs alone, no depthwise convolution
#: was searched in 3 minutes, and they held half of the model's time.
NAIVE_FLOP_COST = 4.0


def _untuned_cost(info: TaskInfo) -> float:
    """What a task costs the model untuned: weight x latency (where it was not measured, its FLOPs,
    ``NAIVE_FLOP_COST`` times dearer for the functions that stay plain loops untuned)."""
    if info.untuned_ms is not None:
        return info.weight * info.untuned_ms
    return info.weight * info.flops * 1e-9 * (1.0 if info.has_dot else NAIVE_FLOP_COST)


#: seconds between two plain progress lines when the console is not a terminal (a CI log)
PLAIN_PROGRESS_EVERY_S = 15.0


def progress_line(result: TuningResult, trials: int, elapsed_s: float, tasks_searched: int) -> str:
    """One plain line of progress: trials, trials/min, tasks, and, once every task has a measured
    schedule, the sum of the tasks' best latencies (before that, a sum with unmeasured tasks means
    nothing). That sum is what the kernels cost alone, not the model's latency: on a 2-vCPU Zen 4 the
    whole model measured 21-26% slower (mobilenet_v2 quant 1.464 against 1.848 ms, tf2 ptq 1.502
    against 2.019 ms; the fork and join of every parallel kernel, the VM), so it is not called an
    estimate of the end-to-end latency."""
    rate = trials / elapsed_s * 60 if elapsed_s > 0 else 0.0
    covered = sum(1 for t in result.tasks if (t.tuned_ms or t.db_best_ms or t.untuned_ms) is not None)
    est = result.estimated_ms("tuned")
    tail = (f"kernel sum {est:.3f} ms" if est is not None
            else f"{covered}/{len(result.tasks)} tasks measured")
    minutes, seconds = divmod(int(elapsed_s), 60)
    return (f"tuning {minutes}:{seconds:02d}: {trials} trials ({rate:.0f}/min), "
            f"{tasks_searched} tasks searched, {tail}")


def measure_untuned(tasks, target, builder, runner) -> list[float | None]:
    """Latency of each task's unscheduled TIR (the schedule an untuned build uses), in ms."""
    inputs = [ms.builder.BuilderInput(t.dispatched[0], target) for t in tasks]
    built = builder.build(inputs)
    run_inputs, index = [], []
    for i, (t, b) in enumerate(zip(tasks, built)):
        if b.error_msg is None:
            run_inputs.append(ms.runner.RunnerInput(b.artifact_path, device_type(target),
                                                    ms.arg_info.ArgInfo.from_entry_func(t.dispatched[0])))
            index.append(i)
    out: list[float | None] = [None] * len(tasks)
    for i, fut in zip(index, runner.run(run_inputs)):
        out[i] = median_ms(fut.result())
    for b in built:
        if b.artifact_path:
            Path(b.artifact_path).unlink(missing_ok=True)
    return out


@derived_object
class ProgressCallback(PyMeasureCallback):
    """Counts trials, tracks each task's best, draws the bar and the curve, stops stale tasks."""

    def __init__(self, result: TuningResult, tuned: list[int], progress: Progress, bar_id, budget: int,
                 patience: int, min_gain: float, db_session_update=None, stop: threading.Event | None = None,
                 start: float | None = None, plain_lines: bool = False):
        self.stop = stop
        self.plain_lines = plain_lines  # no terminal: a line every PLAIN_PROGRESS_EVERY_S instead of the bar
        self.last_line_at = time.perf_counter()
        self.start = time.perf_counter() if start is None else start  # when tuning began (perf_counter)
        self.result = result
        self.tuned = tuned  # scheduler task id -> index in result.tasks
        self.progress = progress
        self.bar_id = bar_id
        self.budget = budget
        self.patience = patience
        self.min_gain = min_gain
        self.seen = 0
        self.best: dict[int, float] = {}
        self.last_gain_at: dict[int, int] = {}
        self.task_trials: dict[int, int] = {}
        self.db_session_update = db_session_update

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        n = len(runner_results)
        self.seen += n
        self.task_trials[task_id] = self.task_trials.get(task_id, 0) + n
        info = self.result.tasks[self.tuned[task_id]]
        info.trials = self.task_trials[task_id]
        latencies = [m for m in (median_ms(r) for r in runner_results) if m is not None]
        if info.trials == n:  # the task's first round
            info.first_round_ms = min(latencies) if latencies else None
        for ms_ in latencies:
            old = self.best.get(task_id)
            if old is None or ms_ < old * (1 - self.min_gain):
                self.last_gain_at[task_id] = self.task_trials[task_id]
            if old is None or ms_ < old:
                self.best[task_id] = ms_
                info.tuned_ms = ms_ if info.db_best_ms is None else min(ms_, info.db_best_ms)
        est = self.result.estimated_ms("tuned")
        now = time.perf_counter()
        # each point also says which task this batch was and its best so far: enough to draw the
        # curve afterwards from the measured latency of the build (report.plots.anchored_curve)
        self.result.curve.append({"trials": self.seen, "estimated_ms": est, "elapsed_s": round(now - self.start, 2),
                                  "task": info.index, "best_ms": self.best.get(task_id)})
        self.result.trials = self.seen
        line = progress_line(self.result, self.seen, now - self.start, len(self.task_trials))
        self.progress.update(self.bar_id, completed=min(self.seen, self.budget), status=line.split(": ", 1)[1])
        if self.plain_lines and now - self.last_line_at >= PLAIN_PROGRESS_EVERY_S:
            self.progress.console.print(line, highlight=False, markup=False)
            self.last_line_at = now
        if self.db_session_update is not None:
            self.db_session_update(self.seen)
        if self.stop is not None and self.stop.is_set():
            # Ctrl-C: this batch is already in the database (AddToDatabase runs before us).
            raise KeyboardInterrupt
        # Early stop. Never inside the scheduler's final join (results seen >= budget), where
        # the scheduler terminates every task itself.
        stale = self.task_trials[task_id] - self.last_gain_at.get(task_id, 0)
        if self.seen < self.budget and stale >= self.patience:
            record = task_scheduler.tasks_[task_id]
            if not record.is_terminated:
                task_scheduler.terminate_task(task_id)
                self.result.stopped_early.append(info.name)


@contextlib.contextmanager
def _ctrl_c_as_flag():
    """While tuning, Ctrl-C only sets a flag: the search stops after the batch in flight is
    committed. (A KeyboardInterrupt raised at a random point inside TVM's FFI comes back as an
    arbitrary RuntimeError.) A second Ctrl-C interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _native_stderr_to(path: Path, console: Console):
    """Send what TVM's C++ side prints on stderr (a warning per candidate that fails a
    postprocessor, e.g. "Tensorize failed") to ``path``; ``console`` keeps the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with native_stderr_to(path) as real_stderr:
        if real_stderr is None:
            yield
            return
        terminal = os.fdopen(os.dup(real_stderr), "w", buffering=1)
        old_file = console.file
        console.file = terminal
        try:
            yield
        finally:
            console.file = old_file
            terminal.close()


def _quiet_metaschedule_console() -> None:
    """MetaSchedule logs every trial; those logs go to files under the work dir, not the terminal."""
    for name in ("tvm.s_tir.meta_schedule", "tvm.meta_schedule"):
        logging.getLogger(name).setLevel(logging.WARNING)


def tune(tasks, target, records: Records, config: TuneConfig, console: Console | None = None) -> TuningResult:
    """Tune the extracted ``tasks`` (:func:`.tasks.extract`) into ``records``; returns what was
    tuned, the per-task table and the curve."""
    from .builder import PersistentBuilder
    from .runner import make_local_runner

    console = console or Console(stderr=True)
    start = time.perf_counter()
    me = config.module_equality
    database, session_id = records.database, records.session_id
    infos = describe(tasks, database, target, me, session_id)
    result = TuningResult(tasks=infos)
    selected = [i for i, t in enumerate(infos) if config.retune or not t.in_db]
    if config.trials <= 0 or not selected:
        result.seconds = time.perf_counter() - start
        return result

    _quiet_metaschedule_console()
    scoped = records.view
    owns_builder = config.builder is None
    builder = config.builder or PersistentBuilder(max_workers=config.builder_workers,
                                                  timeout_sec=config.build_timeout_s)
    runner = config.runner or make_local_runner(timeout_sec=config.runner_timeout_s, min_repeat_ms=config.min_repeat_ms)
    with _ctrl_c_as_flag() as stop, _native_stderr_to(config.work_dir / "tvm_stderr.log", console):
        try:
            if config.measure_untuned:
                with console.status(f"measuring the {len(tasks)} tasks untuned (first start of the build workers) …"):
                    for info, v in zip(infos, measure_untuned(tasks, target, builder, runner)):
                        info.untuned_ms = v
                result.curve.append({"trials": 0, "estimated_ms": result.estimated_ms("tuned"),
                                     "elapsed_s": round(time.perf_counter() - start, 2)})
            selected, per_iter = plan_search(selected, [_untuned_cost(infos[i]) for i in selected], config.trials,
                                             config.budget_s, config.num_trials_per_iter)
            patience = config.patience or max(32, 3 * per_iter)
            ctxs, weights = tune_contexts([tasks[i] for i in selected], config.work_dir, config.seed, config.threads,
                                          config.population, config.genetic_iters)
            result.tuned_task_indices = list(selected)
            columns = [TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[status]}")]
            plain = not console.is_terminal  # a CI log: plain lines (ProgressCallback), no bar
            with Progress(*columns, console=console, transient=False, disable=plain) as progress:
                deadline = start + config.budget_s if config.budget_s else None
                bar = progress.add_task("tuning", total=None if deadline else config.trials, status="")
                callback = ProgressCallback(
                    result, selected, progress, bar, config.trials, patience, config.min_gain,
                    db_session_update=(lambda n: database.update_session(session_id, trials_done=n)) if session_id else None,
                    stop=stop, start=start, plain_lines=plain,
                )
                if plain:
                    console.print(f"tuning {len(selected)} of {len(tasks)} tasks "
                                  + (f"for {config.budget_s:.0f} s" if config.budget_s else f"({config.trials} trials)")
                                  + f"; a progress line every {PLAIN_PROGRESS_EVERY_S:g} s", highlight=False)
                cost_model = ms.cost_model.XGBModel(
                    config=ms.cost_model.xgb_model.XGBConfig(seed=config.seed, nthread=config.threads),
                    num_tuning_cores=config.threads, adaptive_training=True,
                )
                with scoped.reraise_errors():
                    if config.warm_start:
                        result.warm_start_records = warm_start(cost_model, scoped, target, config.threads,
                                                               should_stop=stop.is_set)
                    if result.warm_start_records:
                        console.print(f"cost model warm-started on {result.warm_start_records} records the "
                                      "database holds for this target", highlight=False)
                    ms.tune_tasks(
                        tasks=ctxs,
                        task_weights=weights,
                        work_dir=str(config.work_dir),
                        max_trials_global=config.trials,
                        max_trials_per_task=config.trials_per_task or config.trials,
                        num_trials_per_iter=per_iter,
                        builder=builder,
                        runner=runner,
                        database=scoped,
                        cost_model=cost_model,
                        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), callback],
                        task_scheduler=EagerGradientScheduler(seed=config.seed, deadline=deadline),
                        module_equality=me,
                    )
                if plain:
                    console.print(progress_line(result, callback.seen, time.perf_counter() - start,
                                                len(callback.task_trials)), highlight=False, markup=False)
        except (KeyboardInterrupt, Exception) as err:
            if isinstance(err, KeyboardInterrupt) or stop.is_set():
                # a second Ctrl-C can land after a batch is committed but before the callback counted it
                raise Interrupted(
                    f"tuning stopped by Ctrl-C after {records.trials_kept(result.trials)} trials; every measured "
                    f"batch is in the database, and the next run resumes from it"
                ) from None
            raise
        finally:
            if owns_builder:
                builder.shutdown()
    # What the database now holds is the truth (other processes may have tuned too).
    after = describe(tasks, database, target, me, session_id)
    for info, now in zip(infos, after):
        if now.db_best_ms is not None:
            info.tuned_ms = now.db_best_ms
        info.in_db, info.from_earlier_session = now.in_db, now.from_earlier_session
    result.seconds = time.perf_counter() - start
    return result
