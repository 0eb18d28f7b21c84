"""The depthwise convolutions' own design space (:mod:`tvmq.tuner.depthwise`): what MetaSchedule
is given for them, that every point of it computes what the plain loops compute, and that the
search can replay it with other sampled tiles."""

from __future__ import annotations

import numpy as np
import pytest


def builtin_kernels():
    """The built-in int8 model's kernels for this host (they run here), by name, and the target."""
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


@pytest.fixture(scope="module")
def depthwise_funcs():
    """The built-in int8 model's depthwise kernels for this host, by name, and the target."""
    funcs, target = builtin_kernels()
    return {name: f for name, f in funcs.items() if "depthwise" in name}, target


@pytest.fixture(scope="module")
def vector_depthwise_funcs():
    """The same kernels in the vector (``vpmulld``) form, what targets without a depthwise
    intrinsic get: lowered here with the intrinsics hidden, so that every host tests that form."""
    from tvmq.int8 import intrin

    hidden = dict(intrin.DEPTHWISE)
    intrin.DEPTHWISE.clear()
    try:
        funcs, target = builtin_kernels()
    finally:
        intrin.DEPTHWISE.update(hidden)
    return {name: f for name, f in funcs.items() if "depthwise" in name}, target


def _schedule_of(func):
    import tvm
    from tvm.s_tir import Schedule

    return Schedule(tvm.IRModule({"main": func}))


def _by_shape(funcs, stride: int, smallest: bool):
    """A depthwise kernel of the given stride: the one with the fewest (or most) outputs."""
    picked = []
    for name, func in funcs.items():
        sch = _schedule_of(func)
        acc = sch.get_sblock("acc")
        _, oh, ow, c = (int(sch.get(loop).extent) for loop in sch.get_loops(acc)[:4])
        if round(_input_height(func) / oh) == stride:
            picked.append((oh * ow * c, name))
    picked.sort()
    return funcs[picked[0 if smallest else -1][1]]


def _input_height(func) -> int:
    from tvm.s_tir import meta_schedule as ms

    return int(ms.arg_info.ArgInfo.from_prim_func(func)[0].shape[1])


def _arrays(func, seed: int = 0) -> list[np.ndarray]:
    from tvm.s_tir import meta_schedule as ms

    rng = np.random.default_rng(seed)
    out = []
    for info in ms.arg_info.ArgInfo.from_prim_func(func):
        shape, dtype = [int(s) for s in info.shape], str(info.dtype)
        if dtype == "float32":
            out.append(rng.uniform(1e-3, 1e-2, shape).astype(dtype))
        elif dtype == "int32":
            out.append(rng.integers(-3000, 3000, shape).astype(dtype))
        else:
            info_ = np.iinfo(dtype)
            out.append(rng.integers(info_.min, info_.max + 1, shape).astype(dtype))
    return out


def _run(func, target, arrays) -> np.ndarray:
    import tvm

    with target:
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*tensors)
    return tensors[-1].numpy()


def _packs_taps(func) -> bool:
    """Whether a depthwise kernel is the packed-taps form (a depthwise intrinsic)."""
    from tvmq.int8.kernels_linear import TAPS_BLOCK

    try:
        _schedule_of(func).get_sblock(TAPS_BLOCK)
    except Exception:  # noqa: BLE001 - tvm raises its own error for a missing block
        return False
    return True


def test_depthwise_layers_use_the_depthwise_intrinsic_where_the_scheme_has_one(depthwise_funcs):
    """On VNNI every layer (all of the built-in model's have 16k channels), stride 1 or 2, packs
    taps for ``vpdpbusd``; schemes without a depthwise intrinsic keep the vector loops."""
    from tvmq.int8.intrin import DEPTHWISE
    from tvmq.targets import resolve_target

    funcs, _ = depthwise_funcs
    scheme = resolve_target("native", num_cores=2)[0].int8_scheme
    from tvm.s_tir import meta_schedule as ms

    def stride(func) -> int:
        out_height = int(ms.arg_info.ArgInfo.from_prim_func(func)[-1].shape[1])
        return round(_input_height(func) / out_height)

    packed = {name for name, f in funcs.items() if _packs_taps(f)}
    if scheme in DEPTHWISE:
        assert packed == set(funcs)
        assert {stride(funcs[name]) for name in packed} == {1, 2}
    else:
        assert not packed


def _loop_kinds_around(sch, block_name: str) -> list:
    return [sch.get(loop).kind for loop in sch.get_loops(sch.get_sblock(block_name))]


