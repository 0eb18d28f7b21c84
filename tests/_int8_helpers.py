"""Helpers for the int8 lowering tests: one-op TFLite models, TFLite and TVM runners."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

# Any AVX2 + FMA host runs this code, Intel or AMD. (znver3 code was killed by SIGILL on an Intel
# Emerald Rapids host, in test_every_dot_scheme_computes_tflites_integers, before any tvmq change.)
TARGET = {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}


def convert(keras_model, input_ranges, io_dtype="int8", seed=0, n_rep=16):
    """Full-integer TFLite conversion of a keras model; ``input_ranges`` one (lo, hi) per input."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in i.shape[1:]) for i in keras_model.inputs]

    def rep():
        for _ in range(n_rep):
            yield [rng.uniform(lo, hi, size=(1,) + s).astype(np.float32) for s, (lo, hi) in zip(shapes, input_ranges)]

    return _full_integer(tf.lite.TFLiteConverter.from_keras_model(keras_model), rep, io_dtype)


def _full_integer(conv, representative, io_dtype: str) -> bytes:
    """``conv`` (a TFLiteConverter) run as a full-integer conversion calibrated on ``representative``."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = getattr(tf, io_dtype)
    conv.inference_output_type = getattr(tf, io_dtype)
    return conv.convert()


def convert_function(fn, shapes, ranges, io_dtype="int8", dynamic_batch=False, seed=0, n_rep=16):
    """Full-integer TFLite conversion of ``fn`` (float32 inputs of ``shapes`` plus a batch of 1; of an
    unknown batch with ``dynamic_batch``), calibrated on uniform values in ``ranges``. A None in
    ``shapes``: a dimension the converter does not know (1 in the model and in calibration)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    batch = None if dynamic_batch else 1
    func = tf.function(fn, input_signature=[tf.TensorSpec((batch, *s), tf.float32) for s in shapes])

    def representative():
        for _ in range(n_rep):
            yield [rng.uniform(lo, hi, size=(1, *(d or 1 for d in s))).astype(np.float32)
                   for s, (lo, hi) in zip(shapes, ranges)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([func.get_concrete_function()], func)
    return _full_integer(conv, representative, io_dtype)


def random_inputs(buf, seed=1):
    """Random integer inputs covering each input's full dtype range."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=buf)
    rng = np.random.default_rng(seed)
    out = []
    for d in it.get_input_details():
        info = np.iinfo(d["dtype"])
        out.append(rng.integers(info.min, info.max + 1, size=d["shape"], dtype=np.int64).astype(d["dtype"]))
    return out


def run_tflite(buf, inputs, kernels="optimized"):
    """The first output of :func:`run_tflite_outputs`."""
    return run_tflite_outputs(buf, inputs, kernels)[0]


def run_tflite_outputs(buf, inputs, kernels="optimized"):
    """Every output, in the subgraph's order, of the TFLite interpreter with ``kernels``:
    ``"reference"`` (BUILTIN_REF, the reference kernels), ``"optimized"`` (builtin optimized
    kernels, no delegate) or ``"xnnpack"`` (default XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"reference": OpResolverType.BUILTIN_REF, "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "xnnpack": OpResolverType.AUTO}[kernels]
    it = Interpreter(model_content=buf, experimental_op_resolver_type=kind, num_threads=2)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def import_tflite(buf):
    import tflite
    from tvm.relax.frontend.tflite import from_tflite

    return from_tflite(tflite.Model.GetRootAsModel(buf, 0))


def op_names(buf):
    """Builtin operator names of a TFLite model."""
    import tflite

    m = tflite.Model.GetRootAsModel(buf, 0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    g = m.Subgraphs(0)
    out = []
    for i in range(g.OperatorsLength()):
        oc = m.OperatorCodes(g.Operators(i).OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        out.append(names.get(code, str(code)))
    return out


def run_tvm(mod, inputs):
    import tvm
    from tvm import relax

    target = tvm.target.Target(TARGET)
    with target:
        m2 = relax.get_pipeline("zero")(mod)
    ex = tvm.compile(m2, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


def compare(ours, ref):
    """(exact-match share, max abs difference)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    d = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    return float((d == 0).mean()), int(d.max())


def uint8_qdq_conv(rng, weight_range, zp_w=None, c=8, oc=12, k=3, stride=1, pad=1, hw=(7, 9)):
    """A uint8 QDQ conv as TVM's TFLite importer writes it, and its numpy reference; the weights
    are ``zp_w + weight_range`` (clipped to uint8)."""
    from tvm import relax

    from tvmq.int8 import requant as rq

    s_x, zp_x = np.float32(0.02), int(rng.integers(0, 256))
    s_w = np.float32(0.005)
    zp_w = int(rng.integers(100, 156)) if zp_w is None else zp_w
    s_o, zp_o = np.float32(0.05), int(rng.integers(0, 60))
    lo, hi = weight_range
    w = np.clip(zp_w + rng.integers(lo, hi + 1, (k, k, c, oc)), 0, 255).astype(np.uint8)
    bias = rng.integers(-3000, 3000, oc).astype(np.int32)
    x = rng.integers(0, 256, (1, *hw, c)).astype(np.uint8)

    def f32(v):
        return relax.const(np.float32(v), "float32")

    def i32(v):
        return relax.const(np.int32(v), "int32")

    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(x.shape, "uint8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            xd = bb.emit(relax.op.dequantize(xv, f32(s_x), i32(zp_x), axis=0))
            wd = bb.emit(relax.op.dequantize(relax.const(w), f32(s_w), i32(zp_w), axis=3))
            y = bb.emit(relax.op.nn.conv2d(xd, wd, strides=[stride] * 2, padding=[pad] * 4, data_layout="NHWC",
                                           kernel_layout="HWIO"))
            bd = bb.emit(relax.op.dequantize(relax.const(bias), f32(s_x * s_w), i32(0), axis=0))
            q = bb.emit(relax.op.quantize(bb.emit(relax.op.add(y, bd)), f32(s_o), i32(zp_o), out_dtype="uint8",
                                          axis=0))
            out = bb.emit_output(relax.op.clip(q, float(zp_o), 255.0))
        bb.emit_func_output(out)
    mod = bb.get()

    # TFLite's integer conv: sum((x - zp_x) * (w - zp_w)) + bias, then the Q31 requantization
    xp = np.pad(x.astype(np.int64), ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=zp_x) - zp_x
    oh = (hw[0] + 2 * pad - k) // stride + 1
    ow = (hw[1] + 2 * pad - k) // stride + 1
    acc = np.zeros((1, oh, ow, oc), np.int64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
            acc += patch @ (w[i, j].astype(np.int64) - zp_w)
    q, shift = rq.quantize_multiplier(np.float64(s_x) * np.float64(s_w) / np.float64(s_o))
    ref = rq.requantize_np((acc + bias).astype(np.int32), q, shift, zp_o, zp_o, 255, "uint8")
    return mod, x, ref


def tensorized_build(mod, target):
    """Compile a Relax module (e.g. from ``lower_qdq_to_int8(..., scheme=...).mod``) with every
    function scheduled by the first valid point of tvmq's design space (the code of a tuned
    build, tensorized, without tuning). Returns ``(executable, functions holding a dot-product
    intrinsic call)``."""
    import tvm

    from tvmq.tuner.compile import lower_to_tir
    from tvmq.tuner.rules import schedule_unscheduled

    target = tvm.target.Target(target) if isinstance(target, dict) else target
    with target:
        lowered, _ = schedule_unscheduled(lower_to_tir(mod, target), target)
        n = sum("call_llvm_pure_intrin" in f.script() for _, f in lowered.functions_items()
                if isinstance(f, tvm.tirx.PrimFunc))
        return tvm.compile(lowered, target=target), n


def llvm_asm(executable) -> str:
    """The assembly of every LLVM module of a compiled Relax executable."""
    mods = [executable.mod] if hasattr(executable, "mod") else [executable]
    out, seen = [], set()
    while mods:
        m = mods.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        try:
            out.append(m.inspect_source("asm"))
        except Exception:  # noqa: BLE001 - modules without assembly (the VM bytecode)
            pass
        mods.extend(m.imports)
    return "\n".join(out)
