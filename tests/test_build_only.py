"""--build-only: cross-build and export for a CPU this host may not run, without measuring."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.cli_helpers import load_json, run_tune

EM_X86_64, EM_AARCH64 = 62, 183


def _elf_machine(path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return int.from_bytes(head[18:20], "little")


def test_cascadelake_build_only(capsys, tmp_path, model_factory):
    out = tmp_path / "o"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--target", "cascadelake",
                                "--build-only", "--out", str(out), "--json", str(tmp_path / "r.json"),
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(tmp_path / "r.json")
    assert r["verdict"] == "built" and r["images"] == [] and r["latency_ms"] == {}
    assert r["target"]["tvm_target"]["mcpu"] == "cascadelake" and r["target"]["threads"] >= 1
    lib = out / "model.so"
    assert _elf_machine(lib) == EM_X86_64
    if shutil.which("objdump"):
        asm = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True).stdout
        assert "zmm" in asm, "the cascadelake build uses AVX-512 registers"


def test_arm_build_only_is_an_aarch64_library(capsys, tmp_path, model_factory):
    if not shutil.which("aarch64-linux-gnu-gcc"):
        pytest.skip("aarch64 cross compiler absent (apt-get install gcc-aarch64-linux-gnu)")
    out = tmp_path / "o"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--target", "cortex-a76",
                                "--build-only", "--out", str(out), "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    assert _elf_machine(out / "model.so") == EM_AARCH64


def test_build_only_refuses_trials(capsys, tmp_path, model_factory):
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--target", "cascadelake",
                                "--build-only", "--trials", "10", "--db", str(tmp_path / "t.db")])
    assert rc == 2 and "tvmq-tune: usage:" in err and "Traceback" not in err


@pytest.mark.parametrize("target,objdump,pattern", [
    ("cascadelake", "objdump", r"\bvpdpbusd\b.*%zmm"),
    ("cortex-a76", "aarch64-linux-gnu-objdump", r"\bsdot\s+v\d+\.4s"),
])
def test_int8_build_only_uses_the_dot_product_instruction(capsys, tmp_path, model_factory, target, objdump, pattern):
    """--int8 --build-only: nothing can be measured, so the functions the database lacks get
    MetaSchedule's first design-space point, which tensorizes the convolutions with the
    profile's dot-product intrinsic: the exported library holds the instruction."""
    import re

    if not shutil.which(objdump) or (target == "cortex-a76" and not shutil.which("aarch64-linux-gnu-gcc")):
        pytest.skip(f"{objdump} (and the cross gcc) absent: apt-get install binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu")
    out = tmp_path / "o"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("int8")), "--target", target, "--int8",
                                "--build-only", "--out", str(out), "--json", str(tmp_path / "r.json"),
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(tmp_path / "r.json")
    used = r["transforms"]["int8_intrinsics"]
    assert used and all(k.startswith(("tvmq_dot_", "tvmq_dwdot_")) for k in used), used
    asm = subprocess.run([objdump, "-d", str(out / "model.so")], capture_output=True, text=True).stdout
    assert re.search(pattern, asm), f"no {pattern} in the {target} library"


@pytest.mark.parametrize("target,objdump,pattern,intrin", [
    ("cascadelake", "objdump", r"\bvpdpbusd\b.*%zmm", "tvmq_dwdot_vnni"),
    ("cortex-a76", "aarch64-linux-gnu-objdump", r"\bsdot\s+v\d+\.4s", "tvmq_dwdot_sdot"),
])
def test_cross_built_depthwise_kernels_use_the_dot_instruction(capsys, tmp_path, target, objdump, pattern, intrin):
    """The built-in model cross-built: each depthwise convolution (3x3, 16k channels, strides 1 and
    2) is the packed-taps kernel, and its function in the library holds the target's dot
    instruction (``vpdpbusd`` on zmm, ``sdot``)."""
    import re

    if not shutil.which(objdump) or (target == "cortex-a76" and not shutil.which("aarch64-linux-gnu-gcc")):
        pytest.skip(f"{objdump} (and the cross gcc) absent: apt-get install binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu")
    out = tmp_path / "o"
    rc, err = run_tune(capsys, ["--target", target, "--build-only", "--out", str(out), "--json", str(tmp_path / "r.json"),
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    assert load_json(tmp_path / "r.json")["transforms"]["int8_intrinsics"].get(intrin, 0) == 17
    asm = subprocess.run([objdump, "-d", str(out / "model.so")], capture_output=True, text=True).stdout
    bodies = re.split(r"\n(?=[0-9a-f]+ <)", asm)
    depthwise = {b.split(">", 1)[0]: b for b in bodies if "depthwise" in b.split(">", 1)[0]}
    with_dot = [name for name, body in depthwise.items() if re.search(pattern, body)]
    kernels = {name for name in depthwise if name.endswith("_compute_")}  # (not the calling wrappers)
    assert len(kernels) >= 8 and set(with_dot) == kernels, sorted(depthwise)
