"""Every task's design space has a serial twin (:class:`tvmq.tuner.rules.SerialSketch`): a
sketch whose loops stay off TVM's thread pool, next to the parallel one. Small layers lose more
to a fork and join than a second core gives them; the search measures both."""

from __future__ import annotations

import numpy as np
import pytest

from .test_depthwise_rule import _arrays, _run, builtin_kernels


@pytest.fixture(scope="module")
def kernels():
    """The built-in int8 model's kernels for this host, by name, and the target."""
    return builtin_kernels()


def _parallel_loops(mod) -> int:
    return mod.script().count("T.parallel(")


def _sketches(func, target, seed: int = 0):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from tvmq.tuner.rules import space_generator

    ctx = ms.TuneContext(mod=tvm.IRModule({"main": func}), target=target, space_generator=space_generator(),
                         rand_state=seed, num_threads=1)
    out = []
    for sch in ctx.space_generator.generate_design_space(ctx.mod):
        if all(p.apply(sch) for p in ctx.space_generator.postprocs):
            out.append(sch)
    return out


@pytest.mark.parametrize("kind", ["int8_conv2d", "fused_int8_conv2d", "int8_requantize"])
def test_each_kernel_gets_a_serial_and_a_parallel_sketch_that_compute_the_same(kernels, kind):
    funcs, target = kernels
    name = sorted(n for n in funcs if n.startswith(kind) and (kind != "int8_conv2d" or "add" not in n))[0]
    func = funcs[name]
    arrays = _arrays(func)
    expected = _run(func, target, arrays)
    sketches = _sketches(func, target)
    parallel = [_parallel_loops(sch.mod) for sch in sketches]
    assert any(n == 0 for n in parallel) and any(n > 0 for n in parallel), (name, parallel)
    for sch in sketches:
        np.testing.assert_array_equal(_run(sch.mod["main"], target, arrays), expected)


def test_the_serial_choice_survives_the_trace(kernels):
    """What a tuning record stores is the trace: replayed on the plain function, a serial
    sketch's trace must give a schedule with no parallel loop again (the build applies records
    that way)."""
    import tvm
    from tvm.s_tir import Schedule

    funcs, target = kernels
    func = funcs[sorted(n for n in funcs if n.startswith("int8_conv2d"))[0]]
    serial = [sch for sch in _sketches(func, target, seed=3) if _parallel_loops(sch.mod) == 0]
    assert serial
    replayed = Schedule(tvm.IRModule({"main": func}))
    serial[0].trace.apply_to_schedule(replayed, remove_postproc=False)
    assert _parallel_loops(replayed.mod) == 0


def test_the_twin_adds_one_annotation_to_the_trace_and_nothing_else(kernels):
    """The twin differs from its sketch by one traced instruction, the root's annotation. A loop
    lookup in the trace would record a loop count that a mutated compute location changes, and
    the replay of the trace would then fail."""
    from tvmq.tuner.rules import SERIAL_ANNOTATION, SerialSketch

    funcs, target = kernels
    func = funcs[sorted(n for n in funcs if n.startswith("int8_conv2d"))[0]]
    import tvm
    from tvm.s_tir import Schedule

    sch = Schedule(tvm.IRModule({"main": func}))
    root = sch.get_sblock("root")
    base = len(sch.trace.insts)
    plain, twin = SerialSketch().apply(sch, root)
    added = [inst.kind.name for inst in twin.trace.insts[base:]]
    assert added == ["Annotate"], added
    assert SERIAL_ANNOTATION in twin.get(twin.get_sblock("root")).annotations
    assert len(SerialSketch().apply(twin, twin.get_sblock("root"))) == 1  # no twin of a twin


def test_the_depthwise_rule_keeps_its_own_choice(kernels):
    """The depthwise rule already returns a parallel and a serial sketch per vector width: no twin
    is added to either (a twin of its parallel sketch would be the same sketch again)."""
    funcs, target = kernels
    name = sorted(n for n in funcs if "depthwise" in n)[0]
    parallel = [_parallel_loops(sch.mod) > 0 for sch in _sketches(funcs[name], target)]
    assert parallel.count(True) == parallel.count(False) >= 1, parallel
