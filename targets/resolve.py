"""Turning a user's ``--target`` into a profile, including ``native`` host detection."""

from __future__ import annotations

import dataclasses

from tvmq.errors import UnknownTarget

from .host import HostInfo, host_info
from .profile import TargetProfile, get_profile, list_profiles, with_threads

__all__ = ["resolve_target", "detect_native", "NATIVE_NAMES", "llvm_host_cpu"]

NATIVE_NAMES = ("native", "host", "auto")


def llvm_host_cpu() -> str:
    """LLVM's name for this host's CPU ("znver3", "cascadelake"...), "" when unknown."""
    try:
        from tvm.target import codegen

        return str(codegen.llvm_get_system_cpu())
    except Exception:  # noqa: BLE001 - a hint only
        return ""


def detect_native(host: HostInfo | None = None, llvm_cpu: str | None = None) -> tuple[TargetProfile, str]:
    """The profile closest to ``host`` and one sentence saying which and why.

    Order of evidence: (1) aarch64 "CPU part" naming a profile's core, (2) LLVM's own name for
    the host CPU matching a profile's mcpu or alias, (3) the richest profile of the host's vendor
    whose required flags the host all has, (4) the richest runnable profile of any vendor.
    A candidate is only ever chosen when the host has every flag its code needs.
    """
    host = host or host_info()
    if llvm_cpu is None:
        llvm_cpu = llvm_host_cpu() if host is host_info() else ""
    same_arch = [p for p in list_profiles() if p.arch == host.arch]
    if not same_arch:
        known = ", ".join(p.name for p in list_profiles())
        raise UnknownTarget(f"no target profile is for this host's architecture {host.arch} "
                            f"({host.model_name}): pick one of {known} with --target")
    runnable = [p for p in same_arch if not p.missing_host_flags(host)]
    if not runnable:
        raise UnknownTarget(f"this host ({host.model_name}) lacks flags every {host.arch} profile "
                            f"needs: pick a target with --target")
    who = f"this host is {host.describe()}"
    if host.arch == "aarch64" and host.arm_cpu_part:
        for p in runnable:
            if p.arm_cpu_part and p.arm_cpu_part.lower() == host.arm_cpu_part:
                return p, f"native: {who}, CPU part {host.arm_cpu_part} is a {p.name} core: using {p.name} ({p.int8_isa})"
    if llvm_cpu:
        for p in runnable:
            if llvm_cpu.lower() in (n.lower() for n in (p.mcpu, *p.all_names)):
                return p, (f"native: {who}, which LLVM calls {llvm_cpu}: using {p.name} "
                           f"({p.int8_isa}, all {len(p.host_flags)} flags it needs are present)")

    def richness(p: TargetProfile) -> tuple[int, int]:
        return (len(p.host_flags), 1 if p.tensor_intrin else 0)

    vendor_match = [p for p in runnable if p.vendor == host.vendor]
    pool = vendor_match or runnable
    best = max(pool, key=richness)
    richer = [p.name for p in same_arch if p not in runnable and richness(p) > richness(best)]
    why = (f"the richest {host.vendor} profile" if vendor_match else "the richest profile") + \
          " whose required CPU flags this host all has"
    lacking = f"; richer ones ({', '.join(richer)}) need flags it lacks" if richer else ""
    return best, f"native: {who}: using {best.name}, {why} ({best.int8_isa}){lacking}"


def resolve_target(name: str, num_cores: int | None = None) -> tuple[TargetProfile, str]:
    """``(profile, reason)`` for a ``--target`` value: a profile name or alias, or ``native``.

    ``native`` detects this host and sets the thread count to its physical cores;
    ``num_cores`` (when given) overrides the profile's default thread count.
    """
    key = (name or "").strip().lower()
    if key in NATIVE_NAMES:
        host = host_info()
        prof, reason = detect_native(host)
        prof = dataclasses.replace(prof, default_threads=max(1, host.physical_cores))
    else:
        prof = get_profile(name)
        reason = (f"{prof.name}: the target you asked for" if key == prof.name
                  else f"{prof.name}: '{name}' is an alias of it")
    prof = with_threads(prof, num_cores)
    return prof, f"{reason} ({prof.default_threads} threads)"
