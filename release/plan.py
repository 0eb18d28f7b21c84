"""What a pre-release run covers: ``PLAN.toml`` read, checked and completed by the command line.

A plan names the tuning database, the budget of each pair (a duration, a trial count, or both),
the models (each with its images and labels) and the targets (each measured here, on an RPC
tracker's devices, or only cross-built). Paths in a plan are relative to the plan's folder.
Every problem of a plan is found before any work starts and is a :class:`UsageError` (exit 2)
that names the plan and the entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from tvmq.errors import UsageError
from tvmq.options import DEFAULT_REQUANT, REQUANT_MODES, parse_duration

MODES = ("local", "build-only", "rpc")
_TOP_KEYS = {"db", "budget", "trials", "int8", "requant", "threads", "threshold", "model", "target"}
_MODEL_KEYS = {"path", "name", "images", "labels"}
_TARGET_KEYS = {"name", "mode", "tracker", "key", "threads", "threshold"}


@dataclass(frozen=True)
class PlanModel:
    path: str  # a file path (absolute, resolved against the plan's folder) or an http(s) URL
    name: str  # how the summary and the pages name it: the file's stem unless the plan says
    images: tuple[str, ...] = ()
    labels: str | None = None


@dataclass(frozen=True)
class PlanTarget:
    name: str  # a profile name or alias (``native`` included)
    mode: str = "local"
    tracker: str | None = None
    key: str | None = None
    threads: int | None = None
    threshold: float | None = None  # the gate's slowdown threshold on this target (a noisier device: more)

    @property
    def label(self) -> str:
        """The target's column in the matrix: its name, and the mode when it is not local."""
        return self.name if self.mode == "local" else f"{self.name} ({self.mode})"


@dataclass(frozen=True)
class Plan:
    models: tuple[PlanModel, ...]
    targets: tuple[PlanTarget, ...]
    db: str | None = None
    budget_s: float | None = None
    trials: int | None = None
    int8: bool = True
    requant: str = DEFAULT_REQUANT
    threads: int | None = None
    threshold: float | None = None  # the gate's slowdown threshold (None: 5%); a target's own wins
    source: str = "<command line>"

    def pairs(self) -> list[tuple[PlanModel, PlanTarget]]:
        """Every (model, target), build-only ones last: they measure nothing and need what the
        measured ones tuned for the same profile, if any."""
        order = sorted(self.targets, key=lambda t: t.mode == "build-only")
        return [(m, t) for t in order for m in self.models]

    def to_dict(self) -> dict:
        from tvmq.redact import redact_text

        return {"source": self.source, "db": redact_text(self.db) if self.db else None, "budget_s": self.budget_s,
                "threshold": self.threshold,
                "trials": self.trials, "int8": self.int8, "requant": self.requant, "threads": self.threads,
                "models": [m.name for m in self.models], "targets": [t.label for t in self.targets]}


