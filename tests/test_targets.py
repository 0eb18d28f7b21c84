"""Target profiles: loading, names, LLVM acceptance, host detection, runnability, export."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tvmq.errors import CompileError, MissingISA, UnknownTarget
from tvmq.targets import (
    TargetProfile,
    detect_native,
    get_profile,
    host_info,
    list_profiles,
    load_profile_file,
    render_targets_table,
    resolve_target,
)
from tvmq.targets.host import host_from_cpuinfo

REQUIRED = {
    "cascadelake", "skylake-avx512", "icelake-server", "sapphirerapids", "znver3", "znver4",
    "haswell", "x86-64", "cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1", "neoverse-v1",
}

# /proc/cpuinfo first blocks of real machines (flags trimmed to what matters, in kernel order).
ZEN3 = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model		: 1
model name	: AMD EPYC 7B13
flags		: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand bmi1 avx2 bmi2 sha_ni vaes vpclmulqdq rdpid

processor	: 1
"""
ZEN2 = ZEN3.replace("AMD EPYC 7B13", "AMD EPYC 7B12").replace(" vaes vpclmulqdq", "")
CASCADELAKE = """vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags		: sse2 avx f16c fma movbe bmi1 avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""
SKYLAKE = CASCADELAKE.replace(" avx512_vnni", "").replace("8259CL", "8175M")
NEOVERSE_N1 = """processor	: 0
BogoMIPS	: 243.75
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
"""


def fake_host(text: str, arch: str = "x86_64", cores: int = 4):
    return host_from_cpuinfo(text, arch=arch, physical_cores=cores, logical_cores=cores)


# ------------------------------------------------------------------ profiles as data
def test_every_required_profile_exists_with_complete_fields():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for p in profiles.values():
        assert isinstance(p, TargetProfile)
        assert p.arch in ("x86_64", "aarch64") and p.mtriple.startswith(p.arch)
        assert p.host_flags and p.int8_instruction and p.description and p.default_threads >= 1
        assert p.data_layout in ("NHWC", "NCHW", "NCHWc")
        assert (p.layout_block > 0) == (p.data_layout == "NCHWc")
        if p.arch == "aarch64":
            assert p.cross_compiler == "aarch64-linux-gnu-gcc"


@pytest.mark.parametrize(
    "name, instr, intrin, flags",
    [
        ("cascadelake", "vpdpbusd", "dot_16x4_vnni", {"avx512f", "avx512bw", "avx512_vnni"}),
        ("skylake-avx512", "vpmaddubsw", "dot_16x4_avx512", {"avx512f", "avx512bw"}),
        ("haswell", "vpmaddubsw", None, {"avx2"}),
        ("znver3", "vpmaddubsw", None, {"avx2"}),
        ("znver4", "vpdpbusd", "dot_16x4_vnni", {"avx512_vnni"}),
        ("cortex-a76", "sdot", "dot_4x4_i8i8s32_sdot", {"asimddp"}),
        ("neoverse-n1", "sdot", "dot_4x4_i8i8s32_sdot", {"asimddp"}),
        ("neoverse-v1", "smmla", None, {"i8mm", "sve"}),
    ],
)
def test_int8_instruction_and_flags(name, instr, intrin, flags):
    p = get_profile(name)
    assert p.int8_instruction == instr
    assert p.tensor_intrin == intrin
    assert flags <= set(p.host_flags)


def test_vnni_flag_only_on_vnni_profiles():
    # amx: pointwise layers on AMX tiles, every other layer on VNNI, so both sets of flags
    for p in list_profiles():
        assert ("avx512_vnni" in p.host_flags) == (p.int8_scheme in ("vnni", "amx")), p.name
        assert ("amx_int8" in p.host_flags) == (p.int8_scheme == "amx"), p.name
        assert (p.int8_instruction == "vpdpbusd") == (p.int8_scheme == "vnni"), p.name


def test_layout_choices():
    assert get_profile("cortex-a72").layout == "NCHW4c"
    assert get_profile("cascadelake").layout == "NHWC"  # measured: blocked layouts lose here
    assert get_profile("haswell").layout == "NCHW8c"
    assert get_profile("znver3").layout == "NHWC"  # measured: see scripts/bench_layouts.py
    assert get_profile("cortex-a53").winograd and not get_profile("cascadelake").winograd


def test_tensor_intrinsics_are_registered_in_tvm():
    import tvm.s_tir.tensor_intrin  # noqa: F401 - registers them
    from tvm.s_tir import TensorIntrin

    for p in list_profiles():
        if p.tensor_intrin:
            assert TensorIntrin.get(p.tensor_intrin) is not None, p.name
    with pytest.raises(Exception):
        TensorIntrin.get("no_such_intrin_xyz")


def test_aliases_and_unknown_names():
    assert get_profile("CLX").name == "cascadelake"
    assert get_profile("zen3").name == "znver3"
    assert get_profile("graviton2").name == "neoverse-n1"
    with pytest.raises(UnknownTarget) as e:
        get_profile("pentium4")
    msg = str(e.value)
    assert "pentium4" in msg and "cascadelake" in msg and "neoverse-v1" in msg and "\n" not in msg


def test_bad_profile_file_is_rejected(tmp_path):
    good = (get_profile("znver3").source)
    from importlib import resources

    text = (resources.files("tvmq.targets") / "profiles" / good).read_text()
    assert load_profile_file("znver3.toml", text).name == "znver3"
    with pytest.raises(ValueError, match="data_layout"):
        load_profile_file("bad.toml", text.replace('data_layout = "NHWC"', 'data_layout = "HWCN"'))
    with pytest.raises(ValueError, match="mcpu"):
        load_profile_file("bad.toml", text.replace('mcpu = "znver3"', ""))


# ------------------------------------------------------------------ TVM / LLVM acceptance
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_llvm_accepts_mcpu_and_mattr_and_builds(name):
    import tvm
    from tvm import te
    from tvm.target import codegen

    p = get_profile(name)
    t = p.tvm_target(3)
    assert t.attrs["num-cores"] == 3 and str(t.attrs["mcpu"]) == p.mcpu
    assert codegen.llvm_is_valid_cpu(p.mcpu, p.mtriple), f"LLVM does not know -mcpu={p.mcpu}"
    feats = set(str(f) for f in codegen.llvm_get_cpu_features(t))
    for attr in p.mattr:
        assert attr.lstrip("+") in feats, f"{name}: LLVM ignored {attr}"
    a = te.placeholder((64,), name="a")
    b = te.compute((64,), lambda i: a[i] * 2.0 + 1.0, name="b")
    tvm.compile(te.create_prim_func([a, b]), target=t)


def test_tvm_sees_arm_features():
    def feats(n):
        t = get_profile(n).tvm_target()
        return {k: bool(t.attrs[k]) for k in t.attrs if str(k).startswith("feature.")}

    assert feats("cortex-a76")["feature.has_dotprod"]
    assert not feats("cortex-a72")["feature.has_dotprod"]
    v1 = feats("neoverse-v1")
    assert v1["feature.has_matmul_i8"] and v1["feature.has_sve"]


# ------------------------------------------------------------------ host detection
def test_parse_cpuinfo_zen3():
    h = fake_host(ZEN3)
    assert h.vendor == "amd" and h.model_name == "AMD EPYC 7B13" and "avx2" in h.flags
    assert "avx512f" not in h.flags


@pytest.mark.parametrize(
    "text, arch, expected",
    [
        (ZEN3, "x86_64", "znver3"),
        (ZEN2, "x86_64", "haswell"),  # no vaes: znver3 code may use it
        (CASCADELAKE, "x86_64", "cascadelake"),
        (SKYLAKE, "x86_64", "skylake-avx512"),
        (NEOVERSE_N1, "aarch64", "neoverse-n1"),
    ],
)
def test_detect_native_picks_closest(text, arch, expected):
    prof, reason = detect_native(fake_host(text, arch), llvm_cpu="")
    assert prof.name == expected
    assert expected in reason and "\n" not in reason
    assert not prof.missing_host_flags(fake_host(text, arch))


def test_detect_native_uses_llvm_name_only_when_runnable():
    zen2 = fake_host(ZEN2)
    prof, _ = detect_native(zen2, llvm_cpu="znver3")  # hypervisor hides vaes: not runnable
    assert prof.name == "haswell"
    prof, reason = detect_native(fake_host(ZEN3), llvm_cpu="znver3")
    assert prof.name == "znver3" and "LLVM calls znver3" in reason


def test_resolve_native_on_this_host():
    prof, reason = resolve_target("native")
    host = host_info()
    assert prof.arch == host.arch and prof.can_run_here
    assert prof.default_threads == host.physical_cores
    assert reason.startswith("native:")
    prof2, _ = resolve_target("native", num_cores=1)
    assert prof2.default_threads == 1 and prof2.tvm_target().attrs["num-cores"] == 1


def test_resolve_named_and_alias():
    prof, reason = resolve_target("zen4", num_cores=6)
    assert prof.name == "znver4" and prof.default_threads == 6 and "alias" in reason
    with pytest.raises(UnknownTarget):
        resolve_target("nonsense")


# ------------------------------------------------------------------ runnability
def test_missing_flags_and_check_runnable_on_zen3():
    zen3 = fake_host(ZEN3)
    clx = get_profile("cascadelake")
    assert clx.missing_host_flags(zen3) == ["avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni"]
    with pytest.raises(MissingISA) as e:
        clx.check_runnable(zen3)
    msg = str(e.value)
    assert msg.startswith("cascadelake code needs avx512f") and "AMD EPYC 7B13" in msg
    assert "--build-only" in msg and "--rpc-tracker" in msg and "\n" not in msg
    assert e.value.missing == clx.missing_host_flags(zen3)
    get_profile("znver3").check_runnable(zen3)  # no error


def test_other_arch_is_never_runnable():
    zen3 = fake_host(ZEN3)
    with pytest.raises(MissingISA, match="aarch64"):
        get_profile("cortex-a76").check_runnable(zen3)
    assert get_profile("cortex-a53").missing_host_flags(fake_host(NEOVERSE_N1, "aarch64")) == []


def test_render_table_lists_every_profile():
    from rich.console import Console

    table = render_targets_table(fake_host(ZEN3))
    assert table.row_count == len(list_profiles())
    assert [c.header for c in table.columns] == [
        "name", "aliases", "arch", "mcpu", "int8 instruction", "--int8 scheme", "layout", "winograd", "runs here?"]
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    assert "NCHW8c" in text and "NCHW4c" in text
    assert re.search(r"znver3 .* avx2 ", text) and re.search(r"cascadelake .* vnni ", text)


# ------------------------------------------------------------------ export
def test_export_without_cross_compiler_is_a_clear_error(monkeypatch, tmp_path):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    prof = get_profile("cortex-a76")
    with pytest.raises(CompileError) as e:
        prof.export_library(object(), tmp_path / "m.so", host=fake_host(ZEN3))
    assert "aarch64-linux-gnu-gcc" in str(e.value) and "apt-get install gcc-aarch64-linux-gnu" in str(e.value)


def test_export_native_and_load(tmp_path):
    import numpy as np
    import tvm
    from tvm import te

    prof = get_profile("x86-64") if host_info().arch == "x86_64" else get_profile("cortex-a53")
    a = te.placeholder((8,), name="a")
    b = te.compute((8,), lambda i: a[i] + 1.0, name="b")
    lib = tvm.compile(te.create_prim_func([a, b]), target=prof.tvm_target(1))
    path = prof.export_library(lib, tmp_path / "m.so")
    loaded = tvm.runtime.load_module(str(path))
    x = tvm.runtime.tensor(np.arange(8, dtype="float32"))
    y = tvm.runtime.tensor(np.zeros(8, dtype="float32"))
    loaded["main"](x, y)
    assert np.allclose(y.numpy(), np.arange(8) + 1)


def test_profiles_are_frozen():
    p = get_profile("znver3")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.mcpu = "haswell"  # type: ignore[misc]
