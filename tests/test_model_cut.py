"""Cutting a TFLite flatbuffer (:mod:`tvmq.model.cut`): new outputs (and inputs), the operators
that no longer lead anywhere dropped, everything else written back as it was."""

from __future__ import annotations

import numpy as np
import pytest

from tests._int8_helpers import op_names, random_inputs, run_tflite_outputs

pytest.importorskip("ai_edge_litert")


def _all_tensors(buf, inputs):
    """Every tensor of the whole model, as TFLite's reference kernels left them."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return it


def test_cut_before_the_softmax(model_factory):
    from tvmq.model.cut import cut, read_graph

    buf = model_factory.path("uint8").read_bytes()
    graph = read_graph(buf)
    ops = graph.operators
    softmax = next(op for op in ops if op.name == "SOFTMAX")
    logits = softmax.inputs[0]
    short = cut(buf, [graph.tensors[logits].name])  # by name
    assert op_names(short) == op_names(buf)[:op_names(buf).index("SOFTMAX")]  # the softmax and what follows go
    (info,) = [t for t in read_graph(short).tensors if t.index == logits]
    assert info.dtype == "int8" and len(info.scale) == 1  # its quantization came along
    inputs = random_inputs(buf, seed=3)
    whole = _all_tensors(buf, inputs)
    (out,) = run_tflite_outputs(short, inputs, "reference")
    np.testing.assert_array_equal(out, whole.get_tensor(logits))


def test_every_operator_output_as_an_output(model_factory):
    from tvmq.model.cut import cut, read_graph

    buf = model_factory.path("int8").read_bytes()
    order = read_graph(buf).operator_outputs()
    every = cut(buf, order)
    assert op_names(every) == op_names(buf)
    inputs = random_inputs(buf, seed=4)
    whole = _all_tensors(buf, inputs)
    for index, value in zip(order, run_tflite_outputs(every, inputs, "reference")):
        np.testing.assert_array_equal(value, whole.get_tensor(index))


def test_cut_a_region_with_its_own_input(model_factory):
    """From the depthwise conv's input to the add: only the ops in between stay."""
    from tvmq.model.cut import cut, read_graph

    buf = model_factory.path("int8").read_bytes()
    ops = read_graph(buf).operators
    dw = next(op for op in ops if op.name == "DEPTHWISE_CONV_2D")
    add = next(op for op in ops if op.name == "ADD")
    region = cut(buf, [add.outputs[0]], inputs=[dw.inputs[0]])
    assert op_names(region) == ["DEPTHWISE_CONV_2D", "ADD"]
    x = random_inputs(region, seed=5)
    whole_inputs = random_inputs(buf, seed=6)
    whole = _all_tensors(buf, whole_inputs)
    (y,) = run_tflite_outputs(region, [whole.get_tensor(dw.inputs[0])], "reference")
    np.testing.assert_array_equal(y, whole.get_tensor(add.outputs[0]))
    assert run_tflite_outputs(region, x, "reference")[0].shape == y.shape


def test_bad_cuts_are_one_line_errors(model_factory):
    from tvmq.errors import UsageError
    from tvmq.model.cut import cut, read_graph

    buf = model_factory.path("int8").read_bytes()
    ops = read_graph(buf).operators
    with pytest.raises(UsageError, match="no tensor named 'nope'"):
        cut(buf, ["nope"])
    with pytest.raises(UsageError, match="tensor 100000 is not in the model"):
        cut(buf, [100000])
    add = next(op for op in ops if op.name == "ADD")
    conv_out = next(op for op in ops if op.name == "CONV_2D").outputs[0]
    # the add reads the conv's output twice (residual): cutting only one path's input is not enough
    with pytest.raises(UsageError, match="is needed but nothing computes it"):
        cut(buf, [add.outputs[0]], inputs=[next(op for op in ops if op.name == "DEPTHWISE_CONV_2D")
                                           .outputs[0]])
    assert conv_out in add.inputs
