"""`make demo`'s crawl report: the CPU split, the speed-ups, the profile and its explanation.

The table and the explanation are checked on made-up runs (their numbers are known), and
one short real crawl checks the whole path: light server pinned to its own CPU, the
crawler's user/system CPU in the table, the server stopped at the end.
"""

import argparse
import importlib
import os
import socket
import subprocess
import sys

import pytest

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo")


def _import_demo():
    # demo/ on sys.path only while importing, so its module names (main, common, page...)
    # cannot shadow anything for the other tests.
    sys.path.insert(0, DEMO)
    try:
        return importlib.import_module("cpu_profile"), importlib.import_module("main")
    finally:
        sys.path.remove(DEMO)


cpu_profile, demo_main = _import_demo()

PERF_REPORT = """\
# Samples: 3K of event 'cpu-clock:ppp'
#
# Overhead  Shared Object
# ........  ............................................
#
    75.90%  libpython3.11.so.1.0
    12.11%  [kernel.kallsyms]
     3.86%  libc.so.6
     2.96%  _ferroloop.cpython-311-x86_64-linux-gnu.so
     1.57%  _http_parser.cpython-311-x86_64-linux-gnu.so
     1.35%  _multidict.cpython-311-x86_64-linux-gnu.so
     1.03%  _asyncio.cpython-311-x86_64-linux-gnu.so
     0.22%  ld-linux-x86-64.so.2
     0.13%  [vdso]
     0.88%  libzstd.so.1
"""


def test_perf_report_grouped_by_code():
    shares = cpu_profile.parse_report(PERF_REPORT, "ferroloop")
    assert shares == pytest.approx({"loop": 2.96, "interpreter": 75.90,
                                    "C extensions": 1.57 + 1.35 + 1.03,
                                    "kernel": 12.11 + 0.13, "libc": 3.86 + 0.22,
                                    "other": 0.88})


def test_loop_objects_belong_to_their_loop_only():
    assert cpu_profile.group_of("loop.cpython-311-x86_64-linux-gnu.so", "uvloop") == "loop"
    assert cpu_profile.group_of("_rloop.cpython-311-x86_64-linux-gnu.so", "rloop") == "loop"
    # Under asyncio the stock loop is Python code: no object is "the loop".
    assert cpu_profile.group_of("_ferroloop.cpython-311-x86_64-linux-gnu.so",
                                "asyncio") == "other"


def made_up_args(loops, rounds=3, requests=1000):
    return argparse.Namespace(loops=loops, rounds=rounds, requests=requests, workers=1,
                              crawler="aiohttp")


def made_up_runs(cpu, wall, user_share=0.8):
    return {loop: [{"wall": wall[loop] * f, "cpu": cpu[loop] * f,
                    "user": cpu[loop] * f * user_share,
                    "sys": cpu[loop] * f * (1 - user_share), "server_cpu": 0.05}
                   for f in (0.9, 1.0, 1.3)] for loop in cpu}


def test_crawl_table_splits_cpu_and_compares_with_each_reference(capsys):
    loops = ["asyncio", "ferroloop", "uvloop", "rloop"]
    runs = made_up_runs(cpu={"asyncio": 1.0, "ferroloop": 0.8, "uvloop": 0.5, "rloop": 0.9},
                        wall={"asyncio": 2.0, "ferroloop": 1.6, "uvloop": 1.0, "rloop": 2.0})
    demo_main.crawl_table(made_up_args(loops), runs, {}, {})
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("loop "))
    assert "crawler CPU (s)" in lines[head - 1]
    assert [t in lines[head - 1] for t in ("vs asyncio", "vs uvloop", "vs rloop")] == [True] * 3
    assert lines[head].split() == ["loop", "requests/s", "wall", "(s)", "user", "sys", "total",
                                   "CPU", "(s)"] + ["wall", "CPU"] * 3
    ferro = lines[head + 2].split()
    # Medians: wall 1.6 s, CPU 0.8 s = user 0.64 + sys 0.16; speed-ups = reference / ferroloop.
    assert ferro[:7] == ["ferroloop", "625", "1.600", "0.640", "0.160", "0.800", "0.050"]
    assert ferro[7:] == ["1.25x", "1.25x", "0.62x", "0.62x", "1.25x", "1.12x"]


