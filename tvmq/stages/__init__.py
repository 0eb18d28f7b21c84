"""The stages of a run, each callable on its own with typed inputs and outputs.

``output``: :func:`outputs`; ``source``: :func:`load`, :func:`inputs`; ``partition``: :func:`split`; ``compile``: :func:`plan`,
:func:`prepare`, :func:`lower`, :func:`open_records`, :func:`tune`, :func:`build`, :func:`export`;
``measure``: :func:`runnable`, :func:`verify`, :func:`benchmark`; ``explain``: :func:`explain` (every
tensor against TFLite). :func:`tvmq.pipeline.run` chains them.
"""

from .compile import Lowered, Plan, Prepared, build, export, lower, open_records, plan, prepare, tune
from .explain import explain
from .measure import Verification, benchmark, benchmark_untuned, runnable, verification_reference, verify
from .output import Outputs, outputs
from .partition import Split, split
from .source import Inputs, inputs, load
from .steps import Steps

__all__ = ["Inputs", "Lowered", "Outputs", "Plan", "Prepared", "Split", "Steps", "Verification", "benchmark",
           "benchmark_untuned", "build", "explain", "export", "inputs", "load", "lower", "open_records", "outputs", "plan",
           "prepare", "runnable", "split", "tune", "verification_reference", "verify"]
