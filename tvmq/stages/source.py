"""The source stages of a run: the model, read and inspected before anything is compiled
(:func:`load`), and what it is fed (:func:`inputs`)."""

from __future__ import annotations

from dataclasses import dataclass

from tvmq.options import SourceOptions

from .steps import Steps


def load(source: SourceOptions, steps: Steps):
    """``(LoadedModel, ModelInfo)``: the model read, validated and shown (whether TVM takes it whole
    is :func:`tvmq.stages.partition.split`'s question)."""
    from rich.markup import escape

    from tvmq.model import inspect_model, load_model
    from tvmq.redact import redact_text
    from tvmq.report.render import model_tables

    with steps.step("load", f"load {escape(redact_text(source.model))}"):
        model = load_model(source.model)
        info = inspect_model(model)
    for table in model_tables(info):
        steps.print(table)
    return model, info


@dataclass(frozen=True)
class Inputs:
    """What the build and the reference are fed, and how their outputs are named."""

    samples: list  # tvmq.model.InputSample
    labels: list[str] | None
    output_names: list[str]


def inputs(info, source: SourceOptions) -> Inputs:
    """The images (or a deterministic synthetic input) and the ``--input`` arrays as the model's
    input arrays, and the labels."""
    from tvmq.model import load_labels, make_inputs
    from tvmq.model.inputs import read_input_arrays

    labels = load_labels(source.labels)
    arrays = read_input_arrays(info, list(source.inputs))
    return Inputs(make_inputs(info, list(source.images), seed=source.seed, arrays=arrays), labels,
                  [t.name for t in info.outputs])


__all__ = ["Inputs", "inputs", "load"]
