"""Bad input: every case gives a clear exception, never a crash or silent garbage.

Cases that could crash the interpreter (raw pointers, huge sizes, uninitialised objects) run
in a child interpreter (run_python), so a segfault fails the test instead of the run.
"""
import ctypes
import sys
import textwrap

import pytest
from conftest import run_python

from indirect_buffer import BufferCollection2D, IndirectMemory2D


def expect_in_child(setup, call, exc, pattern=""):
    """Run `call` after `setup` in a fresh interpreter; it must raise exc, message ~ pattern."""
    code = "\n".join([
        "import ctypes, re, sys",
        "from indirect_buffer import IndirectMemory2D, BufferCollection2D",
        textwrap.dedent(setup),
        f"PATTERN = {pattern!r}",
        f"EXPECTED = {exc!r}",
        "try:",
        f"    {call}",
        f"except {exc} as e:",
        "    msg = str(e)",
        "    if not re.search(PATTERN, msg):",
        "        sys.exit(f'{type(e).__name__} message does not match {PATTERN!r}: {msg!r}')",
        "    print('OK', type(e).__name__, msg)",
        "except BaseException as e:",
        "    sys.exit(f'expected {EXPECTED}, got {type(e).__name__}: {e}')",
        "else:",
        "    sys.exit(f'expected {EXPECTED}, nothing raised')",
    ])
    return run_python(code)


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,cols,bad", [(-1, 3, -1), (3, -1, -1), (-7, -7, -7),
                                          (-(2 ** 62), 1, -(2 ** 62))])
def test_negative_sizes(rows, cols, bad):
    with pytest.raises(ValueError, match=str(bad)):
        IndirectMemory2D.create_memory(rows, cols, "d")


def test_negative_sizes_from_ctype_ptr():
    table = (ctypes.POINTER(ctypes.c_double) * 2)(*[(ctypes.c_double * 2)() for _ in range(2)])
    with pytest.raises(ValueError, match="-1"):
        IndirectMemory2D.from_ctype_ptr(table, -1, 2)
    with pytest.raises(ValueError, match="-3"):
        IndirectMemory2D.from_ctype_ptr(table, 2, -3)


@pytest.mark.parametrize("rows,cols,fmt", [
    (2 ** 40, 2 ** 20, "d"),            # 2**63 bytes: overflows Py_ssize_t
    (sys.maxsize, 2, "d"),
    (2, sys.maxsize, "b"),
    (2 ** 32, 2 ** 32, "i"),
    (sys.maxsize, 0, "d"),             # no data, but the row-pointer table overflows
    (1, sys.maxsize, "b"),             # fits in Py_ssize_t, cannot be allocated
    (2 ** 30, 2 ** 27, "d"),           # 2**60 bytes
    (2 ** 31, 2 ** 31, "B"),
])
def test_impossible_sizes_raise_memory_error(rows, cols, fmt):
    expect_in_child("", f"IndirectMemory2D.create_memory({rows}, {cols}, {fmt!r})",
                    "MemoryError")


def test_failed_allocations_leak_nothing():
    # A 256 MiB row-pointer table can be allocated, its 2**57-byte data block cannot: the
    # table must be freed again. 50 leaked tables would add 12.5 GiB of address space.
    run_python("""
        import os
        from indirect_buffer import IndirectMemory2D

        def vm_bytes():
            with open('/proc/self/statm') as f:
                return int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')

        def attempt():
            try:
                IndirectMemory2D.create_memory(2 ** 25, 2 ** 32, 'B')
            except MemoryError:
                return
            raise SystemExit('expected MemoryError')

        for _ in range(3):
            attempt()
        before = vm_bytes()
        for _ in range(50):
            attempt()
        grown = vm_bytes() - before
        assert grown < 128 * 2 ** 20, f'address space grew by {grown} bytes'
        # the process still works normally afterwards
        m = IndirectMemory2D.create_memory(10, 10, 'd')
        memoryview(m)[9, 9] = 1.0
        assert memoryview(m)[9, 9] == 1.0
    """)


def test_collection_huge_column_count_is_a_mismatch():
    with pytest.raises(BufferError):
        BufferCollection2D([bytearray(3)], column_count=sys.maxsize)


# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["Z", "", " ", "@", "0d", "dZ", "ä", b"\xff", b"", "d\x00",
                                 "i\n?Z"])
def test_unknown_or_empty_format(fmt):
    with pytest.raises(ValueError) as info:
        IndirectMemory2D.create_memory(2, 2, fmt)
    msg = str(info.value)
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    assert repr(fmt) in msg or (text.strip() and text in msg), msg


@pytest.mark.parametrize("fmt", ["id", "2d", "dB", "<i", "!H", "3s", "?x"])
def test_valid_struct_formats(fmt):
    import struct
    mem = IndirectMemory2D.create_memory(1, 2, fmt)
    assert mem.itemsize == struct.calcsize(fmt)


@pytest.mark.parametrize("fmt", [None, 1, 1.5, object(), bytearray(b"d"), ["d"], ("d",),
                                 memoryview(b"d")])
def test_format_of_wrong_type(fmt):
    with pytest.raises(TypeError) as info:
        IndirectMemory2D.create_memory(2, 2, fmt)
    assert "format" in str(info.value), str(info.value)


@pytest.mark.parametrize("valid", [b"d", "d", b"i"])
def test_format_type_check_does_not_depend_on_earlier_calls(valid):
    # A hashable non-str/bytes object equal to an already used format (memoryview(b"d") ==
    # b"d") must still be refused, whatever formats were used before.
    IndirectMemory2D.create_memory(1, 1, valid)
    imposter = memoryview(valid.encode() if isinstance(valid, str) else valid)
    with pytest.raises(TypeError, match="format"):
        IndirectMemory2D.create_memory(1, 1, imposter)
    mem = IndirectMemory2D.create_memory(1, 2, "d")
    with pytest.raises(TypeError, match="format"):
        mem.reinterpret_data(imposter)


