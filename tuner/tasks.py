"""Tuning tasks: extraction from the fused Relax module, de-duplication, and the task table.

The QDQ import bakes every layer's scales and zero points into its fused TIR function, so
layers that compute the same convolution on the same shapes still differ structurally and
would be tuned once each. MetaSchedule's ``anchor-block`` module equality compares only the
anchor block (the convolution / matmul / reduction that dominates the function), so such
layers become one task: the best schedule of the anchor is applied to every layer that shares
it (``tvm.s_tir.meta_schedule.trace_apply``). That is tvmq's default.

Functions that only reshape are not tasks: Relax's ``RewriteDataflowReshape`` (part of every
build) turns their calls into views of the input, so no kernel of theirs ever runs. Tuning them
spent trials on code that does not exist at run time, and their "best" records (0.5 ms for a
reshape the VM does for free, on int8 mobilenet_v2) made the per-task estimates lie.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.table import Table

DEFAULT_MODULE_EQUALITY = "anchor-block"


@dataclass
class TaskInfo:
    index: int
    name: str
    weight: int
    flops: float
    has_dot: bool = False  # holds an int8 dot product: untuned, MetaSchedule's first design-space point, not naive loops
    in_db: bool = False
    db_best_ms: float | None = None
    untuned_ms: float | None = None  # the unscheduled kernel, measured only when asked (TuneConfig.measure_untuned)
    first_round_ms: float | None = None  # the best of this run's first measured round of the task
    tuned_ms: float | None = None
    trials: int = 0
    from_earlier_session: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def runs_as_view(task) -> bool:
    """Whether the build replaces the task's function by a view (a pure reshape)."""
    import tvm
    from tvm import relax

    funcs = [f for f in task.dispatched[0].functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return len(funcs) == 1 and bool(relax.analysis.has_reshape_pattern(funcs[0]))


def extract(lowered_mod, target, module_equality: str = DEFAULT_MODULE_EQUALITY, views: bool = False):
    """MetaSchedule's task extraction (``ExtractedTask`` list) from a module after the zero
    pipeline, without the pure reshapes that run as views (``views=True`` keeps them)."""
    from tvm.s_tir import meta_schedule as ms

    tasks = [t for t in ms.relax_integration.extract_tasks(lowered_mod, target, module_equality=module_equality)
             if not scheduled_by_hand(t)]
    return tasks if views else [t for t in tasks if not runs_as_view(t)]


def scheduled_by_hand(task) -> bool:
    """Whether the task's function came scheduled (``tirx.is_scheduled``: the AMX kernels of
    :mod:`tvmq.int8.amx`): there is nothing to search, and the build keeps it as it is."""
    import tvm

    from .rules import _is_scheduled

    return any(_is_scheduled(f) for f in task.dispatched[0].functions.values() if isinstance(f, tvm.tirx.PrimFunc))


@dataclass(frozen=True)
class TaskDedup:
    """How many tuning tasks each equality makes of a lowered module."""

    fused_calls: int  # calls of TIR functions that run as kernels
    structural: int  # distinct kernels under structural equality
    anchor_block: int  # distinct kernels under anchor-block equality: the tuning tasks
    views: int  # calls of pure reshapes that the build turns into views

    @classmethod
    def of(cls, lowered_mod, anchor_tasks) -> TaskDedup:
        """From the module and its anchor-block tasks (views excluded), without a second
        extraction: structural equality is counted with TVM's structural hash of each called
        function, views with the same test as :func:`runs_as_view`."""
        import tvm
        import tvm_ffi
        from tvm import relax

        calls: dict = {}

        def visit(expr):
            if isinstance(expr, relax.Call) and expr.args and isinstance(expr.args[0], relax.GlobalVar):
                gv = expr.args[0]
                if isinstance(lowered_mod.functions.get(gv), tvm.tirx.PrimFunc):
                    calls[gv] = calls.get(gv, 0) + 1

        for func in lowered_mod.functions.values():
            if isinstance(func, relax.Function):
                relax.analysis.post_order_visit(func.body, visit)
        kernels, views, fused = set(), 0, 0
        for gv, n in calls.items():
            func = lowered_mod[gv]
            if relax.analysis.has_reshape_pattern(func):
                views += n
            else:
                fused += n
                kernels.add(tvm_ffi.structural_hash(func))
        return cls(fused_calls=fused, structural=len(kernels), anchor_block=len(anchor_tasks), views=views)

    def to_dict(self) -> dict:
        return {"fused_calls": self.fused_calls, "structural": self.structural,
                "anchor-block": self.anchor_block, "views": self.views}


def dedup_counts(lowered_mod, target) -> dict:
    """:class:`TaskDedup` of a lowered module as the report's dict (one extraction)."""
    return TaskDedup.of(lowered_mod, extract(lowered_mod, target)).to_dict()


def task_flops(task) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(task.dispatched[0]))
    except Exception:  # noqa: BLE001 - some elementwise kernels have no FLOP estimate
        return 0.0


def describe(tasks, database=None, target=None, module_equality: str = DEFAULT_MODULE_EQUALITY,
             session_id: int | None = None) -> list[TaskInfo]:
    """One TaskInfo per extracted task, with what the database already holds for this target."""
    from .rules import has_dot

    infos = [TaskInfo(i, t.task_name, int(t.weight), task_flops(t), has_dot(t.dispatched[0]["main"]))
             for i, t in enumerate(tasks)]
    if database is not None and tasks:
        summaries = database.summarize([t.dispatched[0] for t in tasks], target, module_equality=module_equality)
        for info, s in zip(infos, summaries):
            info.in_db = bool(s.num_valid)
            info.db_best_ms = s.best_mean_run_secs * 1e3 if s.best_mean_run_secs is not None else None
            info.from_earlier_session = info.in_db and s.best_session_id != session_id
    return infos


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def tasks_table(infos: list[TaskInfo], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, just in (("#", "right"), ("task", "left"), ("weight", "right"), ("MFLOP", "right"),
                      ("in db", "center"), ("db best ms", "right")):
        table.add_column(col, justify=just)
    for t in infos:
        table.add_row(str(t.index), t.name, str(t.weight), f"{t.flops / 1e6:.2f}",
                      "yes" if t.in_db else "", _ms(t.db_best_ms))
    return table


def before_ms(t: TaskInfo) -> float | None:
    """A task's latency before this run tuned it: its unscheduled kernel where that was measured,
    else the best of its first measured round."""
    return t.untuned_ms if t.untuned_ms is not None else t.first_round_ms


def results_table(infos: list[TaskInfo]) -> Table:
    untuned = any(t.untuned_ms is not None for t in infos)
    before = "untuned" if untuned else "1st round"
    table = Table(title="Per-task latency before and after tuning (ms)" + (
        "" if untuned else "; before: the best of the task's first round of candidates"), title_justify="left")
    for col in ("#", "task", "weight", before, "tuned", "speed-up", "trials", "source"):
        table.add_column(col, justify="left" if col in ("task", "source") else "right")
    for t in infos:
        b = before_ms(t)
        speed = f"{b / t.tuned_ms:.1f}x" if b and t.tuned_ms else "-"
        source = "earlier session" if t.from_earlier_session else ("this run" if t.trials else "")
        table.add_row(str(t.index), t.name, str(t.weight), _ms(b), _ms(t.tuned_ms), speed, str(t.trials), source)
    return table
