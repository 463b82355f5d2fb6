"""benchmarks/bench.py runs and prints what it promises (the format only, never the ratios)."""
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

BENCH = REPO / "benchmarks" / "bench.py"
OPERATIONS = ["view_from_rows", "BufferCollection2D", "copy_to", "copy_from", "create_memory",
              "to_numpy"]
SMALL_SHAPES = 3

TIME = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:s|ms|us|ns)"
RATIO_LINE = re.compile(
    rf"^(?P<name>\w+)\[(?P<rows>\d+)x(?P<cols>\d+)\] ours={TIME} peer={TIME} "
    r"ratio=\d+\.\d{3} target<=\d+\.\d{2} (?:PASS|MISS)$")
SKIP_LINE = re.compile(
    rf"^BufferCollection2D\[\d+x\d+\] ours={TIME} peer=skipped \(note: cffi is not installed\) "
    r"target<=0\.20 SKIP$")
SCALING_LINE = re.compile(
    rf"^scaling (?P<name>\w+): (?:\d+={TIME}/row\(peer (?:{TIME}|n/a)\) )+"
    r"per-row-growth=x\d+\.\d{2}\(peer (?:x\d+\.\d{2}|n/a)\) linear=(?:yes|NO)$")
SUMMARY_LINE = re.compile(r"^== summary: \d+ PASS, \d+ MISS, \d+ SKIP")


def run_bench(*args, hide=(), timeout=300):
    """Run bench.py in a fresh interpreter, with the modules in `hide` made unimportable."""
    code = ("import runpy, sys\n"
            f"for name in {list(hide)!r}:\n"
            "    sys.modules[name] = None\n"
            f"sys.argv = [{str(BENCH)!r}] + {list(args)!r}\n"
            f"runpy.run_path({str(BENCH)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"bench.py {' '.join(args)} exited with {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout.splitlines()


def check_ratio_lines(lines, expect_skip):
    ratio = [line for line in lines if RATIO_LINE.match(line)]
    skipped = [line for line in lines if SKIP_LINE.match(line)]
    seen = {}
    for line in ratio:
        seen.setdefault(RATIO_LINE.match(line)["name"], 0)
        seen[RATIO_LINE.match(line)["name"]] += 1
    if expect_skip:
        assert len(skipped) == SMALL_SHAPES, lines
        assert "BufferCollection2D" not in seen
        assert any(line.startswith("note: cffi is not installed") for line in lines)
        expected = {name: SMALL_SHAPES for name in OPERATIONS if name != "BufferCollection2D"}
    else:
        assert not skipped
        expected = {name: SMALL_SHAPES for name in OPERATIONS}
    assert seen == expected, "\n".join(lines)
    # Every line that looks like a result line is well-formed.
    for line in lines:
        if re.match(r"^\w+\[\d+x\d+\] ", line):
            assert RATIO_LINE.match(line) or SKIP_LINE.match(line), line


def check_scaling_lines(lines):
    names = [SCALING_LINE.match(line)["name"] for line in lines if SCALING_LINE.match(line)]
    assert names == OPERATIONS, "\n".join(lines)
    for line in lines:
        if line.startswith("scaling "):
            assert SCALING_LINE.match(line), line


def test_bench_quick_small(tmp_path):
    pytest.importorskip("numpy")
    out = tmp_path / "bench.json"
    lines = run_bench("--quick", "--shapes", "small", "--json", str(out))
    have_cffi = subprocess.run([sys.executable, "-c", "import cffi"],
                               capture_output=True, check=False).returncode == 0
    check_ratio_lines(lines, expect_skip=not have_cffi)
    check_scaling_lines(lines)
    assert sum(bool(SUMMARY_LINE.match(line)) for line in lines) == 1
    data = json.loads(out.read_text())
    assert len(data["ratios"]) == len(OPERATIONS) * SMALL_SHAPES
    for entry in data["ratios"]:
        assert entry["name"] in OPERATIONS
        assert entry["ours"] > 0
        assert entry["status"] in ("PASS", "MISS", "SKIP")
        if entry["status"] != "SKIP":
            assert entry["ratio"] == pytest.approx(entry["ours"] / entry["peer"])
    assert [e["name"] for e in data["scaling"]] == OPERATIONS
    for entry in data["scaling"]:
        assert len(entry["rows"]) == len(entry["ours_per_row"]) >= 2
        assert all(t > 0 for t in entry["ours_per_row"])


def test_bench_without_cffi_and_matplotlib(tmp_path):
    """cffi and matplotlib are optional: the script notes their absence and carries on."""
    pytest.importorskip("numpy")
    png = tmp_path / "scaling.png"
    lines = run_bench("--quick", "--shapes", "small", "--plot", str(png),
                      hide=("cffi", "matplotlib"))
    check_ratio_lines(lines, expect_skip=True)
    check_scaling_lines(lines)
    assert any(line.startswith("note: matplotlib is not installed") for line in lines)
    assert not png.exists()


def test_bench_plot(tmp_path):
    pytest.importorskip("numpy")
    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    lines = run_bench("--quick", "--shapes", "small", "--plot", str(png))
    assert f"wrote {png}" in lines
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_is_not_collected_as_tests():
    # benchmarks/ holds no test_*.py, so pytest never times anything by accident.
    assert not list((REPO / "benchmarks").glob("test_*.py"))
    assert not list((REPO / "benchmarks").glob("*_test.py"))