def test_explanation_names_the_measured_shares(capsys):
    loops = ["asyncio", "ferroloop", "uvloop"]
    runs = made_up_runs(cpu={"asyncio": 1.0, "ferroloop": 0.88, "uvloop": 0.9},
                        wall={"asyncio": 2.0, "ferroloop": 1.8, "uvloop": 1.8})
    shares = cpu_profile.parse_report(PERF_REPORT, "ferroloop")
    profiles = {"ferroloop": {"shares": shares},
                "uvloop": {"shares": dict(shares, loop=3.8)}}
    demo_main.explain_crawl(made_up_args(loops), runs, {}, profiles)
    line = capsys.readouterr().out.strip()
    assert line.startswith("why the crawl gains little: the loop is not the bottleneck.")
    assert "ferroloop's own code is 3.0% of the crawler's CPU (uvloop's 4%)" in line
    assert "interpreter running aiohttp's Python code takes 76%, the kernel 12%" in line
    assert line.endswith("ferroloop needs 12% less CPU than asyncio (uvloop 10% less).")
    assert "\n" not in line


def test_no_explanation_when_the_loop_is_the_bottleneck(capsys):
    loops = ["asyncio", "ferroloop"]
    runs = made_up_runs(cpu={"asyncio": 1.0, "ferroloop": 0.4},
                        wall={"asyncio": 1.0, "ferroloop": 0.4})
    profiles = {"ferroloop": {"shares": dict(cpu_profile.parse_report(PERF_REPORT, "x"),
                                             loop=35.0)}}
    demo_main.explain_crawl(made_up_args(loops), runs, {}, profiles)
    assert capsys.readouterr().out == ""


def test_explanation_without_perf_uses_the_cpu_ratios(capsys):
    loops = ["asyncio", "ferroloop"]
    runs = made_up_runs(cpu={"asyncio": 1.0, "ferroloop": 0.9},
                        wall={"asyncio": 1.0, "ferroloop": 0.9})
    demo_main.explain_crawl(made_up_args(loops), runs, {}, {})
    line = capsys.readouterr().out.strip()
    assert line.startswith("why the crawl gains little: the loop is not the bottleneck. "
                           "ferroloop needs 10% less CPU than asyncio: the rest is aiohttp's")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
def test_short_crawl_pins_server_and_crawler_and_splits_cpu():
    pytest.importorskip("aiohttp", reason="the demo's crawler is an aiohttp client")
    proc = subprocess.run(
        [sys.executable, os.path.join(DEMO, "main.py"), "--parts", "crawl",
         "--loops", "asyncio,ferroloop", "--rounds", "1", "--requests", "200",
         "--warmup", "20", "--concurrency", "20", "--no-profile"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    cpus = sorted(os.sched_getaffinity(0))
    assert f"keep-alive pool, on CPU {cpus[0]}" in out
    assert "server: light: a minimal asyncio.Protocol HTTP app" in out
    assert f"on CPU {cpus[-1]}, page 16384 bytes" in out
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()
            if ln.split() and ln.split()[0] in ("asyncio", "ferroloop") and "x" in ln}
    for loop in ("asyncio", "ferroloop"):
        user, sys_, total = (float(v) for v in rows[loop][3:6])
        assert user > 0 and sys_ >= 0
        assert total == pytest.approx(user + sys_, abs=0.0015)
    assert rows["asyncio"][7:9] == ["1.00x", "1.00x"]
    # The server was stopped before main.py returned: nothing listens on its port.
    port = int(next(ln for ln in out.splitlines() if "server: " in ln)
               .split("127.0.0.1:")[1].split(",")[0])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_load_note_when_the_crawler_did_not_get_its_cpu(capsys):
    args = argparse.Namespace(client_cpus="0")
    demo_main.load_note(args, {"asyncio": [{"wall": 2.0, "cpu": 0.6}] * 3})
    note = capsys.readouterr().out
    assert note.startswith("note: the crawler got only 30% of its CPU (median CPU / wall): "
                           "other processes loaded the machine")
    demo_main.load_note(args, {"asyncio": [{"wall": 1.0, "cpu": 0.95}] * 3})
    assert capsys.readouterr().out == ""


def test_explanation_says_more_when_a_loop_needs_more_cpu(capsys):
    loops = ["asyncio", "ferroloop", "rloop"]
    runs = made_up_runs(cpu={"asyncio": 1.0, "ferroloop": 0.9, "rloop": 1.1},
                        wall={"asyncio": 1.0, "ferroloop": 0.9, "rloop": 1.1})
    demo_main.explain_crawl(made_up_args(loops), runs, {}, {})
    assert "ferroloop needs 10% less CPU than asyncio (rloop 10% more)" in \
        capsys.readouterr().out