def load_plan(path: Path) -> Plan:
    """``path`` read and checked; :class:`UsageError` naming the problem otherwise."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{where}: no such plan file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{where}: cannot read the plan: {getattr(err, 'strerror', None) or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{where}: not valid TOML: {err}") from None
    return plan_from_dict(data, base=Path(path).resolve().parent, source=where)


def plan_from_dict(data: dict, base: Path, source: str) -> Plan:
    _only(data, _TOP_KEYS, source)
    models = [_model(m, base, f"{source}: [[model]] #{i + 1}") for i, m in enumerate(_tables(data, "model", source))]
    targets = [_target(t, f"{source}: [[target]] #{i + 1}") for i, t in enumerate(_tables(data, "target", source))]
    _unique([m.name for m in models], f"{source}: two [[model]] entries are both named", "give one a name = ...")
    _unique([t.label for t in targets], f"{source}: two [[target]] entries are both", "drop one")
    plan = Plan(models=tuple(models), targets=tuple(targets), source=source,
                db=_db_url(_typed(data, "db", str, source), base),
                budget_s=_duration(data.get("budget"), source),
                trials=_whole(data, "trials", source, low=0),
                int8=_typed(data, "int8", bool, source, default=True),
                requant=_typed(data, "requant", str, source, default=DEFAULT_REQUANT),
                threads=_whole(data, "threads", source, low=1),
                threshold=_fraction(data, "threshold", source))
    return check(plan)


def with_overrides(plan: Plan, **flags) -> Plan:
    """The plan with every flag given on the command line (not None) in place of its value."""
    given = {k: v for k, v in flags.items() if v is not None}
    return check(replace(plan, **given)) if given else plan


def check(plan: Plan) -> Plan:
    where = plan.source
    if not plan.models:
        raise UsageError(f"{where}: no [[model]]: name at least one model (path = ...)")
    if not plan.targets:
        raise UsageError(f"{where}: no [[target]]: name at least one target (name = \"native\")")
    if plan.requant not in REQUANT_MODES:
        raise UsageError(f"{where}: requant must be one of {', '.join(REQUANT_MODES)}, not {plan.requant!r}")
    if plan.requant != "tflite" and not plan.int8:
        raise UsageError(f"{where}: requant = {plan.requant!r} needs int8 = true")
    for m in plan.models:
        for p in (m.path, *m.images, *([m.labels] if m.labels else [])):
            if not p.startswith(("http://", "https://", "builtin:")) and not Path(p).exists():
                raise UsageError(f"{where}: model {m.name!r}: {p} does not exist")
    from tvmq.targets.resolve import resolve_target

    for t in plan.targets:
        resolve_target(t.name)  # UnknownTarget (exit 2) names the profiles
    return plan


def _model(entry, base: Path, where: str) -> PlanModel:
    entry = _table(entry, where)
    _only(entry, _MODEL_KEYS, where)
    path = _typed(entry, "path", str, where)
    if not path:
        raise UsageError(f"{where}: path = ... is required")
    images = entry.get("images", [])
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise UsageError(f"{where}: images must be a list of paths")
    labels = _typed(entry, "labels", str, where)
    name = _typed(entry, "name", str, where) or Path(path.split("#")[0].rstrip("/")).stem
    return PlanModel(path=_resolve(path, base), name=name, images=tuple(_resolve(i, base) for i in images),
                     labels=_resolve(labels, base) if labels else None)


def _target(entry, where: str) -> PlanTarget:
    entry = _table(entry, where)
    _only(entry, _TARGET_KEYS, where)
    name = _typed(entry, "name", str, where)
    if not name:
        raise UsageError(f"{where}: name = ... is required (a profile, or native)")
    mode = _typed(entry, "mode", str, where, default="local")
    if mode not in MODES:
        raise UsageError(f"{where}: mode must be one of {', '.join(MODES)}, not {mode!r}")
    tracker, key = _typed(entry, "tracker", str, where), _typed(entry, "key", str, where)
    if (mode == "rpc") != bool(tracker and key) or (mode != "rpc" and (tracker or key)):
        raise UsageError(f"{where}: tracker = \"HOST:PORT\" and key = \"KEY\" go with mode = \"rpc\", and only with it")
    return PlanTarget(name=name, mode=mode, tracker=tracker, key=key, threads=_whole(entry, "threads", where, low=1),
                      threshold=_fraction(entry, "threshold", where))


def _tables(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise UsageError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return value


def _table(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: must be a table")
    return entry


def _only(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _typed(table: dict, key: str, kind: type, where: str, default=None):
    value = table.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise UsageError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _whole(table: dict, key: str, where: str, low: int):
    value = table.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise UsageError(f"{where}: {key} must be a whole number of at least {low}, not {value!r}")
    return value


def fraction_problem(value) -> str | None:
    """Why ``value`` is not a threshold (a fraction from 0 up to, not including, 1); None when it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        return f"must be a fraction from 0 to 1 (0.05 is 5%), not {value!r}"
    return None


def _fraction(table: dict, key: str, where: str) -> float | None:
    value = table.get(key)
    if value is not None and fraction_problem(value):
        raise UsageError(f"{where}: {key} {fraction_problem(value)}")
    return value


def _duration(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{where}: budget must be a duration such as \"5m\", not {value!r}")
    try:
        return parse_duration(str(value))
    except UsageError as err:
        raise UsageError(f"{where}: budget: {err.message}") from None


def _unique(names: list[str], what: str, fix: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise UsageError(f"{what} {n!r}: {fix}")
        seen.add(n)


def _resolve(path: str, base: Path) -> str:
    if path.startswith(("http://", "https://", "builtin:")):
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


def _db_url(db: str | None, base: Path) -> str | None:
    """A SQLite database named by a relative path (or ``sqlite:///relative``) lives beside the plan."""
    if db is None:
        return None
    if "://" not in db:
        return _resolve(db, base)
    prefix = "sqlite:///"
    if db.startswith(prefix) and not db.startswith(prefix + "/") and db != prefix + ":memory:":
        return prefix + _resolve(db[len(prefix):], base)
    return db


__all__ = ["MODES", "Plan", "PlanModel", "PlanTarget", "check", "fraction_problem", "load_plan", "plan_from_dict", "with_overrides"]
