"""Target profiles: one small TOML file per machine kind under ``targets/profiles/``.

A profile says how to generate code for a CPU (LLVM triple, CPU, features), which host CPU
flags that code needs, which int8 dot-product instruction and TVM tensor intrinsic it has, and
which data layout / convolution strategy :mod:`tvmq.tuner.layout` applies for it.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvmq.errors import CompileError, MissingISA, UnknownTarget, one_line

from .host import HostInfo, host_info

if TYPE_CHECKING:  # pragma: no cover
    import tvm

__all__ = ["TargetProfile", "get_profile", "list_profiles", "load_profile_file", "DATA_LAYOUTS", "INT8_SCHEMES"]

DATA_LAYOUTS = ("NHWC", "NCHW", "NCHWc")
# the keys of tvmq.int8.dot.SCHEMES (kept here so that reading profiles does not import TVM)
INT8_SCHEMES = ("amx", "avx2", "avx512", "sdot", "vnni")
ARCHES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class TargetProfile:
    """One target machine kind. Loaded from ``targets/profiles/<name>.toml``."""

    name: str
    aliases: tuple[str, ...]
    description: str
    arch: str  # "x86_64" | "aarch64"
    vendor: str  # "intel" | "amd" | "arm" | "generic": used by host detection
    # LLVM code generation
    mtriple: str
    mcpu: str
    mattr: tuple[str, ...]
    # /proc/cpuinfo flags the generated code needs on the machine that runs it
    host_flags: tuple[str, ...]
    # int8 dot product
    int8_instruction: str  # "vpdpbusd", "vpmaddubsw", "sdot", "smmla", ...
    int8_isa: str  # human description, e.g. "AVX-512 VNNI"
    tensor_intrin: str | None  # registered TVM TensorIntrin name, None where TVM has none
    int8_scheme: str | None  # tvmq.int8.dot scheme --int8 tensorizes with (None: plain kernels)
    # layout / strategy (applied by tvmq.tuner.layout)
    data_layout: str  # "NHWC" | "NCHW" | "NCHWc"
    layout_block: int  # channel block for NCHWc (0 otherwise)
    winograd: bool  # winograd for 3x3 stride-1 dense convs
    # running
    default_threads: int
    cross_compiler: str  # the gcc that links this arch's code on another arch
    arm_cpu_part: str | None = None  # /proc/cpuinfo "CPU part" of the core (aarch64)
    source: str = ""  # the TOML file it came from

    # ----------------------------------------------------------------- derived
    @property
    def layout(self) -> str:
        """The full data layout string: "NHWC", "NCHW" or e.g. "NCHW16c"."""
        return f"NCHW{self.layout_block}c" if self.data_layout == "NCHWc" else self.data_layout

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def tvm_target(self, num_cores: int | None = None) -> "tvm.target.Target":
        """The TVM LLVM target (JSON-dict form) for this profile, with ``num-cores`` set."""
        import tvm

        cores = int(num_cores) if num_cores else self.default_threads
        if cores < 1:
            raise ValueError(f"num_cores must be at least 1, not {num_cores}")
        return tvm.target.Target(self.target_dict(cores))

    def target_dict(self, num_cores: int | None = None) -> dict[str, Any]:
        return {
            "kind": "llvm",
            "mtriple": self.mtriple,
            "mcpu": self.mcpu,
            "mattr": list(self.mattr),
            "num-cores": int(num_cores) if num_cores else self.default_threads,
        }

    # ----------------------------------------------------------- host checks
    def missing_host_flags(self, host: HostInfo | None = None) -> list[str]:
        """The CPU flags this profile's code needs that ``host`` (default: this machine) lacks.

        A host of another architecture lacks all of them.
        """
        return (host or host_info()).lacks(self.arch, self.host_flags)

    @property
    def can_run_here(self) -> bool:
        return not self.missing_host_flags()

    def check_runnable(self, host: HostInfo | None = None) -> None:
        """Raise :class:`MissingISA` (one sentence) when this host cannot run this profile's code."""
        host = host or host_info()
        missing = self.missing_host_flags(host)
        if not missing:
            return
        advice = "use --build-only to cross-build, or --rpc-tracker to measure on a remote device"
        if host.arch != self.arch:
            msg = (f"{self.name} code is for {self.arch} and this host ({host.model_name}) is "
                   f"{host.arch}: {advice}")
        else:
            msg = (f"{self.name} code needs {', '.join(missing)}, which this host "
                   f"({host.model_name}) lacks: {advice}")
        raise MissingISA(msg, missing=missing)

    # ---------------------------------------------------------------- export
    def compiler_for(self, host: HostInfo | None = None):
        """The ``fcompile`` for ``export_library``: None (the default cc) on a same-arch host,
        else a cross compiler; :class:`CompileError` when that cross compiler is not installed."""
        host = host or host_info()
        if host.arch == self.arch:
            return None
        cc = shutil.which(self.cross_compiler) if self.cross_compiler else None
        if cc is None:
            pkg = "gcc-" + self.cross_compiler.removesuffix("-gcc") if self.cross_compiler else "a cross gcc"
            raise CompileError(
                f"exporting {self.name} code needs the {self.arch} cross compiler "
                f"{self.cross_compiler or '(none configured)'}, which is not installed on this "
                f"{host.arch} host: install it (Debian/Ubuntu: apt-get install {pkg})"
            )
        from tvm.support import cc as tvm_cc

        return tvm_cc.cross_compiler(cc)

    def export_library(self, executable, path: str | Path, host: HostInfo | None = None) -> Path:
        """Export a compiled ``tvm.compile`` result to a shared library with the right compiler."""
        path = Path(path)
        fcompile = self.compiler_for(host)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if fcompile is None:
                executable.export_library(str(path))
            else:
                executable.export_library(str(path), fcompile=fcompile)
        except Exception as e:  # noqa: BLE001 - the linker's message is what the user needs
            raise CompileError(f"linking {self.name} library {path} failed: {one_line(e, pick='last')}") from e
        return path


