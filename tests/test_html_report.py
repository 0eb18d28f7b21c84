"""The HTML pages (tvmq.report.html, tvmq.report.plots): a run's page and a release's matrix, read
as markup and opened from file:// in a real headless browser (Debian's chromium driven by
Playwright; never a downloaded browser), on reports tvmq-tune really wrote."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from tvmq.report import plots
from tvmq.report.html import run_page, write_run_page
from tvmq.report.html_release import release_index, write_release_pages

from tests.cli_helpers import load_json
from tvmq.errors import OutputError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = '<script>alert("x")</script>'


class Markup(HTMLParser):
    """Every start tag with its attributes, and the text of each matrix cell and plot."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[dict] = []  # attributes of each td.cell, with its text under "text"
        self._open: list[tuple[str, dict | None]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag in ("br", "meta", "img", "input"):
            return
        collect = tag == "td" and "cell" in a.get("class", "").split()
        if collect:
            a["text"] = ""
            self.cells.append(a)
        self._open.append((tag, a if collect else None))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, collected in self._open:
            if collected is not None:
                collected["text"] += data

    def having(self, attr: str) -> list[dict]:
        return [a for _, a in self.tags if attr in a]


def _pair(model: str, target: str, verdict: str, **extra) -> dict:
    name = "hostile" if model == HOSTILE else model
    slug = extra.pop("slug", f"{name}--{target}")
    return {"slug": slug, "model": model, "target": target, "profile": target, "mode": "local", "verdict": verdict,
            "error": None, "latency_ms": None, "ratio_tvm_over_tflite": None, "ratio_ci95": None,
            "comparison": None, "speedup_tuned_over_untuned": None, "tuning": None, "artifact": None,
            "instruction": None, "report": None, "page": f"pairs/{slug}.html", "change": None,
            "change_detail": None, "baseline": None, **extra}


def _summary(pairs: list[dict]) -> dict:
    return {"tvmq_release": 1, "created": "2026-12-03T12:00:00+0000", "plan": "plan.toml",
            "db": "sqlite:///release.db", "host": {"cpu": "AMD EPYC", "cores": 2, "arch": "x86_64"},
            "baseline": "old/summary.json", "exit_status": 1,
            "worst": "fail" if any(p["verdict"] == "fail" for p in pairs) else "ok", "pairs": pairs}


def _matrix_pairs() -> list[dict]:
    return [
        _pair("mobilenet", "znver4", "pass", ratio_tvm_over_tflite=0.78, ratio_ci95=[0.74, 0.81],
              comparison="faster", change="faster", change_detail="0.91x -> 0.78x"),
        _pair("mobilenet", "cascadelake", "built", mode="build-only", change="same",
              instruction={"expected": "vpdpbusd", "found": True}),
        _pair("mobilenet", "cortex-a76", "refused", error="cortex-a76: this host lacks asimddp", change="status"),
        _pair(HOSTILE, "znver4", "fail", error='"><img src=x onerror=alert(1)> & more', change="new"),
    ]


# ---- markup, no browser ---------------------------------------------------------------------------

def test_matrix_cells_carry_each_pair():
    page = Markup(release_index(_summary(_matrix_pairs())))
    cells = {(c["data-model"], c["data-target"]): c for c in page.cells}
    assert len(cells) == 4 and len([a for t, a in page.tags if t == "td" and a.get("class") == "empty"]) == 2
    fast = cells[("mobilenet", "znver4")]
    assert (fast["data-verdict"], fast["data-change"]) == ("pass", "faster")
    assert "0.78x (95% CI 0.74–0.81x)" in fast["text"] and "▲" in fast["text"]
    assert "background:#2da44e" in fast["style"]  # pass is green
    assert cells[("mobilenet", "cascadelake")]["data-verdict"] == "built"
    assert "background:#1f6feb" in cells[("mobilenet", "cascadelake")]["style"]  # built is blue
    assert cells[("mobilenet", "cortex-a76")]["data-change"] == "status"
    assert "ratio not measured" in cells[("mobilenet", "cortex-a76")]["text"]
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert "pairs/mobilenet--znver4.html" in links
    failures = {a["data-slug"] for t, a in page.tags if t == "li" and "data-slug" in a}
    assert failures == {"mobilenet--cortex-a76", "hostile--znver4"}


def test_a_target_run_in_two_modes_gets_two_columns():
    pairs = [_pair("m", "cascadelake", "built", mode="build-only", slug="a"),
             _pair("m", "cascadelake", "pass", mode="rpc", slug="b")]
    page = Markup(release_index(_summary(pairs)))
    assert sorted(c["data-mode"] for c in page.cells) == ["build-only", "rpc"]
    assert {a["data-column"] for a in page.having("data-column")} == {"cascadelake (build-only)", "cascadelake (rpc)"}


def test_strings_from_the_data_are_escaped():
    text = release_index(_summary(_matrix_pairs()))
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;" in text
    page = Markup(text)
    assert not [t for t, _ in page.tags if t in ("script", "img")]
    assert any(c["data-model"] == HOSTILE for c in page.cells)  # the attribute holds the name as given
    report = {"model": {"name": HOSTILE, "source": HOSTILE}, "target": {"name": "t"}, "verdict": "fail",
              "images": [{"image": HOSTILE, "tvm_top5": [{"class": 1, "score": 2, "label": HOSTILE}], "passed": False}],
              "verification": {"reference": HOSTILE, "failures": [HOSTILE]},
              "partition": {"why": [HOSTILE], "parts": [{"engine": "tflite", "operators": {HOSTILE: 1}}],
                            "not_computed": [HOSTILE], "dropped": HOSTILE}}
    one = run_page(report, back_link='"><script>x</script>')
    assert "<script" not in one and not [t for t, _ in Markup(one).tags if t == "script"]


def test_missing_data_says_not_measured():
    text = run_page({"model": {"name": "m"}, "target": {"name": "cortex-a76"}, "verdict": "built"})
    plots_ = {a["data-plot"]: a["data-measured"] for a in Markup(text).having("data-plot")}
    assert plots_ == {"latency": "false", "tuning-curve": "false", "task-bars": "false"}
    assert text.count("not measured") >= 3 and "<svg" not in text
    assert "The whole model runs in TVM" in text and "not verified" in text
    empty = Markup(release_index({"pairs": []}))
    assert not empty.cells and "no pairs" in release_index({})


def test_plots_return_none_without_data_and_svg_with_it():
    assert plots.tuning_curve(None) is None and plots.tuning_curve([{"trials": 0, "estimated_ms": None}]) is None
    assert plots.task_bars([{"name": "t", "weight": 3, "untuned_ms": None, "tuned_ms": None}]) is None
    assert plots.latency_comparison({}) is None and plots.latency_comparison({"tvm": {"runs": 0}}) is None
    timed = plots.tuning_curve([{"trials": 0, "estimated_ms": 2.0, "elapsed_s": 3},
                                {"trials": 8, "estimated_ms": 1.0, "elapsed_s": 90}])
    untimed = plots.tuning_curve([{"trials": 0, "estimated_ms": 2.0}, {"trials": 8, "estimated_ms": 1.0}])
    assert timed.startswith("<svg") and "wall-clock minutes" in timed and "2 ms → 1 ms (2.00x)" in timed
    assert "wall-clock" not in untimed and ">trials<" in untimed
    bars = plots.engine_bars({"tvm": {"median": 3.1, "ci95": [3.0, 3.2], "min": 1, "max": 9},
                              "tflite": {"median": 4.0, "min": 3.5, "max": 4.5}, "tvm_untuned": {"runs": 0}})
    assert [(b.label, b.low, b.high, b.interval) for b in bars] == [
        ("tvmq", 3.0, 3.2, "95% CI"), ("TFLite", 3.5, 4.5, "min-max")]


def test_anchored_curve_ends_at_the_measured_latency():
    """Without a complete estimate, the curve is the measured latency plus what each searched task
    still had over its final best: task 0 (weight 2) goes 5 -> 4 -> 3 ms, task 1 (weight 1) 2 -> 1."""
    tasks = [{"index": 0, "weight": 2, "first_round_ms": 5.0}, {"index": 1, "weight": 1, "first_round_ms": 2.0},
             {"index": 2, "weight": 9, "first_round_ms": None}]  # never searched: no part in the curve
    curve = [{"trials": 16, "elapsed_s": 10, "estimated_ms": None, "task": 0, "best_ms": 4.0},
             {"trials": 32, "elapsed_s": 20, "estimated_ms": None, "task": 1, "best_ms": 1.0},
             {"trials": 48, "elapsed_s": 30, "estimated_ms": None, "task": 0, "best_ms": 3.0}]
    points = plots.anchored_curve(curve, tasks, measured_ms=10.0)
    assert [p["elapsed_s"] for p in points] == [0.0, 10, 20, 30]
    # start: 10 + 2*(5-3) + 1*(2-1) = 15; then 10 + 2*(4-3) + 1 = 13; 10 + 2 + 0 = 12; 10
    assert [p["estimated_ms"] for p in points] == [15.0, 13.0, 12.0, 10.0]
    assert plots.anchored_curve(curve, tasks, None) == [] and plots.anchored_curve([], tasks, 1.0) == []
    old = [{"trials": 16, "estimated_ms": None, "elapsed_s": 3}]  # a report from before the points named their task
    assert plots.anchored_curve(old, tasks, 1.0) == [] and plots.tuning_curve(old, tasks, 1.0) is None
    svg = plots.tuning_curve(curve, tasks, 10.0)
    assert svg.startswith("<svg") and "15 ms → 10 ms (1.50x)" in svg


def test_costliest_tasks_weigh_latency_by_calls():
    tasks = [{"name": "cheap", "weight": 1, "untuned_ms": 1.0, "tuned_ms": 0.5},
             {"name": "often", "weight": 10, "untuned_ms": 0.5, "tuned_ms": None, "db_best_ms": 0.2},
             {"name": "never measured", "weight": 50},
             {"name": "big", "weight": 1, "untuned_ms": 3.0, "tuned_ms": 1.0}]
    top = plots.costliest_tasks(tasks, top=2)
    assert [(t.name, t.untuned_ms, t.tuned_ms) for t in top] == [("often", 5.0, 2.0), ("big", 3.0, 1.0)]
    svg = plots.task_bars(tasks)
    assert "often" in svg and "never measured" not in svg


def test_placement_lists_the_parts_by_engine():
    report = {"model": {"name": "m"}, "target": {"name": "t"},
              "partition": {"why": ["CUSTOM:TFLite_Detection_PostProcess"], "tvm_mac_share": 0.987,
                            "parts": [{"engine": "tvm", "operators": {"CONV_2D": 3}, "macs": 900},
                                      {"engine": "tflite", "operators": {"CUSTOM:TFLite_Detection_PostProcess": 1},
                                       "macs": 0}],
                            "not_computed": []}}
    page = run_page(report)
    rows = {a["data-engine"] for a in Markup(page).having("data-engine")}
    assert rows == {"tvm", "tflite"} and "whole model runs in TVM" not in page
    assert "98.7%" in page and "TFLite_Detection_PostProcess×1" in page


def test_release_pages_from_reports_and_errors(tmp_path):
    report = {"model": {"name": "m"}, "target": {"name": "znver4"}, "verdict": "pass",
              "latency_ms": {"tvm": {"median": 1.0, "min": 0.9, "max": 1.2}, "tflite": {"median": 2.0}}}
    (tmp_path / "pairs" / "m--znver4").mkdir(parents=True)
    (tmp_path / "pairs" / "m--znver4" / "report.json").write_text(json.dumps(report))
    (tmp_path / "pairs" / "m--bad").mkdir()
    (tmp_path / "pairs" / "m--bad" / "report.json").write_text("{cut")
    pairs = [_pair("m", "znver4", "pass", report="pairs/m--znver4/report.json"),
             _pair("m", "cortex-a76", "error", error="the build failed: <oops>"),
             _pair("m", "bad", "pass", report="pairs/m--bad/report.json")]
    written = write_release_pages(_summary(pairs), tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "index.html", "pairs/m--znver4.html", "pairs/m--cortex-a76.html", "pairs/m--bad.html"]
    good = (tmp_path / "pairs" / "m--znver4.html").read_text()
    assert 'href="../index.html"' in good and 'data-plot="latency" data-measured="true"' in good
    assert "the build failed: &lt;oops&gt;" in (tmp_path / "pairs" / "m--cortex-a76.html").read_text()
    assert "unreadable" in (tmp_path / "pairs" / "m--bad.html").read_text()
    with pytest.raises(OutputError, match="not a path inside"):
        write_release_pages(_summary([_pair("m", "x", "pass", page="../../outside.html")]), tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_run_page(report, tmp_path / "file" / "report.html")


# ---- real runs ------------------------------------------------------------------------------------

def _tune(model: Path, out: Path, db: Path, trials: int) -> tuple[dict, str]:
    """tvmq-tune in-process (capsys is function-scoped); its report and what it printed."""
    from tvmq.cli.tune import main

    printed = io.StringIO()
    with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
        try:
            main(["--model", str(model), "--db", str(db), "--out", str(out), "--trials", str(trials),
                  "--repeat", "3"])
            rc = 0
        except SystemExit as exc:
            rc = exc.code
    assert rc == 0, printed.getvalue()[-3000:]
    return load_json(out / "report.json"), printed.getvalue()


@pytest.fixture(scope="module")
def untuned_run(tmp_path_factory, model_factory):
    """A real tvmq-tune run (no trials) whose output folder is a release's pair folder."""
    root = tmp_path_factory.mktemp("release")
    out = root / "pairs" / "small--native"
    report, printed = _tune(model_factory.path("uint8"), out, root / "t.db", 0)
    return {"root": root, "out": out, "report": report, "printed": printed}


def test_tvmq_tune_writes_report_html(untuned_run):
    page = untuned_run["out"] / "report.html"
    assert "report.html" in "".join(untuned_run["printed"].split())  # named in the "report:" line
    markup = Markup(page.read_text())
    assert [a["data-verdict"] for a in markup.having("data-verdict")] == ["pass"]
    measured = {a["data-plot"]: a["data-measured"] for a in markup.having("data-plot")}
    assert measured["latency"] == "true" and measured["tuning-curve"] == "false"  # --trials 0: no curve


def _as_tuned(report: dict) -> dict:
    """A real report given what a tuned run adds (a timed curve, per-task latencies) and the
    benchmark's confidence intervals: the shape of a tuned report without minutes of tuning."""
    r = copy.deepcopy(report)
    tasks = r["tuning"]["tasks"]
    for i, t in enumerate(tasks):
        t["untuned_ms"] = 0.004 * (len(tasks) - i)
        t["tuned_ms"] = t["untuned_ms"] / 3 if i < 3 else None
    r["tuning"].update(trials=24, curve=[{"trials": n, "estimated_ms": 0.1 / (1 + n / 8), "elapsed_s": 4 + 2.5 * n}
                                         for n in (0, 8, 16, 24)])
    lat = r["latency_ms"]
    for engine in ("tvm", "tflite"):
        lat[engine]["ci95"] = [lat[engine]["median"] * 0.95, lat[engine]["median"] * 1.05]
    ratio = lat["ratio_tvm_over_tflite"]
    lat.update(ratio_ci95=[ratio * 0.9, ratio * 1.1], comparison="faster" if ratio < 0.9 else "indistinguishable")
    return r


def _release_around(root: Path, real: dict, tuned_like: dict) -> dict:
    """A release summary of two models x four targets (five pairs) around real reports written in ``root``."""
    (root / "pairs" / "small--znver4").mkdir(parents=True, exist_ok=True)
    (root / "pairs" / "small--znver4" / "report.json").write_text(json.dumps(tuned_like))
    lat = tuned_like["latency_ms"]
    return _summary([
        _pair("small", "znver4", "pass", report="pairs/small--znver4/report.json", change="faster",
              ratio_tvm_over_tflite=lat["ratio_tvm_over_tflite"], ratio_ci95=lat["ratio_ci95"],
              comparison=lat["comparison"], latency_ms={k: lat[k] for k in ("tvm", "tflite")}),
        _pair("small", "cascadelake", "built", mode="build-only", change="same"),
        _pair("small", "cortex-a76", "refused", error="cortex-a76 needs asimddp; this host lacks it", change="status"),
        _pair(HOSTILE, "native", "fail", report="pairs/small--native/report.json", change="new",
              ratio_tvm_over_tflite=real["latency_ms"]["ratio_tvm_over_tflite"]),
        _pair(HOSTILE, "cascadelake", "error", mode="build-only", error="the build failed: <b>boom</b>",
              change="slower"),
    ])


@contextlib.contextmanager
def _browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium for the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url))
            yield page, fetched
        finally:
            browser.close()