def test_every_depthwise_kernel_asks_for_the_rule_and_reduces_only_the_window(depthwise_funcs):
    from tvmq.int8.params import DEPTHWISE_RULE

    funcs, _ = depthwise_funcs
    assert len(funcs) >= 5
    for name, func in funcs.items():
        sch = _schedule_of(func)
        acc = sch.get_sblock("acc")
        assert str(sch.get(acc).annotations.get("schedule_rule")) == DEPTHWISE_RULE, name
        # (b, i, j, o, rh, rw): the channel loop is spatial, no reduction over one input channel
        assert len(sch.get_loops(acc)) == 6, name


@pytest.mark.parametrize("form", ["as lowered here", "vector"])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_sketch_is_vectorized_over_channels_and_exact(request, stride, form):
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.tirx.stmt import ForKind

    from tvmq.tuner.rules import space_generator

    funcs, target = request.getfixturevalue("depthwise_funcs" if form == "as lowered here" else "vector_depthwise_funcs")
    func = _by_shape(funcs, stride, smallest=False)
    arrays = _arrays(func)
    expected = _run(func, target, arrays)
    seen_parallel = set()
    for seed in (0, 1):
        ctx = ms.TuneContext(mod=tvm.IRModule({"main": func}), target=target, space_generator=space_generator(),
                             rand_state=seed, num_threads=1)
        sketches = list(ctx.space_generator.generate_design_space(ctx.mod))
        assert len(sketches) >= 2
        for sch in sketches:
            assert all(p.apply(sch) for p in ctx.space_generator.postprocs)
            if _packs_taps(func):  # the channels in one call of the depthwise intrinsic, the words vectorized
                kinds = _loop_kinds_around(sch, "acc_o_update")
                assert "llvm.x86.avx512.vpdpbusd.512" in sch.mod.script()
                assert _loop_kinds_around(sch, "taps")[-1] == ForKind.VECTORIZED
                # one vector of channels: fused across column pairs, it would read the input as a gather
                assert int(sch.get(sch.get_loops(sch.get_sblock("taps"))[-1]).extent) == 16
            else:
                kinds = _loop_kinds_around(sch, "acc_update")
                assert kinds[-1] == ForKind.VECTORIZED, kinds  # the channels, in one vector
            parallel = ForKind.PARALLEL in kinds
            seen_parallel.add(parallel)
            np.testing.assert_array_equal(_run(sch.mod["main"], target, arrays), expected)
    assert seen_parallel == {True, False}, "a serial sketch for small layers, and a parallel one"


