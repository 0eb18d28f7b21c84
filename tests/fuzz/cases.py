"""The scripted cases of issue 15, one :class:`~tests.fuzz.cli.CliCase` each: output paths, option
values, database URLs, hostile files and servers, planted secrets (``tune:`` and ``db:``), and
edited, truncated and swapped builds (``run:``). ``full`` adds the slower variants.

Every case expects a clean error unless it says otherwise; a case that may go either way (an
edited field tvmq-run does not need) accepts a verdict too.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.fuzz.cli import CliCase
from tests.fuzz.outcomes import CLEAN, VERDICT
from tests.fuzz.server import FuzzServer
from tests.fuzz.workspace import MARKER_ENV, Workspace

EITHER = frozenset({CLEAN, VERDICT})
VERDICT_ONLY = frozenset({VERDICT})
RUN_S = 300.0  # a case that a defect lets run a whole (small) build before it fails
QUICK_S = 60.0  # a case that must end before any work starts
DOWNLOAD_LIMIT_S = 5  # $TVMQ_DOWNLOAD_TIMEOUT of the slow-server cases
IN_PROC = "/proc/tvmq-fuzz/missing"  # a folder nobody can create, root included


def _tune(ws: Workspace, name: str, *args: str, build_only: bool = False, model: Path | None = None,
          db: Path | None = None, deadline_s: float = RUN_S, **kw) -> CliCase:
    """tvmq-tune on the small model (or ``model``) with an output folder of the case's own,
    ``--trials 0 --repeat 1`` (a run, not a search) or ``--build-only``; ``args`` come last."""
    base = ["--model", str(model or ws.model), "--db", str(db or ws.db), "--out", str(ws.out(name))]
    base += ["--build-only"] if build_only else ["--trials", "0", "--repeat", "1", "--bench-seconds", "0"]
    return CliCase(f"tune:{name}", "tvmq-tune", (*base, *args), deadline_s=deadline_s, **kw)


def tune_cases(ws: Workspace, server: FuzzServer, full: bool) -> list[CliCase]:
    s, out = ws.secret, ws.out
    cases = [
        # output paths: checked before any work
        _tune(ws, "--out names a file", "--out", str(ws.afile), build_only=True),
        _tune(ws, "--out under a file", "--out", str(ws.afile / "sub"), build_only=True),
        _tune(ws, "--out cannot be created", "--out", IN_PROC, build_only=True),
        _tune(ws, "--json names a folder", "--json", str(ws.adir), build_only=True),
        _tune(ws, "--json under a file", "--json", str(ws.afile / "r.json"), build_only=True),
        _tune(ws, "--json cannot be created", "--json", IN_PROC + "/r.json", build_only=True),
        # option values: refused as they are parsed
        *(_tune(ws, " ".join(a), *a) for a in (
            ("--repeat", "0"), ("--threads", "-1"), ("--threads", "0"), ("--layout", "BOGUS"),
            ("--layout", "NCHW0c"), ("--trials", "-5"), ("--trials-per-task", "0"), ("--tolerance", "-1"),
            ("--tolerance", "nan"), ("--trials", "abc"), ("--requant", "bogus"), ("--target", ""))),
        # databases: a bad URL is refused before the build, and its password is never shown
        _tune(ws, "--db port is not a number", "--db", f"postgresql://u:{s}@127.0.0.1:notaport/x", secret=s),
        _tune(ws, "--db server refuses", "--db", f"postgresql://u:{s}@127.0.0.1:9/x", secret=s),
        _tune(ws, "--db unknown driver", "--db", "nosuchdriver://x/y"),
        _tune(ws, "--db random bytes", "--db", str(ws.garbage)),
        _tune(ws, "--db is a folder", "--db", str(ws.adir)),
        CliCase("tune:TVMQ_DB psycopg URL", "tvmq-tune", ("--model", str(ws.model), "--trials", "0", "--out",
                                                          str(out("TVMQ_DB psycopg URL"))),
                env={"TVMQ_DB": f"postgresql+psycopg://user:{s}@127.0.0.1:9/db"}, secret=s, deadline_s=RUN_S),
        # hostile inputs
        _tune(ws, "--image 20000x20000 PNG", "--image", str(ws.bomb)),
        _tune(ws, "--model /dev/zero", "--model", "/dev/zero"),
        _tune(ws, "--model a FIFO", "--model", str(ws.fifo), deadline_s=QUICK_S),
        _tune(ws, "--labels /dev/zero", "--labels", "/dev/zero"),
        # downloads: bounded in time and size, and no credential shown or kept
        _tune(ws, "URL trickles a byte at a time", "--model", server.url("/trickle.tflite"),
              env={"TVMQ_DOWNLOAD_TIMEOUT": str(DOWNLOAD_LIMIT_S)}, deadline_s=QUICK_S),
        _tune(ws, "URL promises 100 GiB", "--model", server.url("/huge.tflite"),
              env={"TVMQ_DOWNLOAD_TIMEOUT": str(DOWNLOAD_LIMIT_S)}, deadline_s=QUICK_S),
        _tune(ws, "URL password, dead host", "--model", f"http://user:{s}@127.0.0.1:9/m.tflite",
              secret=s, watch=(ws.cache,)),
        _tune(ws, "URL token, dead host", "--model", f"http://127.0.0.1:9/m.tflite?token={s}",
              secret=s, watch=(ws.cache,)),
        _tune(ws, "URL token, 404", "--model", server.url(f"/missing.tflite?token={s}"), secret=s, watch=(ws.cache,)),
        _tune(ws, "URL password and token, built", "--model",
              server.url(f"/model.tflite?token={s}", userinfo=f"user:{s}"), "--json", str(out("secret-report.json")),
              build_only=True, expect=VERDICT_ONLY, secret=s,
              watch=(ws.cache, out("URL password and token, built"), out("secret-report.json"))),
    ]
    if full:
        cases += [_tune(ws, " ".join(a), *a, expect=EITHER) for a in (
            ("--seed", str(2**70)), ("--tolerance", "inf"), ("--trials-per-task", str(2**40)))]
        if ws.real_model is not None:  # issue 15's example: tvmq's checks pass, LiteRT's refuse
            bad = bytearray(ws.real_model.read_bytes())
            bad[132] ^= 61
            path = ws.root / "mobilenet-132-xor-61.tflite"
            path.write_bytes(bad)
            cases.append(_tune(ws, "LiteRT rejects the model", model=path, deadline_s=600))
    return cases


# ------------------------------------------------------------------------------------- tvmq-db


def db_cases(ws: Workspace, full: bool) -> list[CliCase]:
    """Run after the builds made ``ws.build_db``; a case that writes gets a copy of its own."""
    s = ws.secret

    def db(name: str, *args: str, copy: bool = False, **kw) -> CliCase:
        path = ws.build_db
        if copy:
            path = ws.out(f"db-{name}.db")
            shutil.copyfile(ws.build_db, path)
        return CliCase(f"db:{name}", "tvmq-db", ("--db", str(path), *args), deadline_s=QUICK_S, **kw)

    imports = ws.root / "imports"
    for name, workloads, records in (("random bytes", ws.garbage.read_bytes(), ws.garbage.read_bytes()),
                                     ("cut JSON", b'["abc", {"shash": 1', b'[0, ["tra')):
        folder = imports / name.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "database_workload.json").write_bytes(workloads)
        (folder / "database_tuning_record.json").write_bytes(records)
    cases = [
        CliCase("db:--db port is not a number", "tvmq-db",
                ("--db", f"postgresql://u:{s}@127.0.0.1:notaport/x", "sessions"), secret=s, deadline_s=QUICK_S),
        CliCase("db:--db server refuses", "tvmq-db", ("--db", f"postgresql://u:{s}@127.0.0.1:9/x", "sessions"),
                secret=s, deadline_s=QUICK_S),
        CliCase("db:TVMQ_DB psycopg URL", "tvmq-db", ("sessions",),
                env={"TVMQ_DB": f"postgresql+psycopg://user:{s}@127.0.0.1:9/db"}, secret=s, deadline_s=QUICK_S),
        db("merge a URL with a password", "merge", f"postgresql://user:{s}@127.0.0.1:9/db", copy=True, secret=s),
        CliCase("db:--db random bytes", "tvmq-db", ("--db", str(ws.garbage), "check"), deadline_s=QUICK_S),
        CliCase("db:--db is a folder", "tvmq-db", ("--db", str(ws.adir), "sessions"), deadline_s=QUICK_S),
        CliCase("db:--db a FIFO", "tvmq-db", ("--db", str(ws.fifo), "sessions"), deadline_s=QUICK_S),
        CliCase("db:--db unknown driver", "tvmq-db", ("--db", "nosuchdriver://x/y", "sessions"), deadline_s=QUICK_S),
        db("sessions --limit -1", "sessions", "--limit", "-1", expect=EITHER),
        db("--timeout nan", "--timeout", "nan", "sessions", expect=EITHER),
        db("--timeout -1", "--timeout", "-1", "sessions", expect=EITHER),
        db("prune --keep -1", "prune", "--keep", "-1", copy=True),
        db("export onto a file", "export", str(ws.afile)),
        db("export cannot be created", "export", IN_PROC),
        db("import a missing folder", "import", str(ws.root / "no-such-folder"), copy=True),
        *(db(f"import {f.name.replace('-', ' ')}", "import", str(f), copy=True) for f in sorted(imports.iterdir())),
        db("merge random bytes", "merge", str(ws.garbage), copy=True),
        db("merge a folder", "merge", str(ws.adir), copy=True),
    ]
    if full:
        cases += [db("best --top -1", "best", "--top", "-1"), db("prune --keep 0", "prune", "--keep", "0",
                                                                 copy=True, expect=EITHER)]
    return cases


# ------------------------------------------------------------------------------------ tvmq-run


def artifact_builds(ws: Workspace, full: bool) -> dict[str, tuple[CliCase, Path]]:
    """The builds the ``run:`` cases edit, each with the folder it writes: the small model for this
    host, another model, and (full run) the small model for a CPU whose features this host lacks."""
    wanted = {"small": ("build the small model", ws.model, ()), "other": ("build another model", ws.other_model, ())}
    foreign = foreign_x86_profile()
    if full and foreign:
        wanted["foreign"] = (f"build for {foreign}", ws.model, ("--target", foreign))
    return {key: (_tune(ws, name, *args, build_only=True, model=model, db=ws.build_db, expect=VERDICT_ONLY),
                  ws.out(name))
            for key, (name, model, args) in wanted.items()}


def foreign_x86_profile() -> str | None:
    """An x86-64 profile whose CPU flags this host lacks (its code may not run here), or None."""
    from tvmq.targets import host_info, list_profiles

    if host_info().arch != "x86_64":
        return None
    return next((p.name for p in list_profiles() if p.arch == "x86_64" and p.missing_host_flags()), None)


def _edited(ws: Workspace, src: Path, name: str, meta: Callable[[dict], object] | None = None,
            text: Callable[[str], str] | None = None, lib: Callable[[Path], object] | None = None) -> Path:
    """A copy of the build ``src`` with its model.json (as JSON, or as text) or its library edited."""
    dst = ws.out(name)
    shutil.copytree(src, dst, symlinks=True)
    meta_path = dst / "model.json"
    if meta is not None:
        data = json.loads(meta_path.read_text())
        meta(data)
        meta_path.write_text(json.dumps(data, indent=2))
    if text is not None:
        meta_path.write_text(text(meta_path.read_text()))
    if lib is not None:
        lib(dst / "model.so")
    return dst


def _cut(fraction: float) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(p.read_bytes()[: int(p.stat().st_size * fraction)])


def _flip(at: int, mask: int) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[at % len(data)] ^= mask
        p.write_bytes(bytes(data))

    return apply


def _symlink_to(target: Path) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        p.unlink()
        p.symlink_to(target)

    return apply


FIELD_EDITS, FIELD_EDITS_FULL = 8, 120  # edits of model.json's fields, drawn from all of them
FIELD_VALUES = {"removed": ..., "null": None, "'abc'": "abc", "-1": -1, "[]": [], "{}": {}}


def _set(path: str, value) -> Callable[[dict], None]:
    """Set (``...``: remove) the field at ``path``: keys and list indices joined by dots (``inputs.0.dtype``)."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]

    def apply(meta: dict) -> None:
        for key in parents:
            meta = meta[key]
        if value is ...:
            del meta[last]
        else:
            meta[last] = value

    return apply