_PLOTS_JS = """() => [...document.querySelectorAll('[data-plot]')].map(el => {
  const svg = el.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const drawn = svg ? [...svg.querySelectorAll('path')].filter(p => {
      const b = p.getBBox(); return (p.getAttribute('d') || '').length > 0 && (b.width > 0 || b.height > 0); }).length : 0;
  return {plot: el.dataset.plot, measured: el.dataset.measured, width: box.width, height: box.height, drawn};
})"""


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    keep = os.environ.get("TVMQ_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def _assert_plots_drawn(page, expected: set[str]) -> None:
    drawn = page.evaluate(_PLOTS_JS)
    assert {d["plot"] for d in drawn} == expected
    for d in drawn:
        assert d["measured"] == "true" and d["width"] > 100 and d["height"] > 50 and d["drawn"] > 3, d


def test_release_pages_in_a_browser(untuned_run, tmp_path):
    root = untuned_run["root"]
    summary = _release_around(root, untuned_run["report"], _as_tuned(untuned_run["report"]))
    write_release_pages(summary, root)
    with _browser() as (page, fetched):
        page.goto((root / "index.html").as_uri())
        cells = page.eval_on_selector_all(
            "td.cell", "els => els.map(e => [e.dataset.model, e.dataset.target, e.dataset.verdict, e.dataset.change])")
        assert len(cells) == 5 and page.locator("td.empty").count() == 3
        assert sorted(c[2] for c in cells) == ["built", "error", "fail", "pass", "refused"]
        assert [c[0] for c in cells if c[2] == "fail"] == [HOSTILE]
        assert page.locator('td.cell[data-change="faster"] .mark').inner_text() == "▲"
        assert page.locator("script").count() == 0 and page.locator("ul.failures li").count() == 3
        _screenshot(page, tmp_path / "index.png")

        page.locator('td.cell[data-model="small"][data-target="znver4"] a').click()
        assert page.url.endswith("pairs/small--znver4.html")
        assert page.locator('.badge[data-verdict="pass"]').count() == 1
        _assert_plots_drawn(page, {"latency", "tuning-curve", "task-bars"})
        _screenshot(page, tmp_path / "pair.png")

        page.goto((root / "pairs" / "hostile--native.html").as_uri())  # the real report, untuned
        measured = {d["plot"]: d["measured"] for d in page.evaluate(_PLOTS_JS)}
        assert measured == {"latency": "true", "tuning-curve": "false", "task-bars": "false"}
        page.goto((root / "pairs" / "hostile--cascadelake.html").as_uri())
        assert "the build failed: <b>boom</b>" in page.locator(".error").inner_text()
        page.locator("nav a").click()
        assert page.url.endswith("/index.html")
    assert all(url.startswith("file://") for url in fetched), [u for u in fetched if not u.startswith("file://")]


@pytest.mark.slow
def test_a_really_tuned_run_in_a_browser(tmp_path, model_factory):
    """16 real trials (one to two minutes on a 2-core host): the curve's points carry their time, and every
    plot of the page tvmq-tune wrote is drawn."""
    report, _ = _tune(model_factory.path("uint8"), tmp_path / "out", tmp_path / "t.db", 16)
    curve = report["tuning"]["curve"]
    elapsed = [p["elapsed_s"] for p in curve]
    assert len(curve) >= 1 and elapsed == sorted(elapsed) and elapsed[0] >= 0
    assert all(isinstance(p["task"], int) and p["best_ms"] > 0 for p in curve)
    with _browser() as (page, _):
        page.goto((tmp_path / "out" / "report.html").as_uri())
        _assert_plots_drawn(page, {"latency", "tuning-curve", "task-bars"})
        assert "wall-clock minutes" in page.locator('[data-plot="tuning-curve"]').inner_text()
        _screenshot(page, tmp_path / "tuned.png")