def test_the_padding_is_copied_a_register_at_a_time(vector_depthwise_funcs):
    """The vector form's zero-point padding, computed per row of tiles, is vectorized in pieces of at
    most one 512-bit register: one vector as wide as a row's channels (336 here, 576 in mobilenet_v2)
    took LLVM 3 s per candidate to emit, and a round of a uint8 model's depthwise task 37 s."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.tirx.stmt import ForKind

    from tvmq.tuner.depthwise import MAX_PAD_VECTOR
    from tvmq.tuner.rules import space_generator

    funcs, target = vector_depthwise_funcs
    widest = max(funcs.values(), key=lambda f: int(ms.arg_info.ArgInfo.from_prim_func(f)[-1].shape[-1]))
    assert int(ms.arg_info.ArgInfo.from_prim_func(widest)[-1].shape[-1]) > MAX_PAD_VECTOR
    arrays = _arrays(widest)
    expected = _run(widest, target, arrays)
    ctx = ms.TuneContext(mod=tvm.IRModule({"main": widest}), target=target, space_generator=space_generator(),
                         rand_state=0, num_threads=1)
    sketches = list(ctx.space_generator.generate_design_space(ctx.mod))
    assert sketches
    for sch in sketches:
        assert all(p.apply(sch) for p in ctx.space_generator.postprocs)
        pad = sch.get_loops(sch.get_sblock("pad_zp"))[-1]
        assert sch.get(pad).kind == ForKind.VECTORIZED and int(sch.get(pad).extent) <= MAX_PAD_VECTOR
        np.testing.assert_array_equal(_run(sch.mod["main"], target, arrays), expected)


def test_the_search_replays_the_sketches_with_other_tiles(depthwise_funcs, tmp_path):
    """MetaSchedule's evolutionary search replays a sketch's trace with mutated tile sizes: every
    loop lookup must find as many loops (a unit loop dropped once failed the whole tuning run)."""
    import logging

    import tvm
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    from tvmq.tuner.builder import PersistentBuilder
    from tvmq.tuner.rules import space_generator
    from tvmq.tuner.runner import make_local_runner

    funcs, target = depthwise_funcs
    func = _by_shape(funcs, 1, smallest=True)
    # a context of its own (MetaSchedule's tune_tir sets up file loggers that other tests' runs break)
    logger = logging.getLogger("tvmq.tests.depthwise")
    logger.addHandler(logging.NullHandler())
    ctx = ms.TuneContext(mod=tvm.IRModule({"main": func}), target=target, space_generator=space_generator(),
                         search_strategy=ms.search_strategy.EvolutionarySearch(
                             population_size=32, init_min_unmeasured=8, genetic_num_iters=2),
                         task_name="depthwise", logger=logger, rand_state=0, num_threads=1)
    builder = PersistentBuilder(max_workers=1)
    try:
        database = ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(tmp_path), max_trials_global=16,
                                 num_trials_per_iter=8, builder=builder, runner=make_local_runner(),
                                 database=ms.database.MemoryDatabase(), cost_model="random",
                                 task_scheduler="round-robin")
    finally:
        builder.shutdown()
    measured = [r for r in database.get_all_tuning_records() if r.run_secs]
    assert len(measured) >= 12
    best = min(measured, key=lambda r: float(np.mean([float(s) for s in r.run_secs])))
    sch = Schedule(tvm.IRModule({"main": func}))
    best.trace.apply_to_schedule(sch, remove_postproc=False)
    arrays = _arrays(func, seed=1)
    np.testing.assert_array_equal(_run(sch.mod["main"], target, arrays), _run(func, target, arrays))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("x_dtype,signed", [("int8", False), ("uint8", False), ("int8", True), ("uint8", True)])
def test_packed_taps_accumulate_the_window_times_the_weights(x_dtype, signed, stride):
    """The packed-taps kernel's accumulator, computed by its own loops (what the intrinsics' descriptions
    say, unsigned bytes for ``vpdpbusd``, signed for ``sdot``), on the host: for every output pixel
    ``sum((x_pad + a_offset) * (w - zp_w))`` over the 3x3 window of the input padded with its zero point.
    With the bias fold of the lowering that is TFLite's ``sum((x_pad - zp_x) * (w - zp_w))``."""
    import tvm
    from tvm import te

    from tvmq.int8.kernels_linear import depthwise_taps_te
    from tvmq.int8.params import ConvParams, Requantization, TapsParams

    rng = np.random.default_rng(3)
    h, w, c, zp_x = 7, 6, 8, (-5 if x_dtype == "int8" else 131)
    lo, hi = (-128, 127) if x_dtype == "int8" else (0, 255)
    a_offset = {("int8", False): 128, ("uint8", False): 0, ("int8", True): 0, ("uint8", True): -128}[x_dtype, signed]
    x = rng.integers(lo, hi + 1, (1, h, w, c)).astype(x_dtype)
    b = rng.integers(-128, 128, (3, 3, c))  # weights minus their zero point
    parities = 2 if stride == 1 else 1  # (the lowering's packing, one column parity with a stride of 2)
    w8 = np.zeros((3, parities, c, 4), np.int8)
    for q in range(parities):
        for k in range(3):
            w8[:, q, :, k + q] = b[:, k, :]
    # TensorFlow's "same" padding: (1, 1) on both axes with a stride of 1; with 2, (1, 1) on the 7 rows
    # and (0, 1) on the 6 columns
    pt, pl, pb, pr = (1, 1, 1, 1) if stride == 1 else (1, 0, 1, 1)
    oh, ow = (h + pt + pb - 3) // stride + 1, (w + pl + pr - 3) // stride + 1
    conv = ConvParams((stride, stride), (pt, pl, pb, pr), (1, 1), c)
    xt = te.placeholder(x.shape, x_dtype, name="x")
    wt = te.placeholder(w8.shape, "int8", name="w8")
    bt = te.placeholder((c,), "int32", name="bias")
    epi = Requantization("xnnpack", 0, -128, 127, "int8", scale=1.0)
    out = depthwise_taps_te(xt, wt, bt, params=TapsParams(zp_x, a_offset, "any", conv, signed), epi=epi)
    (acc,) = [t for t in out.op.input_tensors if t.op.name == "acc"]
    func = te.create_prim_func([xt, wt, acc]).with_attr("global_symbol", "main")
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    got = tvm.runtime.tensor(np.zeros((1, oh, ow, c), np.int32))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w8), got)

    xp = np.pad(x.astype(np.int64), [(0, 0), (pt, pb), (pl, pr), (0, 0)], constant_values=zp_x) + a_offset

    def window(i, j):  # the input pixels that tap (i, j) of the window meets, for every output pixel
        return xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]

    want = sum(window(i, j) * b[i, j] for i in range(3) for j in range(3))
    np.testing.assert_array_equal(got.numpy(), want)
    tflite = want - (zp_x + a_offset) * b.sum(axis=(0, 1))
    np.testing.assert_array_equal(tflite, sum((window(i, j) - a_offset - zp_x) * b[i, j]
                                              for i in range(3) for j in range(3)))
