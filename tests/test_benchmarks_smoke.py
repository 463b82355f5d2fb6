"""benchmarks/bench.py runs and prints what it promises (the format only, never the ratios)."""
import json
import os
import re
import runpy
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

BENCH = REPO / "benchmarks" / "bench.py"
OPERATIONS = ["view_from_rows", "BufferCollection2D", "copy_to", "copy_from", "create_memory",
              "to_numpy", "copy_to_nd", "copy_from_nd"]
ROUNDTRIP = ["roundtrip_view_from_rows", "roundtrip_as_indirect"]
SMALL_CALLS = ["copy_to", "pinned"]
SMALL_SHAPES = 3         # --shapes small: shapes of each operation of the first section
ROUNDTRIP_SHAPES = 2     # --shapes small: 10x10 and 50x8
# Lines per operation name in a --quick --shapes small run (copy_to also appears at 10x10).
EXPECTED = {**{name: SMALL_SHAPES for name in OPERATIONS},
            **{name: ROUNDTRIP_SHAPES for name in ROUNDTRIP}, "pinned": 1, "lend": 1,
            # the small set's converting-copy shapes: (10, 10) and (6, 300)
            "convert_f64_f32": 2, "convert_i16_i32": 2}
EXPECTED["copy_to"] += 1

TIME = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:s|ms|us|ns)"
COUNT = r"-?\d+(?:\.\d+)?[kMG]?"
INSTR = rf"instr: (?:ours={COUNT} peer={COUNT} ratio=\d+\.\d{{3}} (?:PASS|MISS)|skipped \(.+\))"
RATIO_LINE = re.compile(
    rf"^(?P<name>\w+)\[(?P<rows>\d+)x(?P<cols>\d+)\] ours={TIME} peer={TIME} "
    rf"ratio=\d+\.\d{{3}} target<=\d+\.\d{{2}} (?:PASS|MISS)(?P<instr> {INSTR})?$")
SKIP_LINE = re.compile(
    rf"^BufferCollection2D\[\d+x\d+\] ours={TIME} peer=skipped \(note: cffi is not installed\) "
    rf"target<=0\.05 SKIP(?: {INSTR})?$")
SCALING_LINE = re.compile(
    rf"^scaling (?P<name>\w+): (?:\d+={TIME}/row\(peer (?:{TIME}|n/a)\) )+"
    r"per-row-growth=x\d+\.\d{2}\(peer (?:x\d+\.\d{2}|n/a)\) linear=(?:yes|NO)$")
SUMMARY_LINE = re.compile(r"^== summary: \d+ PASS, \d+ MISS, \d+ SKIP")
MACHINE_LINE = re.compile(r"^machine: .+ \(\d+ CPUs\), .+; Python [\d.]+, NumPy \S+, cffi \S+")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    """One compiled round-trip module for every run in this file (bench.py reuses it)."""
    return tmp_path_factory.mktemp("bench_build")


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


def check_ratio_lines(lines, expect_skip, expected=EXPECTED):
    ratio = [line for line in lines if RATIO_LINE.match(line)]
    skipped = [line for line in lines if SKIP_LINE.match(line)]
    seen = {}
    for line in ratio:
        seen.setdefault(RATIO_LINE.match(line)["name"], 0)
        seen[RATIO_LINE.match(line)["name"]] += 1
    expected = dict(expected)
    if expect_skip:
        assert len(skipped) == expected.pop("BufferCollection2D"), lines
        assert "BufferCollection2D" not in seen
        assert any(line.startswith("note: cffi is not installed") for line in lines)
    else:
        assert not skipped
    assert seen == expected, "\n".join(lines)
    # Every line that looks like a result line is well-formed.
    for line in lines:
        if re.match(r"^\w+\[\d+x\d+\] ", line):
            assert RATIO_LINE.match(line) or SKIP_LINE.match(line), line
    assert sum(bool(MACHINE_LINE.match(line)) for line in lines) == 1, lines[:3]


def check_scaling_lines(lines, names=OPERATIONS):
    found = [SCALING_LINE.match(line)["name"] for line in lines if SCALING_LINE.match(line)]
    assert found == names, "\n".join(lines)
    for line in lines:
        if line.startswith("scaling "):
            assert SCALING_LINE.match(line), line


