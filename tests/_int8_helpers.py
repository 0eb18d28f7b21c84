"""Helpers for the int8 lowering tests: one-op TFLite models, TFLite and TVM runners."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

TARGET = {"kind": "llvm", "mcpu": "znver3", "num-cores": 2}


def convert(keras_model, input_ranges, io_dtype="int8", seed=0, n_rep=16):
    """Full-integer TFLite conversion of a keras model; ``input_ranges`` one (lo, hi) per input."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in i.shape[1:]) for i in keras_model.inputs]

    def rep():
        for _ in range(n_rep):
            yield [rng.uniform(lo, hi, size=(1,) + s).astype(np.float32) for s, (lo, hi) in zip(shapes, input_ranges)]

    conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = getattr(tf, io_dtype)
    conv.inference_output_type = getattr(tf, io_dtype)
    return conv.convert()


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
    """Run the TFLite interpreter with ``kernels``: ``"reference"`` (BUILTIN_REF, the reference
    kernels), ``"optimized"`` (builtin optimized kernels, no delegate) or ``"xnnpack"`` (default
    XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = {"reference": OpResolverType.BUILTIN_REF, "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "xnnpack": OpResolverType.AUTO}[kernels]
    it = Interpreter(model_content=buf, experimental_op_resolver_type=kind, num_threads=2)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


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
