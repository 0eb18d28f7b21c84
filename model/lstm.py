"""A TFLite UNIDIRECTIONAL_SEQUENCE_LSTM read off the flatbuffer: whether it is the integer form tvmq
computes (:mod:`tvmq.int8.lstm`), and its layer when it is.

The form taken is TFLite's 8x8_16 integer LSTM without peepholes, projection, layer normalization
or a coupled input-forget gate, with a TANH activation: int8 input, output state and weights (one
scale each), int32 biases, an int16 cell state whose scale is a power of two, and the hidden-state
intermediate (the fifth) quantized. Any other LSTM runs in TFLite's part of a partitioned model.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .loader import vector

__all__ = ["LSTM", "integer_lstm_refusal", "read_integer_lstm"]

LSTM = "UNIDIRECTIONAL_SEQUENCE_LSTM"
_INPUT, _STATE, _CELL = 0, 18, 19
_IN_WEIGHTS, _REC_WEIGHTS, _BIASES = (1, 2, 3, 4), (5, 6, 7, 8), (12, 13, 14, 15)
_ABSENT = (9, 10, 11, 16, 17, 20, 21, 22, 23)  # peepholes, projection, layer normalization
_INT8, _INT16, _INT32 = 9, 7, 2  # tflite.TensorType
_TANH = 4  # tflite.ActivationFunctionType


def _options(op):
    from tflite.UnidirectionalSequenceLSTMOptions import UnidirectionalSequenceLSTMOptions

    options = UnidirectionalSequenceLSTMOptions()
    raw = op.BuiltinOptions()
    if raw is None:
        return None
    options.Init(raw.Bytes, raw.Pos)
    return options


def _quant(subgraph, index: int):
    """``(scale, zero point)`` of a per-tensor quantized tensor, else None."""
    q = subgraph.Tensors(index).Quantization()
    if q is None or q.ScaleLength() != 1:
        return None
    return float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0


def integer_lstm_refusal(subgraph, op) -> Optional[str]:
    """Why tvmq does not compute this LSTM itself (None: it does)."""
    ins = [int(i) for i in vector(op.InputsAsNumpy())]
    ins += [-1] * (24 - len(ins))
    inter = [int(i) for i in vector(op.IntermediatesAsNumpy())]

    def dtype(pos):
        return subgraph.Tensors(ins[pos]).Type() if ins[pos] >= 0 else None

    if any(ins[p] < 0 for p in (*_IN_WEIGHTS, *_REC_WEIGHTS, *_BIASES, _INPUT, _STATE, _CELL)):
        return "a coupled input-forget gate (CIFG) or missing tensors"
    if any(ins[p] >= 0 for p in _ABSENT):
        return "peepholes, a projection or layer normalization"
    if dtype(_INPUT) != _INT8 or dtype(_STATE) != _INT8 or dtype(_CELL) != _INT16:
        return "not the 8-bit integer form (int8 input and output state, int16 cell state)"
    if any(dtype(p) != _INT8 or _quant(subgraph, ins[p]) is None for p in (*_IN_WEIGHTS, *_REC_WEIGHTS)):
        return "weights not int8 with one scale"
    if any(dtype(p) != _INT32 for p in _BIASES):
        return "biases not int32"
    if any(_quant(subgraph, ins[p]) is None for p in (_INPUT, _STATE, _CELL)):
        return "activations without one scale"
    if not (subgraph.Tensors(ins[_STATE]).IsVariable() and subgraph.Tensors(ins[_CELL]).IsVariable()):
        return "states given as inputs, not kept by the interpreter"
    cell_scale = _quant(subgraph, ins[_CELL])[0]
    if not np.log2(cell_scale).is_integer():
        return "a cell state scale that is not a power of two"
    if not 0 <= 15 + int(np.log2(cell_scale)) <= 6:
        return "a cell state scale outside 2**-15 .. 2**-9 (TFLite's tanh takes 0 to 6 integer bits)"
    if len(inter) < 5 or inter[4] < 0 or _quant(subgraph, inter[4]) is None:
        return "no quantized hidden-state intermediate"
    options = _options(op)
    if options is None or options.FusedActivationFunction() != _TANH:
        return "an activation other than TANH"
    return None


def _constant(model, subgraph, index: int, dtype) -> np.ndarray:
    t = subgraph.Tensors(index)
    data = vector(model.Buffers(t.Buffer()).DataAsNumpy())
    shape = [int(d) for d in vector(t.ShapeAsNumpy())]
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(shape)


def read_integer_lstm(model, subgraph, op):
    """The :class:`tvmq.int8.lstm.LstmLayer` of an LSTM :func:`integer_lstm_refusal` takes."""
    from tvmq.int8.lstm import LstmLayer

    why = integer_lstm_refusal(subgraph, op)
    if why is not None:
        raise ValueError(f"{LSTM}: {why}")
    ins = [int(i) for i in vector(op.InputsAsNumpy())]
    hidden = _quant(subgraph, int(vector(op.IntermediatesAsNumpy())[4]))
    options = _options(op)
    s_x, zp_x = _quant(subgraph, ins[_INPUT])
    s_h, zp_h = _quant(subgraph, ins[_STATE])
    return LstmLayer.from_quantized(
        np.stack([_constant(model, subgraph, ins[p], np.int8) for p in _IN_WEIGHTS]),
        np.stack([_constant(model, subgraph, ins[p], np.int8) for p in _REC_WEIGHTS]),
        np.stack([_constant(model, subgraph, ins[p], np.int32) for p in _BIASES]),
        s_x, zp_x, [_quant(subgraph, ins[p])[0] for p in _IN_WEIGHTS],
        [_quant(subgraph, ins[p])[0] for p in _REC_WEIGHTS], s_h, zp_h, _quant(subgraph, ins[_CELL])[0], hidden,
        float(options.CellClip()), bool(options.TimeMajor()))
