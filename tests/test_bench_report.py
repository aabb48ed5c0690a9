"""The benchmark reporting code: CPU split, ceiling column, tables and charts.

The benchmarks themselves are too slow and too noisy for the test suite; these
tests feed the reporting code small fixed results (the shape the suites write
with --json) and check what comes out, and run the ceiling server and the load
generator for a fraction of a second to check the fields they produce.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import cpu_split  # noqa: E402
import net  # noqa: E402
import report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def entry(rps, users, syss):
    e = {"samples": [rps] * len(users), "error": None, "skip": None,
         "cpu_user_us": list(users), "cpu_sys_us": list(syss)}
    e["median"] = report.median(e["samples"])
    cpu_split.summarize(e)
    return e


def test_median_split_is_the_round_with_the_median_total():
    # totals 10, 4, 7 -> the median total is 7, from the round (5, 2)
    assert cpu_split.median_split([6, 3, 5], [4, 1, 2]) == (5, 2)


def test_median_split_even_count_sums_to_the_median_total():
    users, syss = [1.0, 4.0, 2.0, 10.0], [1.0, 2.0, 3.0, 5.0]
    u, s = cpu_split.median_split(users, syss)
    totals = [a + b for a, b in zip(users, syss)]
    assert u + s == pytest.approx(report.median(totals))
    assert (u, s) == pytest.approx((3.0, 2.5))  # mean of the rounds (2, 3) and (4, 2)


def test_median_split_without_samples():
    assert cpu_split.median_split([], []) == (None, None)


def test_summarize_skips_failed_entries():
    e = {"cpu_user_us": [1.0], "cpu_sys_us": [2.0], "error": "round 1: boom"}
    cpu_split.summarize(e)
    assert e["median_cpu_total_us"] is None


def test_per_op_us_from_rusage_snapshots():
    assert cpu_split.per_op_us((1.0, 2.0), (1.5, 2.25), 1000) == \
        pytest.approx((500.0, 250.0))
    assert cpu_split.per_op_us((0, 0), (1, 1), 0) == (None, None)


def test_cpu_times_grow_with_work():
    before = cpu_split.cpu_times()
    sum(i * i for i in range(300_000))
    after = cpu_split.cpu_times()
    assert after[0] + after[1] > before[0] + before[1]


def test_targets_user_ratio_best_peer_and_kernel_bound():
    results = {"c": {
        "asyncio": entry(100, [8.0], [4.0]),
        "uvloop": entry(150, [4.0], [4.0]),
        "rloop": entry(140, [3.0], [4.0]),
        "ferroloop": entry(160, [2.0], [4.5]),
    }}
    r = cpu_split.ratios(results, "c")
    assert r["user_vs_uvloop"] == pytest.approx(0.5)
    assert r["total_vs_best_peer"] == pytest.approx(6.5 / 7.0)
    assert r["kernel_share"] == pytest.approx(4.5 / 6.5)
    assert r["kernel_bound"] is True
    text = cpu_split.render(results, ["c"], ["asyncio", "uvloop", "rloop", "ferroloop"])
    row = next(line for line in text.splitlines() if line.startswith("c "))
    assert "2.0+4.5" in row and "0.50x" in row and "0.93x" in row and "69%" in row
    assert row.split()[-1] == "kernel"


def test_targets_without_uvloop():
    results = {"c": {"ferroloop": entry(1, [2.0], [1.0]), "uvloop": {"skip": "x"}}}
    r = cpu_split.ratios(results, "c")
    assert r["user_vs_uvloop"] is None and r["total_vs_best_peer"] is None
    assert r["kernel_bound"] is False


def test_net_sample_split_sums_to_the_total():
    e = {"samples": [], "error": None, "skip": None, "cpu_user_us": [], "cpu_sys_us": [],
         **{k: [] for k in net.SIDE_KEYS}}
    sample = {"rps": 20000.0, "requests": 30000, "duration_s": 1.5, "p50_us": 1.0,
              "p99_us": 2.0, "loadgen_cpu": 0.4, "server_cpu": 0.9,
              "server_user_cpu": 0.35, "server_sys_cpu": 0.55}
    net.record_sample(e, sample)
    net.summarize(e)
    assert e["median_server_us_per_req"] == pytest.approx(45.0)
    assert e["median_cpu_user_us"] == pytest.approx(17.5)
    assert e["median_cpu_user_us"] + e["median_cpu_sys_us"] == \
        pytest.approx(e["median_server_us_per_req"])


def _net_results():
    def cell(scale):
        return {"asyncio": entry(10000 * scale, [6.0], [4.0]),
                "uvloop": entry(14000 * scale, [3.0], [4.0]),
                "rloop": entry(13000 * scale, [3.5], [4.0]),
                "ferroloop": entry(15000 * scale, [2.0], [4.0]),
                "ceiling": entry(30000 * scale, [0.2], [3.0])}
    results = {"echo-protocol-1k": cell(1), "http": cell(1)}
    results["http"]["ceiling"] = {"na": net.CEILING_NA}
    return results


def test_net_tables_have_the_ceiling_column_and_fractions():
    results = _net_results()
    assert net.fraction_of_ceiling(results, "echo-protocol-1k", "ferroloop") == \
        pytest.approx(0.5)
    assert net.fraction_of_ceiling(results, "http", "ferroloop") is None
    args = net.parse_args(["--only", "echo-protocol-1k,http", "--rounds", "1"])
    text = net.render(results, args)
    assert "ceiling" in text.splitlines()[3]  # the requests/s header
    assert "n/a = the ceiling server only echoes" in text
    fractions = text.split("fraction of the ceiling")[1]
    row = next(line for line in fractions.splitlines() if line.startswith("echo-protocol-1k"))
    assert row.split()[1:] == ["33%", "47%", "43%", "50%"]
    assert "user vs uvloop" in text and "kernel share" in text


def _fixture_docs():
    net_results = _net_results()
    micro = {"meta": {"date": "2026-01-01T00:00:00+00:00", "python": "3.11.7", "cpu_count": 2,
                      "rounds": 3},
             "loops": {"asyncio": {"version": "CPython 3.11.7"}},
             "workloads": {"call_soon_chain": {"results": {
                 "asyncio": {"median": 100.0}, "uvloop": {"median": 300.0},
                 "rloop": {"median": 400.0}, "ferroloop": {"median": 2000.0}}}}}
    net_doc = {"meta": {"date": "2026-01-01T00:00:00+00:00", "python": "3.11.7",
                        "cpu_count": 2, "rounds": 1, "load": [3.0, 2.0, 1.0]},
               "loops": {}, "cells": {c: {"results": r} for c, r in net_results.items()}}
    tls = {"meta": {"rounds": 1}, "loops": {}, "cells": {"tls-echo-1k": {"results": {
        "asyncio": entry(1000, [50.0], [8.0]), "uvloop": entry(2000, [28.0], [4.0]),
        "rloop": {"skip": "NotImplementedError", "error": None},
        "ferroloop": entry(1500, [24.0], [8.0])}}}}
    proc = {"meta": {"rounds": 1}, "loops": {}, "cells": {"spawn-seq": {"results": {
        "asyncio": entry(200, [250.0], [200.0]), "uvloop": {"error": "round 1: boom"},
        "rloop": entry(260, [160.0], [40.0]), "ferroloop": entry(450, [260.0], [130.0])}}}}
    return {"micro.json": micro, "net.json": net_doc, "tls.json": tls, "proc.json": proc}


def test_report_renders_every_family_to_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is a dev dependency (charts only)")
    import charts
    from matplotlib.image import imread

    results, out = tmp_path / "results", tmp_path / "out"
    results.mkdir()
    for name, doc in _fixture_docs().items():
        (results / name).write_text(json.dumps(doc))
    assert charts.main(["--results", str(results), "--out", str(out),
                        "--note", "fixture data"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["headline.png", "micro.png", "net.png", "proc.png", "tls.png"]
    for name in written:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        height, width = imread(out / name).shape[:2]
        assert width >= 900 and height >= 300
    # the charts with a CPU panel are side by side, so wider than micro's
    assert imread(out / "net.png").shape[1] > imread(out / "micro.png").shape[1]


def test_report_skips_missing_families_and_fails_without_any(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is a dev dependency (charts only)")
    import charts

    results = tmp_path / "results"
    results.mkdir()
    with pytest.raises(SystemExit, match="no results"):
        charts.main(["--results", str(results), "--out", str(tmp_path / "out")])
    (results / "tls.json").write_text(json.dumps(_fixture_docs()["tls.json"]))
    assert charts.main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["headline.png", "tls.png"]
    assert "no results for micro, net, proc" in capsys.readouterr().out


def test_chart_rows_leave_out_failed_skipped_and_na_entries():
    import charts
    doc = _fixture_docs()["net.json"]
    rows = dict(charts.rows(doc, "net"))
    assert set(rows["echo-protocol-1k"]) == {"asyncio", "uvloop", "rloop", "ferroloop",
                                             "ceiling"}
    assert "ceiling" not in rows["http"]


def test_ceiling_server_echoes_and_loadgen_splits_its_cpu():
    if subprocess.run(["cargo", "--version"], capture_output=True).returncode != 0:
        pytest.skip("cargo is needed to build the load generator and the ceiling server")
    loadgen = net.ensure_loadgen(net.LOADGEN)
    server = subprocess.Popen([str(net.ensure_ceiling()), "--lifetime", "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        hello = json.loads(server.stdout.readline())
        assert hello["loop"] == "ceiling" and hello["style"] == "echo"
        # 100 KiB messages exercise the partial-send path (EPOLLOUT, back-pressure)
        out = subprocess.run(
            [str(loadgen), "echo", "--port", str(hello["port"]), "--connections", "4",
             "--size", "100k", "--warmup", "0.05", "--duration", "0.5",
             "--watch-pid", str(server.pid)],
            capture_output=True, text=True, timeout=30)
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
    assert out.returncode == 0, out.stderr
    sample = json.loads(out.stdout)
    assert sample["requests"] > 0
    if "server_user_cpu" in sample:  # absent when no clock tick fell in the window
        assert sample["server_user_cpu"] + sample["server_sys_cpu"] == \
            pytest.approx(sample["server_cpu"], abs=1e-9)