def test_bench_quick_small(tmp_path, build_dir):
    """Every section, the round trip included (its Cython module is built and run)."""
    pytest.importorskip("numpy")
    pytest.importorskip("Cython")
    out = tmp_path / "bench.json"
    lines = run_bench("--quick", "--shapes", "small", "--json", str(out),
                      "--build-dir", str(build_dir))
    have_cffi = subprocess.run([sys.executable, "-c", "import cffi"],
                               capture_output=True, check=False).returncode == 0
    check_ratio_lines(lines, expect_skip=not have_cffi)
    check_scaling_lines(lines)
    assert sum(bool(SUMMARY_LINE.match(line)) for line in lines) == 1
    assert not any(line.startswith("note: the round-trip module") for line in lines), lines
    data = json.loads(out.read_text())
    assert len(data["ratios"]) == sum(EXPECTED.values())
    assert set(data["machine"]) >= {"cpu", "python", "numpy", "cffi"}
    for entry in data["ratios"]:
        assert entry["name"] in EXPECTED
        assert entry["ours"] > 0
        assert entry["status"] in ("PASS", "MISS", "SKIP")
        if entry["status"] != "SKIP":
            assert entry["ratio"] == pytest.approx(entry["ours"] / entry["peer"])
    targets = {(e["name"], tuple(e["shape"])): e["target"] for e in data["ratios"]}
    assert targets[("roundtrip_view_from_rows", (10, 10))] == 1.2
    assert targets[("roundtrip_as_indirect", (50, 8))] == 1.05
    assert targets[("BufferCollection2D", (50, 8))] == 0.05
    assert targets[("pinned", (10, 10))] == 1.5
    assert [e["name"] for e in data["scaling"]] == OPERATIONS
    for entry in data["scaling"]:
        assert len(entry["rows"]) == len(entry["ours_per_row"]) >= 2
        assert all(t > 0 for t in entry["ours_per_row"])


def test_bench_without_cffi_and_matplotlib(tmp_path, build_dir):
    """cffi and matplotlib are optional: the script notes their absence and carries on."""
    pytest.importorskip("numpy")
    png = tmp_path / "scaling.png"
    lines = run_bench("--quick", "--shapes", "small", "--plot", str(png),
                      "--only", "view_from_rows,BufferCollection2D",
                      hide=("cffi", "matplotlib"))
    check_ratio_lines(lines, expect_skip=True,
                      expected={"view_from_rows": SMALL_SHAPES,
                                "BufferCollection2D": SMALL_SHAPES})
    check_scaling_lines(lines, ["view_from_rows", "BufferCollection2D"])
    assert any(line.startswith("note: matplotlib is not installed") for line in lines)
    assert not png.exists()


def test_bench_plot(tmp_path):
    pytest.importorskip("numpy")
    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    lines = run_bench("--quick", "--shapes", "small", "--only", "to_numpy", "--plot", str(png))
    assert f"wrote {png}" in lines
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_only_matches_nothing():
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "no_such_case"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "matches no case" in proc.stderr


def test_callgrind_parser(tmp_path):
    """The totals of a callgrind output file: its summary: line, else its totals: line."""
    pytest.importorskip("numpy")
    bench = runpy.run_path(str(BENCH), run_name="bench_module")
    parse = bench["parse_callgrind_total"]
    both = tmp_path / "callgrind.out.1"
    both.write_text("# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 7\n"
                    "cmd:  python x.py\npart: 2\n\npositions: line\nevents: Ir\n"
                    "summary: 123456\n\nfn=(1) main\n0 100\n\ntotals: 123456\n")
    assert parse(both) == 123456
    totals_only = tmp_path / "callgrind.out.2"
    totals_only.write_text("events: Ir Dr\nfn=(1) f\n3 4 5\ntotals: 789 10\n")
    assert parse(totals_only) == 789
    garbage = tmp_path / "not_callgrind"
    garbage.write_text("hello\n")
    with pytest.raises(ValueError, match="no summary"):
        parse(garbage)
    # Call counts: a few calls for huge matrices, more for tiny ones, never fewer than 3.
    calls = bench["callgrind_calls"]
    assert calls(10, 10, False) > calls(1000, 1000, False) >= 3
    assert calls(10, 10, True) < calls(10, 10, False)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.skipif(bool(os.environ.get("IB_SANITIZE")), reason="valgrind cannot run under ASan")
def test_bench_callgrind_tiny_case(tmp_path, build_dir):
    """--callgrind on one tiny case: instruction counts beside the timed ratio (< 60 s)."""
    pytest.importorskip("numpy")
    pytest.importorskip("Cython")
    out = tmp_path / "bench.json"
    keep = tmp_path / "callgrind"
    lines = run_bench("--quick", "--shapes", "small", "--callgrind", "--only", "pinned",
                      "--no-scaling", "--build-dir", str(build_dir), "--json", str(out),
                      "--callgrind-keep", str(keep), timeout=120)
    result = [line for line in lines if line.startswith("pinned[10x10] ")]
    assert len(result) == 1, "\n".join(lines)
    match = RATIO_LINE.match(result[0])
    assert match and match["instr"] and "skipped" not in match["instr"], result[0]
    assert any(line.startswith("== callgrind summary: ") for line in lines)
    entry = json.loads(out.read_text())["ratios"][0]
    # A pin and a memoryview: some hundreds to some tens of thousands of instructions per call.
    assert 100 < entry["instr_peer"] < 100_000
    assert 100 < entry["instr_ours"] < 100_000
    assert entry["instr_ratio"] == pytest.approx(entry["instr_ours"] / entry["instr_peer"])
    index = (keep / "index.txt").read_text()
    assert "pinned[10x10] ours:" in index and "pinned[10x10] peer:" in index


def test_bench_is_not_collected_as_tests():
    # benchmarks/ holds no test_*.py, so pytest never times anything by accident.
    assert not list((REPO / "benchmarks").glob("test_*.py"))
    assert not list((REPO / "benchmarks").glob("*_test.py"))
