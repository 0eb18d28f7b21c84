"""What a run is asked to do: frozen option groups, validated in one place.

A run's options are six groups — the model and its inputs (:class:`SourceOptions`), the machine
(:class:`TargetOptions`), the search (:class:`TuningOptions`), the code generated
(:class:`CodegenOptions`), the measurement (:class:`MeasurementOptions`) and the files written
(:class:`OutputOptions`) — gathered in :class:`RunOptions`. :meth:`RunOptions.from_mapping` builds
them from the flat names ``tvmq-tune`` uses (its argparse destinations), and every rule about
which values and combinations are allowed lives here: :data:`RANGES` (each numeric option's
range, which ``tvmq-tune``'s parser reads too) and :meth:`RunOptions.validate`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from tvmq.errors import UsageError

REQUANT_MODES = ("tflite", "xnnpack")  # tvmq.int8.requant.MODES, named here without importing TVM
#: the integer path's requantization when none is asked for: what LiteRT runs on x86 and Arm (its
#: XNNPACK delegate), so that the default build is verified against what a user's TFLite computes
DEFAULT_REQUANT = "xnnpack"
#: the search of a run given neither --trials nor --budget: a coffee break of wall-clock time
DEFAULT_BUDGET_S = 180.0
BUDGET_TRIALS_CAP = 100_000  # with --budget and no --trials: the clock ends the search, not a count
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_UNIT_S = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
INT32_MAX = 2**31 - 1  # TVM, numpy and XGBoost take counts and seeds as 32-bit integers
_LAYOUT = re.compile(r"^(NHWC|NCHW|NCHW[1-9]\d*c)$")

# The values each numeric option may take, both ends included (an int pair: whole numbers only).
# RunOptions.validate and tvmq-tune's argparse types (tvmq.cli.common.number_in) both read it.
RANGES: dict[str, tuple[int | float, int | float]] = {
    "trials": (0, INT32_MAX),
    "trials_per_task": (1, INT32_MAX),
    "seed": (0, INT32_MAX),
    "threads": (1, 1024),  # more than any CPU tvmq targets has cores
    "repeat": (1, INT32_MAX),
    "bench_seconds": (0.0, 3600.0),  # timed seconds per engine; 0: only --repeat and --bench-blocks count
    "bench_blocks": (2, 100_000),  # an interval needs blocks to resample
    "tolerance": (0.0, math.inf),  # finite, at least 0
}


@dataclass(frozen=True)
class SourceOptions:
    """The model and what to feed it."""

    model: str
    images: tuple[str, ...] = ()
    labels: str | None = None
    seed: int = 0  # of the synthetic inputs (and of the search)
    inputs: tuple[str, ...] = ()  # NAME=FILE.npy: an input given as it is


@dataclass(frozen=True)
class TargetOptions:
    """Which CPU, and where the code runs: here, on an RPC tracker's devices, or nowhere (build only)."""

    name: str = "native"
    threads: int | None = None  # None: the profile's, at most the host's cores
    build_only: bool = False
    rpc_tracker: str | None = None
    rpc_key: str | None = None

    @property
    def remote(self) -> bool:
        return bool(self.rpc_tracker) and not self.build_only

    @property
    def measure_here(self) -> bool:
        return not self.build_only and not self.rpc_tracker


@dataclass(frozen=True)
class TuningOptions:
    """How much to search, and where the measurements are kept."""

    trials: int = 0
    trials_per_task: int | None = None
    retune: bool = False
    seed: int = 0
    db: str | None = None  # None: ./tvmq.db (or $TVMQ_DB)
    show_tasks: bool = False
    budget_s: float | None = None  # wall-clock seconds of search; trials then only cap it
    session_note: str | None = None  # kept with the tuning session (tvmq-release marks its pairs)


@dataclass(frozen=True)
class CodegenOptions:
    """What code is generated. ``layout`` and ``winograd`` left at None take the profile's choice.

    The integer path is the default; ``int8=False`` imports the QDQ float graph as TVM does (the
    fallback, and the comparison). ``requant`` only matters on the integer path."""

    int8: bool = True
    requant: str = DEFAULT_REQUANT
    layout: str | None = None
    winograd: bool | None = None


@dataclass(frozen=True)
class MeasurementOptions:
    """The benchmark times each engine in alternating blocks (:func:`tvmq.stages.measure.benchmark`)
    until each has ``bench_seconds`` of timed runs, ``repeat`` runs and ``bench_blocks`` blocks."""

    repeat: int = 10  # timed runs of each engine, at least (on an RPC device: exactly)
    bench_seconds: float = 2.0  # timed seconds of each engine, at least
    bench_blocks: int = 5  # blocks of each engine, at least
    # quantized units allowed; None: the build's own (0 for --int8, 2 for the QDQ float graph;
    # tvmq.report.verify.verification_policy)
    tolerance: float | None = None
    explain_mismatch: bool = False  # compare every tensor with TFLite and name the first that differs