def _field_paths(meta, prefix: str = "") -> list[str]:
    """Every field of ``meta``, nested ones included, as :func:`_set` paths."""
    items = meta.items() if isinstance(meta, dict) else enumerate(meta) if isinstance(meta, list) else ()
    paths = []
    for key, value in items:
        path = f"{prefix}{key}"
        paths += [path, *_field_paths(value, path + ".")]
    return paths


def run_cases(ws: Workspace, builds: dict[str, Path], seed: int, full: bool) -> list[CliCase]:
    """tvmq-run on the builds, as exported and edited; a build that failed has no cases."""
    small, other = builds.get("small"), builds.get("other")
    if small is None:
        return []
    rng = random.Random(f"{seed}:run")

    def run(name: str, build: Path, *args: str, **kw) -> CliCase:
        return CliCase(f"run:{name}", "tvmq-run", (str(build), *args), deadline_s=QUICK_S, **kw)

    def edit(name: str, **how) -> CliCase:
        return run(name, _edited(ws, small, name, **how))

    meta = json.loads((small / "model.json").read_text())
    size = (small / "model.so").stat().st_size
    first = meta["inputs"][0]
    cases = [
        run("as exported", small, expect=VERDICT_ONLY),
        run("--image 20000x20000 PNG", small, "--image", str(ws.bomb)),
        run("--threads -1", small, "--threads", "-1"),
        run("--repeat -1", small, "--repeat", "-1"),
        run("--labels /dev/zero", small, "--labels", "/dev/zero"),
        edit("model.so cut in half", lib=_cut(0.5)),
        edit("model.so cut to 0 bytes", lib=_cut(0)),
        edit("input shape changed", meta=lambda m: m["inputs"][0].update(shape=[d * 2 for d in first["shape"]])),
        edit("input dtype changed", meta=lambda m: m["inputs"][0].update(
            dtype="float32" if first["dtype"] != "float32" else "int8")),
        edit("threads 'abc'", meta=_set("threads", "abc")),
        edit("inputs removed", meta=_set("inputs", ...)),
        edit("model.json cut in half", text=lambda t: t[: len(t) // 2]),
        edit("model.json empty", text=lambda t: ""),
        edit("model.json a list", text=lambda t: "[]"),
        *(edit(f"model.so byte {at} flipped", lib=_flip(at, 1 << rng.randrange(8)))
          for at in sorted(rng.sample(range(size), 6 if full else 2))),
    ]
    if other is not None:
        swapped = (other / "model.so").stat().st_size

        def swap(p: Path) -> None:
            shutil.copyfile(other / "model.so", p)

        cases += [edit("another model's model.so", lib=swap),
                  edit("another model's model.so, its size recorded", lib=swap,
                       meta=_set("library_bytes", swapped))]
    if ws.planted is not None:
        for name, how in (("library outside, relative", {"meta": _set("library", "../../planted.so")}),
                          ("library outside, absolute", {"meta": _set("library", str(ws.planted))}),
                          ("model.so links to a planted library", {"lib": _symlink_to(ws.planted)})):
            marker = ws.markers / name.replace(" ", "-").replace(",", "")
            cases.append(CliCase(f"run:{name}", "tvmq-run", (str(_edited(ws, small, name, **how)),),
                                 env={MARKER_ENV: str(marker)}, marker=marker, deadline_s=QUICK_S))
    fields = [(key, label) for key in _field_paths(meta) for label in FIELD_VALUES]
    for key, label in rng.sample(fields, min(len(fields), FIELD_EDITS_FULL if full else FIELD_EDITS)):
        name = f"field {key} {label}"
        cases.append(run(name, _edited(ws, small, name, meta=_set(key, FIELD_VALUES[label])), expect=EITHER))
    if full:
        cases += [edit(f"model.so cut to {n} bytes", lib=lambda p, n=n: p.write_bytes(p.read_bytes()[:n]))
                  for n in (64, 4096)] + [edit("model.so cut at 3/4", lib=_cut(0.75))]
        if "foreign" in builds:
            cases.append(run("built for a CPU with features this host lacks", builds["foreign"]))
    return cases
