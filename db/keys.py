"""How workloads and targets are keyed: MetaSchedule's module equality, and canonical target JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

# MetaSchedule's databases receive a ``module_equality`` name and hash/compare workloads with the
# C++ ``ModuleEquality`` it names (src/s_tir/meta_schedule/module_equality.cc):
#
# - ``"structural"``     ``StructuralHash()(mod)`` / ``StructuralEqual()(a, b)``
# - ``"ignore-tensor"``  the same with ``skip_tensor_content=True`` (constants' bytes are ignored)
# - ``"anchor-block"``   hash/compare only the module's anchor block (``tirx::FindAnchorBlock``),
#                        ignoring tensor content; whole-module ``"ignore-tensor"`` when either side
#                        has no anchor block
#
# The same functions are reachable from Python as ``tvm_ffi.structural_hash`` /
# ``tvm_ffi.structural_equal`` (with ``map_free_vars=False`` and ``skip_tensor_content``) and the
# global ``s_tir.analysis.find_anchor_sblock``, so the hashes below are bit-identical to the ones
# ``ms.database.Workload`` and ``JSONDatabase`` compute (``Workload(mod).as_json()[0]`` is
# ``structural_hash(mod)`` in decimal).
MODULE_EQUALITIES = ("structural", "ignore-tensor", "anchor-block")

#: MetaSchedule's stand-in run time for a failed measurement (SortTuningRecordByMeanRunSecs).
MAX_MEAN_TIME = 1e10


def check_module_equality(name: str) -> str:
    if name not in MODULE_EQUALITIES:
        from tvmq.errors import DatabaseError

        raise DatabaseError(
            f"Unknown module equality {name!r}; use one of: {', '.join(MODULE_EQUALITIES)}."
        )
    return name


def _anchor_block(mod: Any) -> Any:
    import tvm_ffi

    return tvm_ffi.get_global_func("s_tir.analysis.find_anchor_sblock")(mod)


def module_hash(mod: Any, module_equality: str = "structural") -> int:
    """The unsigned 64-bit hash MetaSchedule's ModuleEquality ``module_equality`` gives ``mod``."""
    import tvm_ffi

    if module_equality == "structural":
        return tvm_ffi.structural_hash(mod, False, False)
    if module_equality == "ignore-tensor":
        return tvm_ffi.structural_hash(mod, False, True)
    if module_equality == "anchor-block":
        block = _anchor_block(mod)
        if block is not None:
            return tvm_ffi.structural_hash(block, False, True)
        return tvm_ffi.structural_hash(mod, False, True)
    check_module_equality(module_equality)
    raise AssertionError  # unreachable


def all_module_hashes(mod: Any) -> dict[str, str]:
    """Decimal hash strings for every module equality (stored with each workload)."""
    return {eq: str(module_hash(mod, eq)) for eq in MODULE_EQUALITIES}


def modules_equal(lhs: Any, rhs: Any, module_equality: str = "structural") -> bool:
    """MetaSchedule's ``ModuleEquality::Equal`` for ``module_equality``."""
    import tvm_ffi

    if module_equality == "structural":
        return bool(tvm_ffi.structural_equal(lhs, rhs, False, False))
    if module_equality == "ignore-tensor":
        return bool(tvm_ffi.structural_equal(lhs, rhs, False, True))
    if module_equality == "anchor-block":
        a, b = _anchor_block(lhs), _anchor_block(rhs)
        if a is not None and b is not None:
            return bool(tvm_ffi.structural_equal(a, b, False, True))
        return bool(tvm_ffi.structural_equal(lhs, rhs, False, True))
    check_module_equality(module_equality)
    raise AssertionError  # unreachable


def hash_column(module_equality: str) -> str:
    """Name of the workloads column that holds the hash for ``module_equality``."""
    return "shash_" + check_module_equality(module_equality).replace("-", "_")


# ------------------------------------------------------------------------------------ targets
# A target is keyed by its canonical JSON (``Target.export()`` dumped with sorted keys and no
# spaces) and a short, human-readable key ``<kind>-<mcpu or mtriple or "generic">-<8 hex digits
# of sha256(canonical)>``. Records only ever match a target whose canonical JSON is identical.


def as_target(target: Any) -> Any:
    """A ``tvm.target.Target`` from a Target, its JSON dict, or JSON text."""
    from tvm.target import Target

    if isinstance(target, Target):
        return target
    try:
        if isinstance(target, str):
            text = target.strip()
            target = json.loads(text) if text.startswith("{") else text
        return Target(target)
    except Exception as err:  # noqa: BLE001 - TVM raises ValueError/TVMError/RuntimeError
        from tvmq.errors import DatabaseError, one_line

        raise DatabaseError(f"Not a valid TVM target: {target!r} ({one_line(err, pick='last')}).") from None


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    if hasattr(value, "export"):  # a nested Target (e.g. host)
        return _plain(value.export())
    if hasattr(value, "value"):  # IntImm / FloatImm / Bool
        return _plain(value.value)
    return str(value)


def canonical_target_json(target: Any) -> str:
    """The canonical JSON text of a target (sorted keys, no spaces)."""
    if isinstance(target, str) and target.startswith("{"):
        target = as_target(target)
    if isinstance(target, dict):
        target = as_target(target)
    if hasattr(target, "export"):
        target = target.export()
    return json.dumps(_plain(target), sort_keys=True, separators=(",", ":"))


def target_key(target_json: str) -> str:
    """A short key for a canonical target JSON, e.g. ``llvm-cascadelake-1a2b3c4d``."""
    digest = hashlib.sha256(target_json.encode()).hexdigest()[:8]
    try:
        cfg = json.loads(target_json)
    except ValueError:
        cfg = {}
    kind = str(cfg.get("kind", "target"))
    cpu = cfg.get("mcpu") or cfg.get("mtriple") or cfg.get("arch") or "generic"
    cpu = str(cpu).split("-")[0] if "mtriple" in cfg and not cfg.get("mcpu") else str(cpu)
    return f"{kind}-{cpu}-{digest}"


class TargetIdentity(NamedTuple):
    """What records are keyed by: the short key and the canonical JSON of a target."""

    key: str
    json: str


def target_identity(target: Any) -> TargetIdentity:
    """``(target_key, canonical_json)`` of a Target, JSON dict or JSON text (an identity passes through)."""
    if isinstance(target, TargetIdentity):
        return target
    canon = canonical_target_json(target)
    return TargetIdentity(target_key(canon), canon)
