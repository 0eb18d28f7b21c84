"""The TFLite → Relax import, with the quantized operators that TVM's Relax frontend leaves out.

TVM 0.27's frontend refuses any quantized operator outside its ``_SUPPORTED_QUANTIZED_OPS``, to
keep float Relax ops away from quantized integers. Many operators TFLite runs on quantized tensors
never do arithmetic on the values: they move, pick or compare them. TFLite's own kernels copy the
integers (SPLIT, TRANSPOSE, GATHER, ...) or compare them (ARG_MAX: the scale is positive, so the
order of the integers is the order of the real values), so the same Relax op applied to the
integers is exactly what TFLite computes. :func:`converter_class` is TVM's converter
with those operators allowed, where the frontend's converter for them already keeps the
quantization right (padding with the zero point, same parameters on both sides), and with the
fixes they need (ARG_MAX's output type, EXPAND_DIMS, SQUEEZE, REVERSE_V2 and
RESIZE_NEAREST_NEIGHBOR as TFLite computes them), and PRELU and BATCH_MATMUL, which TVM refuses
quantized, in the QDQ form (dequantize, the float op, quantize; the integer lowering turns an int8
BATCH_MATMUL into TFLite's integer kernel), and TFLite's integer UNIDIRECTIONAL_SEQUENCE_LSTM as tvmq's
integer kernel (:mod:`tvmq.int8.lstm`, the form :mod:`.lstm` takes). It plugs into
``from_tflite(op_converter=...)``.
"""

from __future__ import annotations

import functools

from .lstm import LSTM, read_integer_lstm

__all__ = ["EXACT_IN_INTEGERS", "QDQ_CONVERTED", "converter_class", "from_tflite", "supported_operators"]

# Operators whose TFLite kernel, on quantized tensors, moves, selects or compares the integers
# without arithmetic, and whose TVM converter keeps the quantization parameters (or asserts equal
# ones): on the integer tensor, the Relax op computes what TFLite does, bit for bit.
EXACT_IN_INTEGERS = frozenset({
    "ARG_MAX", "ARG_MIN", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
    "EXPAND_DIMS", "SQUEEZE", "RESHAPE", "TRANSPOSE", "REVERSE_V2",
    "GATHER", "SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "TILE",
    "PAD", "PADV2", "RESIZE_NEAREST_NEIGHBOR", "SHAPE",
})
# Operators TVM's frontend refuses quantized that tvmq imports in the QDQ form.
QDQ_CONVERTED = frozenset({"PRELU", "BATCH_MATMUL"})
# Not among them, though TFLite moves integers there too: TVM 0.27's converters of GATHER_ND
# (asserts float data), BATCH_TO_SPACE_ND and SPACE_TO_BATCH_ND (fail when run, float models too;
# the latter would pad with 0, not the zero point). A model holding them is partitioned: they run
# in TFLite (tests/test_quantized_ops.py, tests/test_partition.py).


