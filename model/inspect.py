"""What is inside a TFLite model: tensors, operators, and how it is quantized.

The inspection reads the flatbuffer directly (no interpreter, no TVM), so it works on models
that TVM cannot import and can say why before any compilation starts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional

from tvmq.errors import CustomOperators, DynamicRangeModel, UnsupportedOperators

from .loader import TENSOR_TYPES, LoadedModel, builtin_code, parsing, vector
from .lstm import LSTM, integer_lstm_refusal

_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"}


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    scales: list[float] = field(default_factory=list)
    zero_points: list[int] = field(default_factory=list)
    quantized_dimension: int = 0

    @property
    def quantized(self) -> bool:
        return bool(self.scales)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    def quantization_text(self) -> str:
        if not self.quantized:
            return "-"
        if self.per_channel:
            return f"per-channel ({len(self.scales)} scales, axis {self.quantized_dimension})"
        return f"scale={self.scales[0]:.6g} zero_point={self.zero_points[0] if self.zero_points else 0}"


@dataclass
class ModelInfo:
    name: str
    sha256: str
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operator_counts: dict[str, int]
    quantization: str  # e.g. "uint8 per-tensor", "int8 per-channel", "float", "dynamic-range"
    custom_operators: list[str]
    unsupported_operators: list[str]
    dynamic_range_operators: list[str]
    subgraphs: int

    @property
    def is_quantized(self) -> bool:
        return self.quantization not in ("float", "float16 weights")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["is_quantized"] = self.is_quantized
        return d


def tensor_info(subgraph, index: int) -> TensorInfo:
    t = subgraph.Tensors(index)
    name = t.Name().decode("utf-8", "replace") if t.Name() else f"tensor_{index}"
    shape = [int(x) for x in vector(t.ShapeAsNumpy())]
    info = TensorInfo(name=name, shape=shape, dtype=TENSOR_TYPES.get(t.Type(), f"type{t.Type()}"))
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        info.scales = [float(s) for s in vector(q.ScaleAsNumpy())]
        info.zero_points = [int(z) for z in vector(q.ZeroPointAsNumpy())] or [0]
        info.quantized_dimension = int(q.QuantizedDimension())
    return info


def _supported_ops(model) -> tuple[set[str], frozenset]:
    from .frontend import supported_operators

    return supported_operators(model)


def operator_names(model) -> list[str]:
    """The name of each operator code of a parsed flatbuffer (``tflite.Model``), by its index
    (what ``Operator.OpcodeIndex()`` refers to): ``CONV_2D``, ..., ``CUSTOM:<name>`` for a
    custom operator, ``BUILTIN_<n>`` for a code this ``tflite`` package does not know."""
    import tflite

    op_names = _enum_names(tflite.BuiltinOperator)
    names = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = builtin_code(oc)
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            cc = oc.CustomCode()
            name = "CUSTOM:" + (cc.decode("utf-8", "replace") if cc else "?")
        names.append(name)
    return names


@dataclass
class _Operator:
    """One operator as the flatbuffer gives it: its name and its tensors (none: -1, left out)."""

    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    refusal: Optional[str] = None  # why tvmq does not compute this LSTM itself (model.lstm)


def _read(loaded: LoadedModel) -> tuple[list[_Operator], list[TensorInfo], list[TensorInfo]]:
    """The operators of every subgraph, and the inputs and outputs of the first, from the model's
    bytes: the one place inspection parses them (corrupt bytes end in a TruncatedModel here)."""
    with parsing(loaded.where, len(loaded.content)):
        model = loaded.tflite_model
        codes = operator_names(model)
        ops = []
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for o in range(sg.OperatorsLength()):
                op = sg.Operators(o)
                name = codes[op.OpcodeIndex()]
                ops.append(_Operator(name,
                                     [tensor_info(sg, int(i)) for i in vector(op.InputsAsNumpy()) if i >= 0],
                                     [tensor_info(sg, int(i)) for i in vector(op.OutputsAsNumpy()) if i >= 0],
                                     integer_lstm_refusal(sg, op) if name == LSTM else None))
        main = model.Subgraphs(0)
        return (ops, [tensor_info(main, int(i)) for i in vector(main.InputsAsNumpy())],
                [tensor_info(main, int(i)) for i in vector(main.OutputsAsNumpy())])


def inspect_model(loaded: LoadedModel) -> ModelInfo:
    ops, inputs, outputs = _read(loaded)
    custom = []
    supported, supported_quant = _supported_ops(loaded.tflite_model)
    counts: Counter[str] = Counter()
    unsupported: set[str] = set()
    dyn_range: set[str] = set()
    quant_dtypes: set[str] = set()
    per_channel = False
    float16_weights = False
    for op in ops:
        name, ins, outs = op.name, op.inputs, op.outputs
        counts[name] += 1
        if name.startswith("CUSTOM:"):
            custom.append(name[len("CUSTOM:") :])
            continue
        if name not in supported:
            unsupported.add(name)
        weights = ins[1:] if name in _WEIGHTED_OPS else []
        for t in ins + outs:
            if t.quantized and t.dtype in ("int8", "uint8", "int16"):
                per_channel = per_channel or t.per_channel
                if not any(t is w for w in weights):
                    quant_dtypes.add(t.dtype)  # activations decide int8 vs uint8
        if name == "DEQUANTIZE" and ins and ins[0].dtype == "float16":
            float16_weights = True
        act_q = (ins[:1] and ins[0].quantized) or any(t.quantized for t in outs)
        weights_q = any(t.quantized for t in ins[1:])
        if not act_q and weights_q and ins and ins[0].dtype.startswith("float"):
            dyn_range.add(name)
        if act_q and op.refusal is not None:
            unsupported.add(name + " (quantized)")  # an LSTM form only TFLite computes
        if (act_q or weights_q) and name in supported and name not in supported_quant:
            if name not in ("QUANTIZE", "DEQUANTIZE"):
                unsupported.add(name + " (quantized)")

    if dyn_range:
        quantization = "dynamic-range"
    elif quant_dtypes:
        act = "int8" if "int8" in quant_dtypes else sorted(quant_dtypes)[0]
        if "int16" in quant_dtypes:
            act = "int16x8"
        quantization = f"{act} {'per-channel' if per_channel else 'per-tensor'}"
    elif float16_weights:
        quantization = "float16 weights"
    else:
        quantization = "float"

    return ModelInfo(
        name=loaded.name,
        sha256=loaded.sha256,
        size_bytes=len(loaded.content),
        inputs=inputs,
        outputs=outputs,
        operator_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        quantization=quantization,
        custom_operators=sorted(set(custom)),
        unsupported_operators=sorted(unsupported),
        dynamic_range_operators=sorted(dyn_range),
        subgraphs=int(loaded.tflite_model.SubgraphsLength()),
    )


def check_convertible(info: ModelInfo) -> None:
    """Raise the user error that explains why TVM cannot take this model, if any."""
    if info.custom_operators:
        raise CustomOperators(
            f"{info.name} uses custom operators that TVM cannot import: "
            f"{', '.join(info.custom_operators)}",
            info.custom_operators,
        )
    if info.dynamic_range_operators:
        raise DynamicRangeModel(
            f"{info.name} is dynamic-range quantized (int8 weights, float activations in "
            f"{', '.join(info.dynamic_range_operators)}); tvmq takes fully quantized models: "
            f"convert with a representative dataset and TFLITE_BUILTINS_INT8"
        )
    if info.unsupported_operators:
        raise UnsupportedOperators(
            f"{info.name} uses operators the TVM TFLite frontend does not support: "
            f"{', '.join(info.unsupported_operators)}",
            info.unsupported_operators,
        )
