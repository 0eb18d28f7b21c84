"""Pointwise layers on AMX tiles (:mod:`tvmq.int8.amx`).

The kernel is compiled for Sapphire Rapids everywhere (its code must hold the tile instructions);
where this host has AMX-INT8 it also runs, and its output must equal the numpy reference of the
same integer product and requantization, and a whole model's must equal TFLite's.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tvmq.targets import get_profile

PROFILE = get_profile("sapphirerapids")
RUNS_HERE = PROFILE.can_run_here


def _build(func):
    import tvm

    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, target=PROFILE.tvm_target(1))


def _case(m, k, n, a_dtype, mode, zp_w, seed):
    """A random layer: activation, weights, the kernel's operands and the numpy result."""
    from tvmq.int8 import amx, dot
    from tvmq.int8 import requant as rq
    from tvmq.int8.params import INT_RANGES, Requantization

    rng = np.random.default_rng(seed)
    lo, hi = INT_RANGES[a_dtype]
    x = rng.integers(lo, hi + 1, (m, k)).astype(a_dtype)
    w_dtype = "int8" if zp_w == 0 else "uint8"
    wl, wh = INT_RANGES[w_dtype]
    w = rng.integers(wl + (w_dtype == "int8"), wh + 1, (k, n)).astype(w_dtype)
    choice = amx.choose(a_dtype, w, zp_w)
    packed, _ = dot.pack(choice, w)
    bias = rng.integers(-5000, 5000, n + (-n % 16)).astype(np.int32)
    s_w = rng.uniform(0.001, 0.01, n).astype(np.float32)
    b = w.astype(np.int64) - choice.shift
    acc = amx.reference(x, b, bias[:n]).astype(np.int64)
    rowsum = x.astype(np.int64).sum(axis=1)
    if choice.cw:
        acc += rowsum[:, None] * choice.cw
    if mode == "tflite":
        q, sh = rq.linear_multipliers(0.05, s_w, 0.1, False)
        tens, ref = [q, sh], rq.requantize_np(acc, q, sh, 3, -128, 127, "int8")
    else:
        sc = rq.xnnpack_scale(0.05, s_w, 0.1)
        tens, ref = [sc], rq.requantize_fp32_np(acc, sc, 3, -128, 127, "int8")
    epi = Requantization(mode, 3, -128, 127, "int8")
    params = amx.AmxParams(m, k, n, a_dtype, choice.cw, tuple(str(t.dtype) for t in tens))
    args = [x, packed, bias] + ([rowsum.astype(np.int32)] if choice.cw else []) + tens
    return amx.amx_gemm_func(params, epi), args, ref, choice


@pytest.mark.parametrize("m,k,n,a_dtype,mode,zp_w", [
    (90, 24, 144, "int8", "xnnpack", 0),    # rows not a multiple of 32: the last job moves back
    (49, 160, 40, "int8", "tflite", 0),     # K in chunks of 40 bytes; 40 channels: 8-lane epilogue, 16 padded
    (64, 64, 16, "int8", "tflite", 0),      # one weight tile per job
    (33, 12, 20, "uint8", "tflite", 128),   # uint8 x int8 (tdpbusd): w - 128 fits int8
    (100, 96, 48, "uint8", "xnnpack", 120), # w - 120 does not fit int8: w - 128 and the row sums (cw = 8)
])
def test_kernel_equals_the_numpy_reference(m, k, n, a_dtype, mode, zp_w):
    from tvmq.int8 import amx

    func, args, ref, choice = _case(m, k, n, a_dtype, mode, zp_w, seed=m + k + n)
    assert (choice.cw != 0) == (zp_w == 120)
    ex = _build(func)
    asm = ex.mod.inspect_source("asm")
    assert re.search(rf"\b{amx.INSTRUCTIONS[a_dtype]}\s+%tmm", asm), "no AMX dot product in the kernel's code"
    assert "ldtilecfg" in asm and "tilestored" in asm
    if not RUNS_HERE:
        pytest.skip("this host has no AMX-INT8: the kernel was compiled, not run")
    import tvm

    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args] + [tvm.runtime.tensor(np.zeros((m, n), "int8"))]
    ex.mod["main"](*tensors)
    out = tensors[-1].numpy()
    assert np.array_equal(out, ref), f"{np.count_nonzero(out != ref)} of {out.size} values differ"


def test_chunks_and_fit():
    from tvmq.int8 import amx

    assert [amx.chunk(k) for k in (16, 24, 96, 144, 160, 576, 960)] == [16, 24, 48, 48, 40, 64, 64]
    assert amx.fits(32, 192, 64) and amx.fits(49, 960, 960)
    assert not amx.fits(31, 192, 64)  # fewer rows than two tiles
    assert not amx.fits(64, 194, 64)  # K not whole 4-byte groups
    assert not amx.fits(64, 160, 32)  # too shallow: VNNI is faster
    assert not amx.fits(64, 192, 384)  # expands: bound by writing its outputs


def test_pointwise_layers_of_a_model_run_on_amx():
    """A model of a narrowing 1x1 convolution (90 pixels, 192 -> 32 channels), a 3x3 one and a
    small dense layer, lowered with the sapphirerapids scheme: the 1x1 convolution goes to the AMX
    kernel, the rest stays on VNNI,
    tuning sees no task for the AMX kernel, and (where AMX runs) the output equals TFLite's."""
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    import tvm
    from tvm import relax

    from tests._int8_helpers import compare, convert, import_tflite, llvm_asm, random_inputs, run_tflite, tensorized_build
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.tuner.tasks import extract

    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((9, 10, 192), batch_size=1)
    y = tf.keras.layers.Conv2D(32, 1, activation="relu6")(inp)
    y = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same")(y)
    y = tf.keras.layers.Dense(12)(tf.keras.layers.Flatten()(y))
    buf = convert(tf.keras.Model(inp, y), [(-1.5, 2.5)], io_dtype="int8", seed=3)
    assert PROFILE.int8_scheme == "amx"
    target = PROFILE.tvm_target(2)
    x = random_inputs(buf)
    for mode in ("tflite", "xnnpack"):
        outputs = {}
        for scheme in ("amx", "vnni"):
            lowering = lower_qdq_to_int8(import_tflite(buf), mode=mode, scheme=scheme)
            used = dict(lowering.intrinsics)
            if scheme == "amx":
                assert used.pop("tvmq_amx_i8i8") == 1, lowering.intrinsics
                names = [t.task_name for t in extract(lowering.mod, target)]
                assert names and not [n for n in names if "amx" in n], names
            assert used == {"tvmq_dot_vnni_i8i8": 2 if scheme == "amx" else 3}, lowering.intrinsics
            ex, _ = tensorized_build(lowering.mod, target)
            asm = llvm_asm(ex)
            assert bool(re.search(r"\btdpbssd\s+%tmm", asm)) == (scheme == "amx")
            assert re.search(r"\bvpdpbusd\b.*%zmm", asm)
            if RUNS_HERE:
                vm = relax.VirtualMachine(ex, tvm.cpu())
                outputs[scheme] = vm["main"](*[tvm.runtime.tensor(a) for a in x]).numpy()
        if not RUNS_HERE:
            continue
        # the same integers as the VNNI build in both modes, and TFLite's reference kernels' in "tflite"
        assert np.array_equal(outputs["amx"], outputs["vnni"]), mode
        if mode == "tflite":
            share, maxd = compare(outputs["amx"], run_tflite(buf, x, "reference"))
            assert maxd == 0, f"the AMX build differs from TFLite's reference kernels: {share}, {maxd}"
