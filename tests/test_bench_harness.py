"""Pieces of the benchmark harness that decide what a run reports (no load is generated)."""

from __future__ import annotations

import math

import pytest

from benchmarks import apps, report, run
from benchmarks.loadgen import _wrk_percentile
from benchmarks.scenarios import SCENARIOS, Settings
from benchmarks.system import busy_seconds

WRK_LATENCY = """\
  Latency Distribution
     50%  250.00us
     75%   27.17ms
     90%    1.20s
     99%   54.31ms
"""


def test_wrk_percentiles_in_milliseconds() -> None:
    assert _wrk_percentile(WRK_LATENCY, 50) == pytest.approx(0.25)
    assert _wrk_percentile(WRK_LATENCY, 90) == pytest.approx(1200.0)
    assert _wrk_percentile(WRK_LATENCY, 99) == pytest.approx(54.31)
    assert math.isnan(_wrk_percentile("no distribution", 99))


def _results() -> report.Results:
    scenarios = [SCENARIOS["hello"], SCENARIOS["many"]]
    servers = [
        report.ServerInfo("trio-asgi-httptools", "", True, "0"),
        report.ServerInfo("uvicorn-httptools", "", False, "0"),
    ]
    r = report.Results({}, Settings(), scenarios, servers)
    r.add("hello", "trio-asgi-httptools", report.Measurement(1, {"rps": 40_000.0}))
    r.add("hello", "uvicorn-httptools", report.Measurement(1, {"rps": 30_000.0}))
    many = {"rps": 36_000.0, "p99": 60.0, "timeouts": 0.0}
    r.add("many", "trio-asgi-httptools", report.Measurement(1, many))
    r.add("many", "uvicorn-httptools", report.Measurement(1, {"rps": 24_000.0, "p99": 70.0}))
    return r


def test_a_target_against_our_own_figure_in_another_scenario() -> None:
    r = _results()
    assert r.target_ratio("many", "rps", "trio-asgi-httptools", "@hello") == pytest.approx(0.9)
    assert r.target_ratio("many", "rps", "trio-asgi-httptools", "uvicorn-httptools") == 1.5


def test_targets_table_rows() -> None:
    rows = "\n".join(report._targets(_results(), [SCENARIOS["hello"], SCENARIOS["many"]]))
    ours = "trio-asgi-httptools"
    assert f"| many rps: {ours} / {ours} in hello ≥ 0.9x | 0.90x | yes" in rows
    assert "| many p99: trio-asgi-httptools / uvicorn-httptools ≤ 1x | 0.86x | yes" in rows
    assert "| many timeouts: trio-asgi-httptools, every round, ≤ 0 | 0.00 | yes" in rows


def test_no_ratio_for_counts_and_shares() -> None:
    text = report.markdown(_with_meta(_results()))
    ratios = text.split("(ratio of the medians above)")[1]
    table = ratios.split("###")[0]
    assert "| p99 latency ↓ | 0.86x |" in table
    assert "timeouts" not in table
    assert "server CPU ↑" not in table  # (per server CPU-second stays)


def _with_meta(r: report.Results) -> report.Results:
    r.meta = {
        "date": "today",
        "command": "python -m benchmarks",
        "cpu": "cpu",
        "cores": 2,
        "python": "3",
        "server_core": 0,
        "load_cores": "1",
        "generator": "wrk",
        "rounds": 1,
        "elapsed_s": 1.0,
        "notes": [],
    }
    return r


def test_docs_are_recognised_as_docs() -> None:
    assert run._is_within(run.DOCS / "performance", run.DOCS)
    assert not run._is_within(run.DEFAULT_OUT, run.DOCS)
    assert not run._is_within(run.DOCS.parent.parent / "elsewhere", run.DOCS)


def test_busy_seconds_counts_up() -> None:
    assert busy_seconds() >= busy_seconds(0) >= 0.0


@pytest.mark.parametrize(
    ("query", "size"),
    [
        (b"", apps.STREAM_TOTAL),
        (b"bytes=1024", 1024),
        (b"bytes=0", 0),
        (b"bytes=x", apps.STREAM_TOTAL),
        (b"bytes=99999999999999", apps.STREAM_TOTAL),
    ],
)
def test_streamed_download_size_from_the_query(query: bytes, size: int) -> None:
    assert apps._stream_size(query) == size


def test_cpu_split_is_shown_but_not_compared() -> None:
    """User and kernel µs per request explain a ratio; they are not a ratio themselves."""
    hello = SCENARIOS["hello"]
    split = [m for m in hello.metrics if m.key in ("user_us", "kernel_us")]
    assert [m.key for m in split] == ["user_us", "kernel_us"]
    assert not any(m.compare or m.higher_is_better for m in split)


def test_callgrind_totals_by_event(tmp_path) -> None:
    from benchmarks.instructions import _totals

    out = tmp_path / "callgrind.out"
    out.write_text(
        "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n"
        "fn=(1) main\n"
        "totals: 1000 300 200 5 40 10 1 3 2\n"
        "totals: 500 100 100 0 10 0 0 1 0\n"
    )
    totals = _totals(out)
    assert totals["Ir"] == 1500
    assert totals["D1mr"] + totals["D1mw"] == 60
    assert totals["DLmr"] + totals["DLmw"] == 6