@functools.cache
def converter_class():
    """``QuantizedOperatorConverter``, the class (defined on first use: importing TVM is slow)."""
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    class QuantizedOperatorConverter(OperatorConverter):
        """TVM's TFLite converter, taking the quantized operators of :data:`EXACT_IN_INTEGERS`."""

        _SUPPORTED_QUANTIZED_OPS = (OperatorConverter._SUPPORTED_QUANTIZED_OPS | EXACT_IN_INTEGERS | QDQ_CONVERTED
                                    | {LSTM})

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            from tvm.relax import op as _op

            self.convert_map["ARG_MAX"] = functools.partial(self._convert_arg_min_max_typed, relax_op=_op.argmax)
            self.convert_map["ARG_MIN"] = functools.partial(self._convert_arg_min_max_typed, relax_op=_op.argmin)
            self.convert_map["EXPAND_DIMS"] = self._convert_to_output_shape
            self.convert_map["SQUEEZE"] = self._convert_to_output_shape
            self.convert_map["REVERSE_V2"] = self._convert_reverse_axes
            self.convert_map["RESIZE_NEAREST_NEIGHBOR"] = self._convert_resize_nearest
            self.convert_map["RESHAPE"] = self._convert_reshape
            self.convert_map["PRELU"] = self._convert_prelu
            self.convert_map["BATCH_MATMUL"] = self._convert_batch_matmul
            self.convert_map[LSTM] = self._convert_lstm

        def _convert_lstm(self, op):
            """UNIDIRECTIONAL_SEQUENCE_LSTM: a quantized one as TFLite's integer LSTM (the form
            :func:`tvmq.model.lstm.integer_lstm_refusal` takes; inspection partitions the others),
            one step kernel per time step; a float one as TVM's converter writes it."""
            from tvmq.int8.lstm import emit_lstm

            ins = self.get_input_tensors(op)
            if not ins[0].qnn_params:
                return self.convert_unidirectional_sequence_lstm(op)
            layer = read_integer_lstm(self.model, self.subgraph, op)
            shape = [int(d) for d in ins[0].tensor.ShapeAsNumpy()]
            steps, batch = (shape[0], shape[1]) if layer.time_major else (shape[1], shape[0])
            return emit_lstm(self.bb, self.get_tensor_expr(ins[0]), layer, steps, batch)

        def _float_input(self, tensor):
            """A tensor's expression, dequantized when it is quantized."""
            expr = self.get_tensor_expr(tensor)
            return self.dequantize(expr, tensor) if tensor.qnn_params else expr

        def _float_output(self, op, out):
            """``out`` quantized to the operator's output, when that is quantized (the QDQ form)."""
            tensor = self.get_output_tensors(op)[0]
            return self.quantize(out, tensor) if tensor.qnn_params else out

        def _convert_prelu(self, op):
            """PRELU in the QDQ form (TVM's converter refuses it quantized): ``x`` where ``x >= 0``,
            else ``alpha * x``, alpha broadcast over the input."""
            from tvm import relax

            ins = self.get_input_tensors(op)
            x, alpha = self._float_input(ins[0]), self._float_input(ins[1])
            out = relax.op.where(relax.op.greater_equal(x, relax.const(0.0, "float32")), x, relax.op.multiply(x, alpha))
            return self._float_output(op, out)

        def _convert_batch_matmul(self, op):
            """BATCH_MATMUL in the QDQ form (TVM's converter refuses it quantized), with adj_x/adj_y."""
            from tflite.BatchMatMulOptions import BatchMatMulOptions
            from tvm import relax

            ins = self.get_input_tensors(op)
            options = BatchMatMulOptions()
            raw = op.BuiltinOptions()
            options.Init(raw.Bytes, raw.Pos)
            a, b = self._float_input(ins[0]), self._float_input(ins[1])

            def adjoint(expr, rank):
                return relax.op.permute_dims(expr, list(range(rank - 2)) + [rank - 1, rank - 2])

            if options.AdjX():
                a = adjoint(a, len(ins[0].tensor.ShapeAsNumpy()))
            if options.AdjY():
                b = adjoint(b, len(ins[1].tensor.ShapeAsNumpy()))
            return self._float_output(op, relax.op.matmul(a, b))

        def _convert_to_output_shape(self, op):
            """EXPAND_DIMS and SQUEEZE as a reshape to the shape TFLite gives: TVM's converters fail
            on both (expand_dims with a third argument; SQUEEZE without axes removes nothing, where
            TFLite removes every dimension of size 1)."""
            import numpy as np
            from tflite.SqueezeOptions import SqueezeOptions
            from tvm import relax

            ins = self.get_input_tensors(op)
            shape = [int(d) for d in ins[0].tensor.ShapeAsNumpy()]
            if self.get_op_code_str(op) == "EXPAND_DIMS":
                axis = int(np.asarray(self.get_tensor_value(ins[1])).reshape(-1)[0])
                shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, 1)
            else:
                options = SqueezeOptions()
                raw = op.BuiltinOptions()
                options.Init(raw.Bytes, raw.Pos)
                axes = {int(a) % len(shape) for a in options.SqueezeDimsAsNumpy()} if options.SqueezeDimsLength() \
                    else {i for i, d in enumerate(shape) if d == 1}
                shape = [d for i, d in enumerate(shape) if i not in axes]
            return relax.op.reshape(self.get_expr(ins[0].tensor_idx), shape)

        def _convert_reshape(self, op):
            """RESHAPE; one whose shape is computed in the graph (SHAPE → STRIDED_SLICE → PACK, what a
            model converted with a dynamic batch holds) to its output's static shape, which TVM's
            converter cannot take (a computed shape is not a ``relax.ShapeExpr``)."""
            from tvm import relax

            ins = self.get_input_tensors(op)
            if len(ins) == 2 and self.has_expr(ins[1].tensor_idx):
                shape = [max(1, int(d)) for d in self.get_output_tensors(op)[0].tensor.ShapeAsNumpy()]
                return relax.op.reshape(self.get_expr(ins[0].tensor_idx), shape)
            return self.convert_reshape(op)

        def _convert_reverse_axes(self, op):
            """REVERSE_V2 over every axis it names (TVM's converter takes one)."""
            import numpy as np
            from tvm import relax

            ins = self.get_input_tensors(op)
            out = self.get_expr(ins[0].tensor_idx)
            for axis in np.asarray(self.get_tensor_value(ins[1])).reshape(-1):
                out = relax.op.flip(out, int(axis))
            return out

        def _convert_resize_nearest(self, op):
            """RESIZE_NEAREST_NEIGHBOR as TFLite's kernel picks rows: ``round((x + offset) * scale)``
            with align_corners, a .5 going up (TVM's converter rounds it to even), else
            ``floor((x + offset) * scale)``, ``offset`` 0.5 with half-pixel centers (TF forbids both)."""
            from tflite.ResizeNearestNeighborOptions import ResizeNearestNeighborOptions
            from tvm import relax

            ins = self.get_input_tensors(op)
            options = ResizeNearestNeighborOptions()
            raw = op.BuiltinOptions()
            options.Init(raw.Bytes, raw.Pos)
            align, half = bool(options.AlignCorners()), bool(options.HalfPixelCenters())
            size = tuple(int(v) for v in self.get_tensor_value(ins[1]))
            transform = "tf_half_pixel_for_nn" if half else ("align_corners" if align else "asymmetric")
            rounding = "round_prefer_ceil" if align else "floor"
            return relax.op.image.resize2d(self.get_expr(ins[0].tensor_idx), size, None, "NHWC", "nearest_neighbor",
                                           transform, rounding)

        def _convert_arg_min_max_typed(self, op, relax_op):
            """ARG_MAX/ARG_MIN with the output type the model asks for (int32 or int64): the
            frontend's converter always gives Relax's int64."""
            from tvm import relax

            out = self._convert_arg_min_max(op, relax_op)
            dtype = self.get_tensor_type_str(self.get_output_tensors(op)[0].tensor.Type())
            return out if dtype == "int64" else relax.op.astype(out, dtype)

    return QuantizedOperatorConverter


