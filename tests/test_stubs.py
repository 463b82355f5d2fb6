"""The type stubs (indirect_buffer/*.pyi) describe the compiled modules exactly.

mypy's stubtest imports the installed package and compares every public name, signature,
property and class flag with the stubs. Any difference fails the test; the few that a stub
cannot express are listed, each with its reason, in stubtest_allowlist.txt.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).resolve().parent / "stubtest_allowlist.txt"


@pytest.mark.skipif(bool(os.environ.get("IB_SANITIZE")),
                    reason="the stubs do not depend on the sanitizer build; the other runs "
                           "check them, and mypy under ASan is slow")
def test_stubtest_finds_no_difference(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in tests/requirements.txt")
    # Run outside the checkout, so that the installed package (with its stubs) is checked.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "indirect_buffer", "--allowlist", str(ALLOWLIST)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"stubtest found differences:\n{proc.stdout}\n{proc.stderr}"
    assert "Success" in proc.stdout, proc.stdout