@pytest.mark.parametrize("fmt", [None, 1, bytearray(b"d"), ["d"]])
def test_reinterpret_format_of_wrong_type(fmt):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    with pytest.raises(TypeError) as info:
        mem.reinterpret_data(fmt)
    assert "format" in str(info.value), str(info.value)
    assert mem.format == "d"


@pytest.mark.parametrize("fmt", ["Z", "", "q!"])
def test_reinterpret_unknown_format(fmt):
    mem = IndirectMemory2D.create_memory(2, 2, "d")
    with pytest.raises(ValueError) as info:
        mem.reinterpret_data(fmt)
    assert repr(fmt) in str(info.value) or (fmt and fmt in str(info.value))
    assert mem.format == "d" and mem.shape == (2, 2)


@pytest.mark.parametrize("rows_arg", [2.0, "2", None])
def test_non_integer_sizes(rows_arg):
    with pytest.raises(TypeError):
        IndirectMemory2D.create_memory(rows_arg, 2, "d")
    with pytest.raises(TypeError):
        IndirectMemory2D.create_memory(2, rows_arg, "d")


# ---------------------------------------------------------------------------------------------
# ctypes input
# ---------------------------------------------------------------------------------------------

CTYPES_SETUP = """
    rows = [(ctypes.c_double * 3)(1, 2, 3) for _ in range(3)]
    table = (ctypes.POINTER(ctypes.c_double) * 3)(
        *[ctypes.cast(r, ctypes.POINTER(ctypes.c_double)) for r in rows])
"""


@pytest.mark.parametrize("obj", [
    "(ctypes.c_double * 9)()",                        # not a pointer table
    "(ctypes.c_void_p * 3)(*[ctypes.addressof(r) for r in rows])",  # untyped addresses
    "rows[0]",
    "ctypes.cast(rows[0], ctypes.POINTER(ctypes.c_double))",  # T*, not T**
    "ctypes.c_int(5)",
    "ctypes.c_void_p(ctypes.addressof(table))",
    "12345",
    "[1, 2, 3]",
    "bytearray(64)",
    "None",
    "memoryview(bytearray(24))",
])
def test_from_ctype_ptr_not_a_pointer_table(obj):
    expect_in_child(CTYPES_SETUP, f"IndirectMemory2D.from_ctype_ptr({obj}, 3, 3)",
                    "(TypeError, BufferError)")


def test_from_ctype_ptr_too_few_rows():
    expect_in_child(CTYPES_SETUP, "IndirectMemory2D.from_ctype_ptr(table, 4, 3)",
                    "(TypeError, BufferError)", r"(?s)(?=.*\b3\b)(?=.*\b4\b)")


def test_from_ctype_ptr_null_table():
    expect_in_child("", "IndirectMemory2D.from_ctype_ptr("
                    "ctypes.POINTER(ctypes.POINTER(ctypes.c_double))(), 2, 2)",
                    "ValueError", "NULL")


def test_from_ctype_ptr_null_row():
    expect_in_child(CTYPES_SETUP + "    table[1] = ctypes.POINTER(ctypes.c_double)()\n",
                    "IndirectMemory2D.from_ctype_ptr(table, 3, 3)", "ValueError",
                    r"(?i)row\D*1\b.*NULL|NULL.*\b1\b")


def test_from_ctype_ptr_null_row_in_pointer_pointer():
    expect_in_child(
        CTYPES_SETUP + "    table[2] = ctypes.POINTER(ctypes.c_double)()\n"
        "    pp = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))\n",
        "IndirectMemory2D.from_ctype_ptr(pp, 3, 1)", "ValueError", r"\b2\b")


def test_from_ctype_ptr_bad_row_offset():
    expect_in_child(CTYPES_SETUP, "IndirectMemory2D.from_ctype_ptr(table, 3, 3, row_offset=-8)",
                    "ValueError", "-8")


# ---------------------------------------------------------------------------------------------
# from_address (integer T** addresses)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address,exc", [(0, "ValueError"), (-1, "ValueError"),
                                         (2 ** 64, "ValueError"), ("'0x1000'", "TypeError"),
                                         (1.0, "TypeError"), (True, "TypeError"),
                                         (None, "TypeError")])
def test_from_address_bad_address(address, exc):
    expect_in_child("", f"IndirectMemory2D.from_address({address}, 2, 2, 'd')", exc)


def test_from_address_null_row():
    expect_in_child("""
        table = (ctypes.c_void_p * 2)(ctypes.addressof((ctypes.c_double * 2)()), None)
    """, "IndirectMemory2D.from_address(ctypes.addressof(table), 2, 2, 'd')", "ValueError",
        r"\b1\b")


# ---------------------------------------------------------------------------------------------
# uninitialised objects (IndirectMemory2D.__new__ without a constructor)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    "memoryview(obj)", "obj.shape", "obj.format", "len(obj)", "obj.reinterpret_data('d')",
    "obj.make_read_only()", "obj.copy()",
])
@pytest.mark.parametrize("cls", ["IndirectMemory2D", "BufferCollection2D"])
def test_uninitialised_object(cls, call):
    expect_in_child(f"obj = {cls}.__new__({cls})", call, "(ValueError, TypeError)")


def test_collection_initialised_twice():
    expect_in_child("c = BufferCollection2D([bytearray(b'ab')])",
                    "c.__init__([bytearray(b'cdef')])", "TypeError")