def from_tflite(tflite_model):
    """``tvm.relax.frontend.tflite.from_tflite`` with :func:`converter_class`'s converter; its
    transposed convolutions then in the layout TVM legalizes (NCHW/IOHW: the import writes NHWC,
    which no TVM 0.27 legalization takes, float models included)."""
    from tvm import relax
    from tvm.relax.frontend.tflite import from_tflite as tvm_from_tflite

    mod = tvm_from_tflite(tflite_model, op_converter=converter_class())
    if not _calls(mod, "relax.nn.conv2d_transpose"):
        return mod  # ConvertLayout fails on some graphs it has nothing to do in (the detector's SPLITs)
    return relax.transform.ConvertLayout({"relax.nn.conv2d_transpose": ["NCHW", "IOHW"]})(mod)


def _calls(mod, op_name: str) -> bool:
    from tvm import relax

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            for value in relax.analysis.get_var2val(func).values():
                if isinstance(value, relax.Call) and getattr(value.op, "name", None) == op_name:
                    return True
    return False


def supported_operators(tflite_model) -> tuple[set[str], frozenset]:
    """The builtin operators the import takes, and those of them it takes quantized."""
    cls = converter_class()
    conv = cls(tflite_model, tflite_model.Subgraphs(0), None, None)
    return set(conv.convert_map), cls._SUPPORTED_QUANTIZED_OPS
