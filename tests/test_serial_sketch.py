"""Every task's design space has a serial twin (:class:`tvmq.tuner.rules.SerialSketch`): a
sketch whose loops stay off TVM's thread pool, next to the parallel one. Small layers lose more
to a fork and join than a second core gives them; the search measures both."""

from __future__ import annotations

import numpy as np
import pytest

from .test_depthwise_rule import _arrays, _run


@pytest.fixture(scope="module")
def kernels():
    """The built-in int8 model's kernels for this host, by name, and the target."""
    import tvm

    from tvmq.model import inspect_model, load_model
    from tvmq.options import CodegenOptions
    from tvmq.stages import Steps, lower, prepare
    from tvmq.targets import resolve_target

    loaded = load_model("builtin:mobilenet_v2_0.35_96")
    profile, _ = resolve_target("native", num_cores=2)
    quiet = Steps.quiet()
    prepared = prepare(loaded, inspect_model(loaded), profile, CodegenOptions(int8=True, requant="xnnpack"), quiet)
    target = profile.tvm_target(2)
    lowered = lower(prepared, target, quiet)
    funcs = {gv.name_hint: f for gv, f in lowered.mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    return funcs, target


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


def test_a_function_without_loops_to_split_gets_no_twin(kernels):
    """Where every block's outer loop is already serial (the depthwise rule's serial sketch),
    there is nothing to twin: the space does not double."""
    from tvmq.tuner.rules import SERIAL_ANNOTATION, SerialSketch

    funcs, target = kernels
    func = funcs[sorted(n for n in funcs if n.startswith("int8_conv2d"))[0]]
    sch = _sketches(func, target)[0]
    root = sch.get_sblock("root")
    serial = [s for s in SerialSketch().apply(sch.copy(), root)]
    assert len(serial) in (1, 2)
    twin = serial[-1]
    again = SerialSketch().apply(twin, twin.get_sblock("root"))
    assert len(again) == 1
    for child in twin.get_child_blocks(twin.get_sblock("root")):
        loops = twin.get_loops(child)
        if len(loops) > 1:
            assert SERIAL_ANNOTATION in twin.get(loops[0]).annotations