# ------------------------------------------------------------------ loading
def _need(d: dict, key: str, typ, where: str):
    if key not in d:
        raise ValueError(f"target profile {where} lacks '{key}'")
    v = d[key]
    if not isinstance(v, typ):
        raise ValueError(f"target profile {where}: '{key}' should be {typ}, not {type(v).__name__}")
    return v


def _scheme(name: str | None, where: str) -> str | None:
    if name is not None and name not in INT8_SCHEMES:
        raise ValueError(f"target profile {where}: int8 scheme '{name}' is not one of {', '.join(INT8_SCHEMES)}")
    return name


def load_profile_file(path: str | Path, text: str | None = None) -> TargetProfile:
    """Parse and validate one profile TOML file (ValueError naming the file on a bad one)."""
    where = Path(path).name
    data = tomllib.loads(text) if text is not None else tomllib.loads(Path(path).read_text())
    llvm = _need(data, "llvm", dict, where)
    hostd = _need(data, "host", dict, where)
    int8 = _need(data, "int8", dict, where)
    lay = _need(data, "layout", dict, where)
    arch = _need(data, "arch", str, where)
    if arch not in ARCHES:
        raise ValueError(f"target profile {where}: arch '{arch}' is not one of {', '.join(ARCHES)}")
    data_layout = _need(lay, "data_layout", str, where)
    if data_layout not in DATA_LAYOUTS:
        raise ValueError(f"target profile {where}: data_layout '{data_layout}' is not one of "
                         f"{', '.join(DATA_LAYOUTS)}")
    block = int(lay.get("block", 0))
    if data_layout == "NCHWc" and block not in (4, 8, 16, 32, 64):
        raise ValueError(f"target profile {where}: NCHWc needs block = 4, 8, 16, 32 or 64")
    threads = _need(data, "default_threads", int, where)
    if threads < 1:
        raise ValueError(f"target profile {where}: default_threads must be at least 1")
    return TargetProfile(
        name=_need(data, "name", str, where),
        aliases=tuple(data.get("aliases", [])),
        description=_need(data, "description", str, where),
        arch=arch,
        vendor=data.get("vendor", "generic"),
        mtriple=_need(llvm, "mtriple", str, where),
        mcpu=_need(llvm, "mcpu", str, where),
        mattr=tuple(llvm.get("mattr", [])),
        host_flags=tuple(_need(hostd, "flags", list, where)),
        int8_instruction=_need(int8, "instruction", str, where),
        int8_isa=int8.get("isa", ""),
        tensor_intrin=int8.get("tensor_intrin") or None,
        int8_scheme=_scheme(int8.get("scheme") or None, where),
        data_layout=data_layout,
        layout_block=block if data_layout == "NCHWc" else 0,
        winograd=bool(lay.get("winograd", False)),
        default_threads=threads,
        cross_compiler=data.get("cross_compiler", ""),
        arm_cpu_part=(data.get("arm_cpu_part") or None),
        source=str(path),
    )


@functools.lru_cache(maxsize=1)
def _registry() -> tuple[dict[str, TargetProfile], dict[str, str]]:
    profiles: dict[str, TargetProfile] = {}
    names: dict[str, str] = {}
    folder = resources.files("tvmq.targets") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        prof = load_profile_file(entry.name, entry.read_text())
        if prof.name in profiles:
            raise ValueError(f"two target profiles are named {prof.name}")
        profiles[prof.name] = prof
        for n in prof.all_names:
            key = n.lower()
            if key in names and names[key] != prof.name:
                raise ValueError(f"target name {n} is used by both {names[key]} and {prof.name}")
            names[key] = prof.name
    return profiles, names


def list_profiles() -> list[TargetProfile]:
    """All profiles: x86_64 first, then aarch64, each in file-name order."""
    profiles, _ = _registry()
    return sorted(profiles.values(), key=lambda p: (ARCHES.index(p.arch), p.name))


def get_profile(name: str) -> TargetProfile:
    """The profile called ``name`` (or one of its aliases, any case); UnknownTarget otherwise."""
    profiles, names = _registry()
    key = (name or "").strip().lower()
    if key in names:
        return profiles[names[key]]
    known = ", ".join(p.name for p in list_profiles())
    raise UnknownTarget(f"unknown target '{name}': known targets are native, {known}")


def with_threads(profile: TargetProfile, num_cores: int | None) -> TargetProfile:
    if not num_cores:
        return profile
    if int(num_cores) < 1:
        raise UnknownTarget(f"--num-cores must be at least 1, not {num_cores}")
    return dataclasses.replace(profile, default_threads=int(num_cores))
