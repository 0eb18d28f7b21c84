"""What the machine running tvmq is: architecture, CPU model, CPU flags, core count.

Read from ``/proc/cpuinfo`` (Linux, x86_64 and aarch64) with ``psutil`` / ``os`` for the core
count. Nothing here needs TVM; :func:`host_info` is cached because the host does not change.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HostInfo", "host_info", "parse_cpuinfo"]

_ARCH_ALIASES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}

# /proc/cpuinfo "CPU implementer" values.
_ARM_IMPLEMENTERS = {"0x41": "Arm", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon"}


@dataclass(frozen=True)
class HostInfo:
    """The CPU tvmq is running on."""

    arch: str  # "x86_64" or "aarch64" (or whatever platform.machine() says)
    model_name: str  # e.g. "AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    vendor: str  # "intel", "amd", "arm" or "unknown"
    flags: frozenset[str] = field(default_factory=frozenset)  # /proc/cpuinfo names
    physical_cores: int = 1
    logical_cores: int = 1
    arm_cpu_part: str = ""  # "0xd0c" for Neoverse N1, ...: the /proc/cpuinfo "CPU part"

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def lacks(self, arch: str, flags: Iterable[str]) -> list[str]:
        """What this CPU lacks to run code for ``arch`` that needs ``flags``: those flags it does not
        have; on another architecture, all of them (or the architecture's name when there are none)."""
        flags = list(flags)
        if self.arch != arch:
            return flags or [arch]
        return [f for f in flags if f not in self.flags]

    def describe(self) -> str:
        cores = f"{self.physical_cores} core" + ("s" if self.physical_cores != 1 else "")
        return f"{self.model_name} ({self.arch}, {cores})"


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (keys lower-cased).

    aarch64 kernels write ``Features`` instead of ``flags`` and often no ``model name``; both
    spellings are kept as they are so that callers can look for either.
    """
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if info.get("flags") or info.get("features"):
                break  # end of the first processor block
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key not in info:
            info[key] = value.strip()
    return info


def _core_counts() -> tuple[int, int]:
    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    physical = logical
    try:
        import psutil

        p = psutil.cpu_count(logical=False)
        if p:
            # Respect an affinity mask smaller than the machine (containers, taskset).
            physical = max(1, min(p, logical))
    except Exception:  # noqa: BLE001 - psutil is a convenience, never a requirement
        pass
    return physical, logical


def _vendor_of(info: dict[str, str], arch: str) -> str:
    vid = info.get("vendor_id", "")
    if vid == "GenuineIntel":
        return "intel"
    if vid in ("AuthenticAMD", "HygonGenuine"):
        return "amd"
    if arch == "aarch64" or "cpu implementer" in info:
        return "arm"
    return "unknown"


def host_from_cpuinfo(text: str, arch: str | None = None, physical_cores: int | None = None,
                      logical_cores: int | None = None) -> HostInfo:
    """Build a :class:`HostInfo` from /proc/cpuinfo text (used for the real host and in tests)."""
    info = parse_cpuinfo(text)
    machine = arch or _ARCH_ALIASES.get(platform.machine().lower(), platform.machine().lower())
    flags = frozenset((info.get("flags") or info.get("features") or "").split())
    vendor = _vendor_of(info, machine)
    model = info.get("model name") or info.get("hardware") or ""
    part = info.get("cpu part", "").lower()
    if not model and vendor == "arm":
        implementer = _ARM_IMPLEMENTERS.get(info.get("cpu implementer", "").lower(), "Arm")
        model = f"{implementer} CPU part {part}" if part else f"{implementer} CPU"
    if not model:
        model = platform.processor() or machine or "unknown CPU"
    if physical_cores is None or logical_cores is None:
        p, lg = _core_counts()
        physical_cores = physical_cores or p
        logical_cores = logical_cores or lg
    return HostInfo(
        arch=machine,
        model_name=model,
        vendor=vendor,
        flags=flags,
        physical_cores=physical_cores,
        logical_cores=logical_cores,
        arm_cpu_part=part,
    )


@functools.lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """The CPU of this machine (cached)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    return host_from_cpuinfo(text)