@dataclass(frozen=True)
class OutputOptions:
    out_dir: Path | None = None  # None: tvmq_out/MODEL-TARGET
    json_path: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    source: SourceOptions
    target: TargetOptions = field(default_factory=TargetOptions)
    tuning: TuningOptions = field(default_factory=TuningOptions)
    codegen: CodegenOptions = field(default_factory=CodegenOptions)
    measurement: MeasurementOptions = field(default_factory=MeasurementOptions)
    output: OutputOptions = field(default_factory=OutputOptions)

    @classmethod
    def from_mapping(cls, values: Mapping) -> RunOptions:
        """The groups from flat names (``tvmq-tune``'s argparse destinations, e.g. ``vars(args)``;
        ``target`` names the profile, ``out``/``json`` the output paths). Unknown names are an error.
        With neither ``trials`` nor ``budget`` the search gets :data:`DEFAULT_BUDGET_S` of wall-clock
        time (``build_only``: no search). Validated."""
        flat = {k: v for k, v in values.items() if v is not None}
        renames = {"target": "name", "out": "out_dir", "json": "json_path"}
        flat = {renames.get(k, k): v for k, v in flat.items()}
        if flat.get("layout") == "profile":  # the CLI's spelling of "the profile's choice"
            del flat["layout"]
        if "images" in flat:
            flat["images"] = tuple(_flatten(flat["images"]))
        if "image" in flat:
            flat["images"] = tuple(_flatten(flat.pop("image")))
        if "inputs" in flat:
            flat["inputs"] = tuple(flat["inputs"])
        if "budget" in flat:
            flat["budget_s"] = flat.pop("budget")
        if flat.get("int8") is False and "requant" in flat:
            raise UsageError("--requant chooses how the integer kernels requantize: it cannot go with --no-int8 "
                             "(the QDQ float graph has no integer requantization to choose)")
        if flat.get("build_only"):
            flat.setdefault("trials", 0)
        elif "trials" not in flat:  # neither: the default budget; --budget alone: the clock ends the search
            flat.setdefault("budget_s", DEFAULT_BUDGET_S)
            flat["trials"] = BUDGET_TRIALS_CAP
        groups = {}
        for name, group in (("source", SourceOptions), ("target", TargetOptions), ("tuning", TuningOptions),
                            ("codegen", CodegenOptions), ("measurement", MeasurementOptions),
                            ("output", OutputOptions)):
            names = {f.name for f in fields(group)}
            groups[name] = group(**{k: flat[k] for k in names if k in flat})
        unknown = set(flat) - {f.name for g in groups.values() for f in fields(g)}
        if unknown:
            raise TypeError(f"unknown run options: {', '.join(sorted(unknown))}")
        return cls(**groups).validate()

    def validate(self) -> RunOptions:
        """Every rule about option values and combinations; raises :class:`UsageError`."""
        t, tu, c = self.target, self.tuning, self.codegen
        for group in (self.source, t, tu, self.measurement):
            for f in fields(group):
                value = getattr(group, f.name)
                problem = range_problem(value, *RANGES[f.name]) if f.name in RANGES and value is not None else None
                if problem:
                    raise UsageError(f"--{f.name.replace('_', '-')} {problem}")
        if c.requant not in REQUANT_MODES:
            raise UsageError(f"--requant must be one of {', '.join(REQUANT_MODES)}, not {c.requant!r}")
        if c.layout is not None and layout_problem(c.layout):
            raise UsageError(f"--layout {layout_problem(c.layout)}")
        if tu.budget_s is not None and not (math.isfinite(tu.budget_s) and tu.budget_s > 0):
            raise UsageError(f"--budget must be a positive duration, not {tu.budget_s!r}")
        if t.build_only and tu.budget_s:
            raise UsageError("--build-only tunes nothing: drop --budget")
        if t.build_only and tu.trials > 0:
            raise UsageError("--build-only tunes nothing: drop --trials, or tune on the device with --rpc-tracker")
        if bool(t.rpc_tracker) != bool(t.rpc_key):
            raise UsageError("--rpc-tracker and --rpc-key go together")
        if self.measurement.explain_mismatch and (t.build_only or t.rpc_tracker):
            raise UsageError("--explain-mismatch runs every tensor of the model on this host: it cannot go with "
                             f"{'--build-only' if t.build_only else '--rpc-tracker'}")
        return self


def _flatten(items) -> list[str]:
    """``--image`` is ``append`` of ``nargs='+'``: a list of lists, or already flat."""
    out: list[str] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return out


def range_problem(value, low: int | float, high: int | float) -> str | None:
    """Why ``value`` is not allowed where ``low``..``high`` (both included) is, as a phrase ("must
    be at least 1, not 0"); None when it is. An int range takes whole numbers only, a float range
    any finite number."""
    whole = isinstance(low, int)
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (not whole and not math.isfinite(value)):
        return f"must be a {'whole' if whole else 'finite'} number, not {value!r}"
    if value < low:
        return f"must be at least {low}, not {value}"
    if value > high:
        return f"must be at most {high}, not {value}"
    return None


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1.5h``; :class:`UsageError` for anything else or 0."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else 0.0
    if not match or not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"a duration must be a positive number of seconds, minutes or hours (90s, 5m, 1h), "
                         f"not {text!r}")
    return seconds


def layout_problem(layout: str) -> str | None:
    """Why ``layout`` is not a convolution data layout tvmq can apply; None when it is."""
    if isinstance(layout, str) and _LAYOUT.match(layout):
        return None
    return f"must be NHWC, NCHW or NCHW<b>c (e.g. NCHW16c), not {layout!r}"


__all__ = ["RunOptions", "SourceOptions", "TargetOptions", "TuningOptions", "CodegenOptions",
           "MeasurementOptions", "OutputOptions", "DEFAULT_BUDGET_S", "DEFAULT_REQUANT", "INT32_MAX", "RANGES", "REQUANT_MODES",
           "layout_problem", "parse_duration", "range_problem"]
