"""The README's Python examples run as written (doctest)."""
import doctest

from conftest import REPO


def test_readme_examples():
    result = doctest.testfile(str(REPO / "README.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 20
    assert result.failed == 0
