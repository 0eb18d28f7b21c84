"""The design space MetaSchedule searches: its default CPU rules, plus the int8 dot products.

:func:`space_generator` is MetaSchedule's ``post-order-apply`` space with the default LLVM
schedule rules, postprocessors and mutators, and two additions:

* :class:`TensorizeAnnotatedDot`, a schedule rule placed before the generic multi-level tiling:
  a block that the int8 lowering annotated with ``tvmq_dot = INTRIN`` (:mod:`tvmq.int8.dot`) is
  tiled around that tensor intrinsic by MetaSchedule's own ``MultiLevelTilingWithIntrin``; the
  rest of the search (tile sizes, fusion of the requantization, parallelism, unrolling) stays
  MetaSchedule's. Each layer names its own intrinsic, so one target can use several (e.g. the
  saturating ``vpmaddubsw`` only where it is exact, ``vpmaddwd`` elsewhere).
* the ``RewriteTensorize`` postprocessor, which replaces the tiled block by the intrinsic,
  with :class:`UnrollAroundTensorized` before it and :class:`RequireTensorized` after it;
* :class:`ComputeLocationOutsideDots` in place of ``RandomComputeLocation``.

TVM's own choice for a target (``from-target``) is not used: for AVX-512 VNNI targets it would
tensorize any u8 x i8 block with TVM's ``dot_16x4_vnni``, which its LLVM 22 cannot compile.
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.postproc import PyPostproc
from tvm.s_tir.meta_schedule.schedule_rule import PyScheduleRule

from .tensor_intrinsics import import_tensor_intrinsics

DOT_ANNOTATION = "tvmq_dot"
SERIAL_ANNOTATION = "tvmq_serial"  # on a loop: RewriteParallelVectorizeUnroll leaves it serial; on a
# root block: SerialWhereAsked drops the parallel request
PARALLEL_REQUEST = "meta_schedule.parallel"  # ParallelizeVectorizeUnroll's annotation of the root block


def _tiling_with(intrin: str) -> ms.schedule_rule.ScheduleRule:
    # the parameters of MetaSchedule's DefaultX86 rule for VNNI, with another intrinsic
    return ms.schedule_rule.MultiLevelTilingWithIntrin(
        intrin,
        structure="SSRSRS",
        tile_binds=None,
        max_innermost_factor=64,
        vector_load_lens=None,
        reuse_read=None,
        reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global"),
    )


@derived_object
class TensorizeAnnotatedDot(PyScheduleRule):
    """Tile each block annotated ``tvmq_dot = INTRIN`` with ``MultiLevelTilingWithIntrin(INTRIN)``;
    other blocks are left to the next rules."""

    def __init__(self) -> None:
        self.context = None
        self.rules: dict[str, ms.schedule_rule.ScheduleRule] = {}

    def _initialize_with_tune_context(self, context) -> None:
        self.context = context
        for rule in self.rules.values():
            rule._initialize_with_tune_context(context)  # noqa: SLF001 - MetaSchedule's own hook

    def _rule(self, intrin: str):
        rule = self.rules.get(intrin)
        if rule is None:
            from tvmq.int8 import intrin as _registers  # noqa: F401 - the intrinsics must exist

            rule = self.rules[intrin] = _tiling_with(intrin)
            if self.context is not None:
                rule._initialize_with_tune_context(self.context)  # noqa: SLF001
        return rule

    def apply(self, sch, block) -> list:
        intrin = sch.get(block).annotations.get(DOT_ANNOTATION)
        if intrin is None:
            return [sch]
        return list(self._rule(str(intrin)).apply(sch, block))

    def clone(self):
        new = TensorizeAnnotatedDot()
        new.context = self.context
        return new


@derived_object
class UnrollAroundTensorized(PyPostproc):
    """Turn vectorized loops around a block that is about to be tensorized into unrolled ones.

    ``RewriteParallelVectorizeUnroll`` vectorizes the innermost spatial loops of every block,
    including the register tile around an intrinsic call. TVM cannot vectorize a loop whose
    body is already vector code and fails the build ("VectorizeLoop before
    LiftStorageAlloc"); on mobilenet_v2 that was half of all candidates. Unrolled, the same
    loop is the register blocking the intrinsic wants. Runs before ``RewriteTensorize``."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        from tvm.tirx.stmt import ForKind

        for block in _all_blocks(sch):
            if "meta_schedule.auto_tensorize" not in sch.get(block).annotations:
                continue
            for loop in sch.get_loops(block):
                if sch.get(loop).kind == ForKind.VECTORIZED:
                    sch.unroll(loop)
        return True

    def clone(self):
        return UnrollAroundTensorized()


@derived_object
class RequireTensorized(PyPostproc):
    """Reject a candidate whose annotated dot product did not get tensorized.

    ``RewriteTensorize`` only logs a warning when an intrinsic does not match and keeps the
    plain loops: such a candidate would be measured (and possibly kept as the best) without the
    instruction the layer was packed for. Runs after ``RewriteTensorize``."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        return not _has_dot_block(sch)

    def clone(self):
        return RequireTensorized()


@derived_object
class ComputeLocationOutsideDots(PyScheduleRule):
    """MetaSchedule's ``RandomComputeLocation``, except for the blocks that feed a dot product
    being tensorized (the zero-point padding of a convolution's input): computed inside the
    intrinsic's tile, they would replace its operand by an expression it cannot match."""

    def __init__(self) -> None:
        self.inner = ms.schedule_rule.RandomComputeLocation()

    def _initialize_with_tune_context(self, context) -> None:
        self.inner._initialize_with_tune_context(context)  # noqa: SLF001 - MetaSchedule's own hook

    def apply(self, sch, block) -> list:
        from tvm.s_tir.schedule import ScheduleError

        try:
            consumers = sch.get_consumers(block)
        except ScheduleError:  # e.g. a block inside a blockized one: not a candidate anyway
            consumers = []
        for consumer in consumers:
            ann = sch.get(consumer).annotations
            if DOT_ANNOTATION in ann or "meta_schedule.auto_tensorize" in ann:
                return [sch]
        return list(self.inner.apply(sch, block))

    def clone(self):
        return ComputeLocationOutsideDots()


@derived_object
class SerialSketch(PyScheduleRule):
    """A serial twin of every sketch: at the root block (the last one MetaSchedule's post-order
    visits, where ``ParallelizeVectorizeUnroll`` has just asked for parallel loops), return the
    sketch as it is and a copy whose root carries ``tvmq_serial``; :class:`SerialWhereAsked`
    then drops that copy's request for parallel loops. A parallel loop costs a fork and join on
    TVM's thread pool, about 0.8 us at 2 threads on a 2-vCPU Zen 4 even with the workers
    spinning: more than a layer of a few microseconds gains from a second core. The search
    measures both and keeps the faster, task by task.

    The twin adds one instruction to the trace, an annotation of the root block. Looking up
    loops here would record how many there were, and a mutated compute location changes that
    count: the replay of such a trace fails (it stopped a 20-minute tuning run). A sketch whose
    loops a rule of its own already made parallel or serial (the depthwise rule, which returns
    both) gets no twin."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch, block) -> list:
        if sch.get(block).name_hint != "root":
            return [sch]
        text = sch.mod.script()
        if "T.parallel(" in text or SERIAL_ANNOTATION in text:
            return [sch]
        serial = sch.copy()
        serial.annotate(block, SERIAL_ANNOTATION, 1)
        return [sch, serial]

    def clone(self):
        return SerialSketch()


@derived_object
class SerialWhereAsked(PyPostproc):
    """Remove ``ParallelizeVectorizeUnroll``'s request for parallel loops from a root block that
    :class:`SerialSketch` marked serial; vectorizing and unrolling stay. Runs before
    ``RewriteParallelVectorizeUnroll``, which then makes no loop parallel."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        from tvm.tirx import PrimFunc

        for gv, func in sch.mod.functions_items():
            if not isinstance(func, PrimFunc):
                continue
            root = sch.get_sblock("root", func_name=gv.name_hint)
            ann = sch.get(root).annotations
            if SERIAL_ANNOTATION in ann and PARALLEL_REQUEST in ann:
                sch.unannotate(root, PARALLEL_REQUEST)
        return True

    def clone(self):
        return SerialWhereAsked()


def _all_blocks(sch) -> list:
    """Every block of every function in the schedule's module."""
    from tvm.tirx import PrimFunc

    out = []
    for gv, func in sch.mod.functions_items():
        if not isinstance(func, PrimFunc):
            continue
        stack = [sch.get_sblock("root", func_name=gv.name_hint)]
        while stack:
            b = stack.pop()
            out.append(b)
            stack.extend(sch.get_child_blocks(b))
    return out


def schedule_rules() -> list:
    rules = [ComputeLocationOutsideDots() if type(r).__name__ == "RandomComputeLocation" else r
             for r in ms.schedule_rule.ScheduleRule.create("llvm")]
    at = next(i for i, r in enumerate(rules) if type(r).__name__ == "MultiLevelTiling")
    return [*rules[:at], TensorizeAnnotatedDot(), *rules[at:], SerialSketch()]


def postprocs() -> list:
    procs = list(ms.postproc.Postproc.create("llvm"))
    par = next(i for i, p in enumerate(procs) if type(p).__name__ == "RewriteParallelVectorizeUnroll")
    procs.insert(par, SerialWhereAsked())
    at = next(i for i, p in enumerate(procs) if type(p).__name__ == "RewriteReductionBlock") + 1
    return [*procs[:at], UnrollAroundTensorized(), ms.postproc.RewriteTensorize(vectorize_init_loop=True),
            RequireTensorized(), *procs[at:]]


def space_generator() -> ms.space_generator.PostOrderApply:
    """A fresh design-space generator (one per tuning task: MetaSchedule clones it anyway).
    Its ``TuneContext`` imports TVM's tensor intrinsics: done here first, the fast way."""
    import_tensor_intrinsics()
    from . import depthwise  # noqa: F401 - registers the depthwise rule the int8 kernels name

    return ms.space_generator.PostOrderApply(sch_rules=schedule_rules(), postprocs=postprocs(),
                                             mutator_probs="llvm")


def design_space_schedule(mod, target, seed: int = 0):
    """The schedule of ``mod`` (an IRModule with one PrimFunc, ``main``) at the first point of its
    design space that survives the postprocessors (tensorized where it has an annotated dot
    product, parallel and vectorized), or None. Its ``trace`` is what a tuning record of that
    point stores. Nothing is measured: this is MetaSchedule's starting point, not a tuned schedule."""
    ctx = ms.TuneContext(mod=mod, target=target, space_generator=space_generator(), rand_state=seed, num_threads=1)
    try:
        spaces = ctx.space_generator.generate_design_space(ctx.mod)
        for sch in spaces:
            if all(p.apply(sch) for p in ctx.space_generator.postprocs):
                return sch
    except Exception:  # noqa: BLE001 - whatever stops the rules, the function keeps its plain loops
        pass
    return None


def design_space_point(func, target, seed: int = 0):
    """``func`` (a PrimFunc) scheduled by :func:`design_space_schedule`, or None."""
    import tvm

    sch = design_space_schedule(tvm.IRModule({"main": func}), target, seed)
    return None if sch is None else sch.mod["main"]


def _is_scheduled(func) -> bool:
    return func.attrs is not None and "tirx.is_scheduled" in func.attrs and bool(func.attrs["tirx.is_scheduled"])


def _has_dot_block(sch) -> bool:
    """Whether a block of the schedule still carries the ``tvmq_dot`` annotation."""
    return any(DOT_ANNOTATION in sch.get(b).annotations for b in _all_blocks(sch))


def has_dot(func) -> bool:
    """Whether the PrimFunc ``func`` holds a block annotated for an int8 dot-product intrinsic."""
    import tvm
    from tvm.s_tir import Schedule

    return _has_dot_block(Schedule(tvm.IRModule({"main": func})))


def schedule_unscheduled(lowered, target, seed: int = 0, only_dots: bool = False):
    """The module after the zero pipeline with every function the database did not schedule
    replaced by :func:`design_space_point` (where one exists); with ``only_dots``, only the
    functions holding an annotated int8 dot product (unscheduled, those are naive loops that
    never reach the instruction their weights were packed for). Returns ``(module, number of
    functions scheduled)``."""
    import tvm

    funcs, done = {}, 0
    for gv, func in lowered.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and not _is_scheduled(func) and (not only_dots or has_dot(func)):
            point = design_space_point(func, target, seed)
            if point is not None:
                func = point.with_attr("tirx.is_scheduled", True)
                done += 1
        funcs[gv] = func
    return tvm.IRModule(funcs, attrs=lowered.attrs), done


__all__ = ["DOT_ANNOTATION", "ComputeLocationOutsideDots", "RequireTensorized", "TensorizeAnnotatedDot",
           "UnrollAroundTensorized", "design_space_point", "design_space_schedule", "has_dot",
           "postprocs", "schedule_rules", "schedule_unscheduled", "space_generator"]
