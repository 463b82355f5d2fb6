"""The bad-input catalogue: every rejected input, the exception it raises, and its message.

Each row is (id, code, expected exception name, message fragment). All lines of `code` but the
last are setup; the last line is the input under test and must raise exactly that exception
(by name) with the fragment in its message. Every row runs in its own subprocess, so a crash
fails its test instead of killing the run.

docs/bad_input.md holds the same table; regenerate it after changing the catalogue with

    python tests/test_catalogue.py > /dev/null   # rewrites the table in docs/bad_input.md

(the script only rewrites the text between the two marker comments).
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "bad_input.md"
BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"

# Helpers every row may use (defined in the child before the row's code).
HARNESS = r'''
import copy, ctypes, json, pickle, sys
import _testbuffer
from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect
from indirect_buffer import nannies
if NEEDS_NUMPY:
    import numpy as np

P = ctypes.POINTER(ctypes.c_double)
KEEP = []  # keeps views alive while the row's last line runs


def table(rows=2, cols=3):
    """A ctypes double* table with valid rows."""
    return (P * rows)(*[(ctypes.c_double * cols)() for _ in range(rows)])


def mem(readonly=False):
    """A 2x3 'd' IndirectMemory2D."""
    return IndirectMemory2D.create_memory(2, 3, "d", readonly=readonly)


def released():
    m = mem()
    m.release()
    return m


def exported(view=memoryview):
    """A 2x3 'd' IndirectMemory2D with one live export (kept in KEEP)."""
    m = mem()
    KEEP.append(view(m))
    return m


def mem3(readonly=False, indirect=None):
    """A 2x3x4 'd' IndirectMemory: a T*** unless indirect says otherwise."""
    return IndirectMemory.create_memory((2, 3, 4), "d", indirect=indirect, readonly=readonly)


def table3(n0=2, n1=3, n2=4):
    """A ctypes double*** of n0 x n1 x n2 with valid tables and rows (an array of POINTER(P))."""
    PP = ctypes.POINTER(P)
    return (PP * n0)(*[ctypes.cast((P * n1)(*[ctypes.cast((ctypes.c_double * n2)(), P)
                                              for _ in range(n1)]), PP) for _ in range(n0)])
'''

RUNNER = r'''
try:
    exec(compile(ACTION, "<row>", "exec"))
except BaseException as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"type": None, "message": ""}))
'''

T = "t = table()"
NULLS = "t = (P * 2)()"
T3 = "t = table3()"
# A 2x3 'd' table whose rows start 8 bytes after each pointer (Numerical Recipes, 1-based).
ONE_BASED = ('b = [(ctypes.c_double * 4)() for _ in range(2)]\n'
             't = (ctypes.c_void_p * 2)(*[ctypes.addressof(x) for x in b])\n'
             'm = IndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "d", '
             'memory_nanny=(t, b), row_offset=8)\n')

SECTIONS = [
    ("Negative, huge and overflowing sizes", [
        ("create_negative_rows", 'IndirectMemory2D.create_memory(-1, 3, "d")',
         "ValueError", "rows must be >= 0, got -1"),
        ("create_negative_cols", 'IndirectMemory2D.create_memory(2, -5, "d")',
         "ValueError", "cols must be >= 0, got -5"),
        ("create_size_overflow", 'IndirectMemory2D.create_memory(2**40, 2**40, "d")',
         "MemoryError", "rows*cols*itemsize overflows"),
        ("create_row_bytes_overflow", 'IndirectMemory2D.create_memory(1, 2**62, "d")',
         "MemoryError", "cols*itemsize overflows"),
        ("create_huge_allocation", 'IndirectMemory2D.create_memory(1, 2**62, "B")',
         "MemoryError", "cannot allocate"),
        ("create_huge_table", 'IndirectMemory2D.create_memory(2**59, 0, "B")',
         "MemoryError", "cannot allocate"),
        ("create_size_beyond_ssize_t", 'IndirectMemory2D.create_memory(2**64, 1, "d")',
         "OverflowError", "too large"),
        ("from_address_negative_rows",
         f'{T}\nIndirectMemory2D.from_address(ctypes.addressof(t), -1, 3, "d", memory_nanny=t)',
         "ValueError", "rows must be >= 0, got -1"),
        ("from_address_negative_cols",
         f'{T}\nIndirectMemory2D.from_address(ctypes.addressof(t), 2, -1, "d", memory_nanny=t)',
         "ValueError", "cols must be >= 0, got -1"),
        ("from_address_size_overflow",
         (f'{T}\nIndirectMemory2D.from_address(ctypes.addressof(t), 2**40, 2**40, "d", '
          'memory_nanny=t)'),
         "MemoryError", "overflows"),
        ("from_ctype_ptr_size_overflow",
         f'{T}\nIndirectMemory2D.from_ctype_ptr(ctypes.cast(t, ctypes.POINTER(P)), 2**40, 2**40)',
         "MemoryError", "overflows"),
        ("from_ctype_ptr_more_rows_than_table",
         f"{T}\nIndirectMemory2D.from_ctype_ptr(t, 3, 3)",
         "BufferError", "ctypes table has 2 entries, 3 rows requested"),
        ("from_ctype_ptr_negative_row_offset",
         f"{T}\nIndirectMemory2D.from_ctype_ptr(t, 2, 3, row_offset=-8)",
         "ValueError", "row_offset must be >= 0, got -8"),
        ("collection_bad_column_count", 'BufferCollection2D([b"ab"], column_count=-2)',
         "ValueError", "column_count must be >= 0 or -1 (auto), got -2"),
    ]),
    ("Unknown, empty and mistyped formats", [
        ("format_empty", 'IndirectMemory2D.create_memory(2, 3, "")',
         "ValueError", "format must not be empty"),
        ("format_blank", 'IndirectMemory2D.create_memory(2, 3, "  ")',
         "ValueError", "format must not be empty"),
        ("format_unknown", 'IndirectMemory2D.create_memory(2, 3, "Y")',
         "ValueError", "unknown format 'Y'"),
        ("format_unknown_bytes", 'IndirectMemory2D.create_memory(2, 3, b"Y")',
         "ValueError", "unknown format b'Y'"),
        ("format_non_ascii", 'IndirectMemory2D.create_memory(2, 3, "\\u00e9")',
         "ValueError", "not ASCII"),
        ("format_zero_itemsize", 'IndirectMemory2D.create_memory(2, 3, "0i")',
         "ValueError", "itemsize 0"),
        ("format_int", "IndirectMemory2D.create_memory(2, 3, 5)",
         "TypeError", "format must be str or bytes, not int"),
        ("format_none", "IndirectMemory2D.create_memory(2, 3, None)",
         "TypeError", "format must be str or bytes, not NoneType"),
        ("format_list", 'IndirectMemory2D.create_memory(2, 3, ["d"])',
         "TypeError", "list"),
        ("reinterpret_unknown_format", 'mem().reinterpret_data("Y")',
         "ValueError", "unknown format 'Y'"),
        ("reinterpret_indivisible_row", 'mem().reinterpret_data("5s")',
         "ValueError", "row of 24 bytes is not divisible by itemsize 5"),
        ("reinterpret_format_int", "mem().reinterpret_data(8)",
         "TypeError", "format must be str or bytes, not int"),
        ("from_address_empty_format",
         f'{T}\nIndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "", memory_nanny=t)',
         "ValueError", "format must not be empty"),
        ("collection_unknown_format", 'BufferCollection2D([b"ab"], format="Y")',
         "ValueError", "unknown format 'Y'"),
        ("as_indirect_unknown_format", 'as_indirect([[1.0]], format="Y")',
         "ValueError", "unknown format 'Y'"),
        ("format_nul", 'IndirectMemory2D.create_memory(2, 3, "d\\x00i")',
         "ValueError", "it contains a NUL character"),
        ("pinned_format_nul", 'mem().pinned(b"d\\x00").__enter__()',
         "ValueError", "it contains a NUL character"),
        ("view_from_rows_objects", "IndirectMemory2D.view_from_rows(np.empty((2, 2), object))",
         "BufferError", "the source holds Python objects (format 'O')"),
        ("collection_objects", "BufferCollection2D([np.empty(2, object)])",
         "BufferError", "row 0 holds Python objects (format 'O')"),
        ("copy_from_objects", "mem().copy_from(np.empty((2, 3), object), cast=True)",
         "BufferError", "the source holds Python objects"),
        ("as_indirect_objects", 'as_indirect([["a", None]])',
         "BufferError", "holds Python objects"),
    ]),
    ("Wrong types", [
        ("instantiate_directly", "IndirectMemory2D()",
         "TypeError", "cannot be instantiated directly"),
        ("create_float_size", 'IndirectMemory2D.create_memory(2.5, 3, "d")',
         "TypeError", "integer"),
        ("create_str_size", 'IndirectMemory2D.create_memory("2", 3, "d")',
         "TypeError", "integer"),
        ("from_ctype_ptr_list", "IndirectMemory2D.from_ctype_ptr([1, 2], 2, 3)",
         "TypeError", "got list"),
        ("from_ctype_ptr_array_of_values",
         "IndirectMemory2D.from_ctype_ptr((ctypes.c_double * 3)(), 1, 3)",
         "TypeError", "expected a ctypes array of POINTER(T)"),
        ("from_ctype_ptr_single_pointer",
         "IndirectMemory2D.from_ctype_ptr(ctypes.pointer(ctypes.c_double()), 1, 1)",
         "TypeError", "POINTER(POINTER(T))"),
        ("from_address_str", 'IndirectMemory2D.from_address("0x1000", 1, 1, "d")',
         "TypeError", "address must be an int, a ctypes pointer or c_void_p, or a cffi pointer, "
         "not str"),
        ("from_address_float", 'IndirectMemory2D.from_address(4096.0, 1, 1, "d")',
         "TypeError", "address must be an int or a pointer object, not float"),
        ("from_address_bool", 'IndirectMemory2D.from_address(True, 1, 1, "d")',
         "TypeError", "address must be an int or a pointer object, not bool"),
        ("from_address_negative", 'IndirectMemory2D.from_address(-1, 1, 1, "d")',
         "ValueError", "address -1 is not a valid pointer value"),
        ("from_address_too_large", 'IndirectMemory2D.from_address(2**64, 1, 1, "d")',
         "ValueError", "is not a valid pointer value"),
        ("collection_not_iterable", "BufferCollection2D(5)",
         "TypeError", "not iterable"),
        ("collection_int_row", 'BufferCollection2D([b"ab", 12])',
         "TypeError", "row 1 is not a buffer: int"),
        ("collection_str_row", 'BufferCollection2D(["ab"])',
         "TypeError", "row 0 is not a buffer: str"),
        ("collection_init_twice", 'c = BufferCollection2D([b"ab"])\nc.__init__([b"cd"])',
         "TypeError", "already initialised"),
        ("view_from_rows_list", "IndirectMemory2D.view_from_rows([[1.0, 2.0]])",
         "TypeError", "list"),
        ("copy_from_list", "mem().copy_from([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])",
         "TypeError", "list"),
        ("copy_to_none", "mem().copy_to(None)",
         "TypeError", "NoneType"),
        ("as_indirect_scalar_object", "as_indirect(object())",
         "ValueError", "expected 1-D or more dimensional data, got a scalar"),
        ("as_indirect_0d", "as_indirect(np.float64(1.5))",
         "ValueError", "expected 1-D or more dimensional data, got a scalar"),
        ("uninitialised_object", "memoryview(IndirectMemory2D.__new__(IndirectMemory2D))",
         "ValueError", "uninitialised"),
        ("uninitialised_collection", "BufferCollection2D.__new__(BufferCollection2D).shape",
         "ValueError", "uninitialised"),
        ("direct_exporter_instantiated", "type(mem().direct_view().obj)()",
         "TypeError", ""),
        ("direct_exporter_uninitialised_export",
         "cls = type(mem().direct_view().obj)\nmemoryview(cls.__new__(cls))",
         "ValueError", ""),
        ("subclass_memory", 'type("Sub", (IndirectMemory2D,), {})',
         "TypeError", "not an acceptable base type"),
        ("subclass_collection", "class Sub(BufferCollection2D): pass",
         "TypeError", "not an acceptable base type"),
        ("from_ctype_ptr_array_subclass",
         "class T(P * 2): pass\nIndirectMemory2D.from_ctype_ptr(T(), 2, 3)",
         "TypeError", "got the subclass T"),
        ("from_ctype_ptr_pointer_subclass",
         ("class PP(ctypes.POINTER(P)): _type_ = P\n"
          "IndirectMemory2D.from_ctype_ptr(ctypes.cast(table(), PP), 2, 3)"),
         "TypeError", "got the subclass PP"),
        ("pinned_format_int", "mem().pinned(format=8).__enter__()",
         "TypeError", "format must be str or bytes, not int"),
        ("pinned_instantiated", "type(mem().pinned())()",
         "TypeError", "made by IndirectMemory.pinned()"),
    ]),
    ("NULL pointer tables and NULL rows", [
        ("from_address_null_table", 'IndirectMemory2D.from_address(0, 2, 3, "d")',
         "ValueError", "the pointer table is NULL"),
        ("from_address_null_rows",
         (f'{NULLS}\nIndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "d", '
          'memory_nanny=t)'),
         "ValueError", "row 0 of the pointer table is NULL"),
        ("from_address_second_row_null",
         ('t = (P * 2)((ctypes.c_double * 3)())\n'
          'IndirectMemory2D.from_address(ctypes.addressof(t), 2, 3, "d", memory_nanny=t)'),
         "ValueError", "row 1 of the pointer table is NULL"),
        ("from_ctype_ptr_null_pointer",
         "IndirectMemory2D.from_ctype_ptr(ctypes.POINTER(P)(), 2, 3)",
         "ValueError", "the ctypes pointer table is NULL"),
        ("from_ctype_ptr_null_rows", f"{NULLS}\nIndirectMemory2D.from_ctype_ptr(t, 2, 3)",
         "ValueError", "row 0 of the pointer table is NULL"),
        ("from_ctype_ptr_pointer_to_null_rows",
         f"{NULLS}\nIndirectMemory2D.from_ctype_ptr(ctypes.cast(t, ctypes.POINTER(P)), 2, 3)",
         "ValueError", "row 0 of the pointer table is NULL"),
        ("only_row_repointed_to_null",
         "t = table(1)\nm = IndirectMemory2D.from_ctype_ptr(t, 1, 3, memory_nanny=t)\nt[0] = P()\n"
         "m.to_numpy()",
         "ValueError", "row 0 of the source's pointer table is NULL"),
    ]),
    ("Mismatched collections", [
        ("collection_row_length_mismatch", 'BufferCollection2D([b"abc", b"de"])',
         "BufferError", "row 1 has 2 elements, expected 3"),
        ("collection_column_count_mismatch", 'BufferCollection2D([b"abc"], column_count=4)',
         "BufferError", "row 0 has 3 elements, expected 4"),
        ("collection_fifth_row_bad",
         "BufferCollection2D([np.zeros(4)] * 4 + [np.zeros(5)] + [np.zeros(4)])",
         "BufferError", "row 4 has 5 elements, expected 4"),
        ("collection_format_mismatch",
         "BufferCollection2D([np.zeros(3), np.zeros(3, dtype=np.int64)])",
         "BufferError", "expected 'd' (itemsize 8)"),
        ("collection_itemsize_mismatch",
         "BufferCollection2D([np.zeros(3), np.zeros(3, dtype=np.float32)])",
         "BufferError", "(itemsize 4), expected 'd' (itemsize 8)"),
        ("collection_explicit_format_mismatch",
         'BufferCollection2D([np.zeros(3)], format="i")',
         "BufferError", "row 0 has format 'd' (itemsize 8), expected 'i'"),
        ("collection_empty_without_format", "BufferCollection2D([])",
         "ValueError", "needs an explicit format"),
        ("collection_empty_without_column_count", 'BufferCollection2D([], format="d")',
         "ValueError", "needs an explicit column_count"),
        ("collection_indirect_row", "BufferCollection2D([mem()])",
         "BufferError", "row 0 is an indirect buffer"),
        ("collection_2d_row_without_unravel",
         "BufferCollection2D([np.zeros((2, 2))], unravel=False)",
         "BufferError", "row 0 is 2-D, expected 1-D"),
        ("copy_from_shape_mismatch", "mem().copy_from(np.zeros((3, 2)))",
         "BufferError", "shape mismatch"),
        ("copy_from_format_mismatch",
         "mem().copy_from(np.zeros((2, 3), dtype=np.int32), casting='no')",
         "BufferError", "format mismatch"),
        ("copy_from_cast_refused_by_rule",
         "IndirectMemory2D.create_memory(2, 3, 'i').copy_from(np.zeros((2, 3)))",
         "BufferError", "with casting='same_kind'; casting='unsafe' allows it"),
        ("copy_from_no_conversion",
         "mem().copy_from(np.zeros((2, 3), dtype=np.complex64))",
         "BufferError", "no conversion between these formats; cast=True copies the bytes"),
        ("copy_from_bad_casting_name", "mem().copy_from(np.zeros((2, 3)), casting='strict')",
         "ValueError", "casting must be one of 'no', 'equiv', 'safe', 'same_kind', 'unsafe', "
         "got 'strict'"),
        ("copy_from_casting_not_str", "mem().copy_from(np.zeros((2, 3)), casting=2)",
         "TypeError", "casting must be one of"),
        ("copy_from_cast_and_casting",
         "mem().copy_from(np.zeros((2, 3)), cast=True, casting='unsafe')",
         "ValueError", "cast=True copies the bytes unchanged and takes no casting rule"),
        ("window_step_zero", "mem()[:, ::0]", "ValueError",
         "slice step cannot be zero (dimension 1)"),
        ("window_too_many_indices", "mem()[0:1, 0:1, 0:1]", "IndexError",
         "too many indices: 3 for 2 dimensions"),
        ("window_slice_bound_not_int", "mem()[:, 'a':]", "TypeError",
         "slice indices must be integers or None, not str (dimension 1)"),
        ("window_two_ellipses", "mem()[..., ...]", "IndexError", "a single ellipsis"),
        ("window_index_out_of_range", "mem()[:, 3]", "IndexError",
         "index 3 is out of range for dimension 1 of size 3"),
        ("window_negative_index_out_of_range", "mem()[:, -4]", "IndexError",
         "index -4 is out of range for dimension 1 of size 3"),
        ("window_float_index", "mem()[:, 1.5]", "TypeError",
         "indices must be integers, slices or '...', not float (dimension 1)"),
        ("window_integer_on_indirect_dimension", "mem()[1]", "IndexError",
         "an integer index cannot drop dimension 0: it is reached through pointers; use a "
         "slice (1:2)"),
        ("window_only_integers", "mem3(indirect=(0,))[0:1, 1, 2][0, ...]", "IndexError",
         "an integer index cannot drop dimension 0"),
        ("window_of_released", "released()[0:1]", "ValueError",
         "operation on released IndirectMemory2D"),
        ("window_column_step_to_c", "mem()[:, ::2].pinned('d').__enter__()", "BufferError",
         "a table of one pointer level (T**) was requested, but the window is"),
        ("window_iterated", "list(mem())", "TypeError", "is not iterable"),
        ("release_with_window", "(lambda m: (KEEP.append(m[0:1]), m.release()))(mem())",
         "BufferError", "cannot release: IndirectMemory2D has 1 exported buffer(s)"),
        ("copy_from_cast_itemsize_mismatch",
         "mem().copy_from(np.zeros((2, 3), dtype=np.int32), cast=True)",
         "BufferError", "cast needs equal itemsizes (cast=True copies the bytes unchanged; "
         "casting= converts values)"),
        ("copy_from_1d", "mem().copy_from(np.zeros(6))",
         "BufferError", "copy needs buffers of the same dimensions"),
        ("copy_to_shape_mismatch", "mem().copy_to(np.zeros((2, 4)))",
         "BufferError", "shape mismatch"),
    ]),
    ("Non-contiguous inputs where contiguous ones are required", [
        ("collection_strided_row", "BufferCollection2D([np.zeros(6)[::2]])",
         "BufferError", "row 0 is not C-contiguous"),
        ("collection_fortran_row", 'BufferCollection2D([np.zeros((2, 3), order="F")])',
         "BufferError", "row 0 is not C-contiguous"),
        ("view_from_rows_strided", "IndirectMemory2D.view_from_rows(np.zeros((3, 4))[:, ::2])",
         "BufferError", "rows of the source are not C-contiguous: dimension 1 has stride 16, "
         "a C-contiguous row needs 8"),
        ("view_from_columns_c_order", "IndirectMemory2D.view_from_columns(np.zeros((3, 4)))",
         "BufferError", "columns of the source are not contiguous"),
        ("view_from_columns_indirect", "IndirectMemory2D.view_from_columns(mem())",
         "BufferError", "columns of an indirect buffer are not contiguous"),
        ("view_from_rows_3d_pixel_strided",
         "IndirectMemory2D.view_from_rows(np.zeros((2, 3, 4))[:, :, ::2])",
         "BufferError", "dimension 2 has stride 16, a C-contiguous row needs 8"),
        ("view_from_rows_3d_fortran",
         "IndirectMemory2D.view_from_rows(np.asfortranarray(np.zeros((2, 3, 4))))",
         "BufferError", "dimension 2 has stride 48, a C-contiguous row needs 8"),
        ("view_from_rows_0d", "IndirectMemory2D.view_from_rows(np.array(1.5))",
         "BufferError", "expected a 1-D or N-D buffer, got 0-D"),
        ("view_from_columns_3d", "IndirectMemory2D.view_from_columns(np.zeros((2, 2, 2)))",
         "BufferError", "expected a 1-D or 2-D buffer, got 3-D"),
        ("direct_view_scattered_rows",
         "BufferCollection2D([bytearray(4), bytearray(4)]).direct_view()",
         "BufferError", "rows are not back to back"),
        ("consumer_without_indirect",
         "_testbuffer.ndarray(mem(), getbuf=_testbuffer.PyBUF_RECORDS_RO)",
         "BufferError", "must request PyBUF_INDIRECT"),
        ("consumer_simple", "_testbuffer.ndarray(mem(), getbuf=_testbuffer.PyBUF_SIMPLE)",
         "BufferError", "must request PyBUF_INDIRECT"),
        ("consumer_contiguous",
         ("_testbuffer.ndarray(mem(), getbuf=_testbuffer.PyBUF_INDIRECT | "
          "_testbuffer.PyBUF_C_CONTIGUOUS)"),
         "BufferError", "cannot be exported as contiguous"),
        ("numpy_asarray", "np.asarray(mem())",
         "BufferError", "suboffsets"),
        ("direct_exporter_fortran",
         "_testbuffer.ndarray(mem().direct_view().obj, getbuf=_testbuffer.PyBUF_F_CONTIGUOUS)",
         "BufferError", "not Fortran-contiguous"),
        ("direct_exporter_format_without_nd",
         "_testbuffer.ndarray(mem().direct_view().obj, getbuf=_testbuffer.PyBUF_FORMAT)",
         "BufferError", "PyBUF_FORMAT without PyBUF_ND"),
    ]),
    ("Writable requests on read-only data", [
        ("pinned_writable_of_readonly", "mem(readonly=True).pinned(writable=True).__enter__()",
         "BufferError", "writable table requested from read-only memory"),
        ("writable_export_of_readonly",
         "_testbuffer.ndarray(mem(readonly=True), getbuf=_testbuffer.PyBUF_FULL)",
         "BufferError", "IndirectMemory2D is read-only"),
        ("copy_from_into_readonly", "mem(readonly=True).copy_from(np.zeros((2, 3)))",
         "BufferError", "cannot copy into IndirectMemory2D"),
        ("copy_to_bytes", "mem().copy_to(bytes(48))",
         "BufferError", "cannot copy into bytes"),
        ("view_from_rows_of_bytes", 'IndirectMemory2D.view_from_rows(b"abc")',
         "BufferError", "pass readonly=True"),
        ("view_from_rows_of_readonly_array",
         "a = np.zeros((2, 2))\na.flags.writeable = False\nIndirectMemory2D.view_from_rows(a)",
         "BufferError", "read-only"),
        ("as_indirect_writable_of_readonly", "as_indirect(mem(readonly=True), readonly=False)",
         "BufferError", "writable memory was requested, but the IndirectMemory2D is read-only"),
        ("as_indirect_writable_of_bytes", 'as_indirect(b"abc", readonly=False)',
         "BufferError", "writable memory was requested, but the bytes is read-only"),
        ("collection_of_bytes_writable_export",
         ('c = BufferCollection2D([b"ab"])\n'
          '_testbuffer.ndarray(c, getbuf=_testbuffer.PyBUF_FULL)'),
         "BufferError", "BufferCollection2D is read-only"),
        ("memoryview_write_to_readonly", "memoryview(mem(readonly=True))[0, 0] = 1.0",
         "TypeError", "read-only"),
        ("direct_view_write_to_readonly", "mem(readonly=True).direct_view()[0, 0] = 1.0",
         "TypeError", "read-only"),
    ]),
    ("Operations while exported", [
        ("release_while_pinned",
         "m = mem()\nKEEP.append(m.pinned())\nKEEP[-1].__enter__()\nm.release()",
         "BufferError", "cannot release: IndirectMemory2D has 1 exported buffer(s)"),
        ("reinterpret_while_pinned",
         'm = mem()\nKEEP.append(m.pinned())\nKEEP[-1].__enter__()\nm.reinterpret_data("B")',
         "BufferError", "cannot reinterpret_data"),
        ("make_read_only_while_pinned",
         "m = mem()\nKEEP.append(m.pinned())\nKEEP[-1].__enter__()\nm.make_read_only()",
         "BufferError", "cannot make_read_only"),
        ("release_while_exported", "exported().release()",
         "BufferError", "cannot release: IndirectMemory2D has 1 exported buffer(s)"),
        ("reinterpret_while_exported", 'exported().reinterpret_data("B")',
         "BufferError", "cannot reinterpret_data: IndirectMemory2D has 1 exported buffer(s)"),
        ("make_read_only_while_exported", "exported().make_read_only()",
         "BufferError", "cannot make_read_only"),
        ("with_exit_while_exported", "m = mem()\nwith m: KEEP.append(memoryview(m))",
         "BufferError", "cannot release"),
        ("release_while_testbuffer_export",
         ("exported(lambda m: _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO))"
          ".release()"),
         "BufferError", "cannot release"),
        ("release_while_direct_view", "exported(lambda m: m.direct_view()).release()",
         "BufferError", "cannot release"),
        ("release_while_numpy_direct_view",
         "exported(lambda m: np.asarray(m.direct_view())).release()",
         "BufferError", "cannot release"),
        ("collection_release_while_exported",
         'c = BufferCollection2D([bytearray(b"ab")])\nKEEP.append(memoryview(c))\nc.release()',
         "BufferError", "cannot release: BufferCollection2D has 1 exported buffer(s)"),
        ("resize_row_held_by_collection",
         'r = bytearray(b"ab")\nc = BufferCollection2D([r])\nr.append(1)',
         "BufferError", "cannot be re-sized"),
        ("resize_source_of_row_view",
         'r = bytearray(b"ab")\nv = IndirectMemory2D.view_from_rows(r)\nr.append(1)',
         "BufferError", "cannot be re-sized"),
    ]),
    ("Lent memory (wrapped without a memory_nanny)", [
        ("lent_direct_view",
         "t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3)\nm.direct_view()",
         "BufferError", "direct_view() of lent IndirectMemory2D would point into the lent memory"),
        ("lent_row_view_of_memoryview",
         ("t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3)\n"
          "IndirectMemory2D.view_from_rows(memoryview(m))"),
         "BufferError", "cannot view the rows of lent memory through memoryview"),
        ("lent_row_view_of_memoryview_slice",
         ("t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3)\n"
          "IndirectMemory2D.view_from_rows(memoryview(m)[1:])"),
         "BufferError", "cannot view the rows of lent memory"),
        ("lent_release_while_pinned",
         ("t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3)\nKEEP.append(m.pinned())\n"
          "KEEP[-1].__enter__()\nm.release()"),
         "BufferError", "is revoked, but 1 C call(s) pinned it"),
        ("lent_after_revocation",
         ("t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3)\nKEEP.append(memoryview(m))\n"
          "m.release()\nm.shape"),
         "ValueError", "operation on released IndirectMemory2D"),
        ("nanny_kept_release_while_exported",
         ("t = table()\nm = IndirectMemory2D.from_ctype_ptr(t, 2, 3, memory_nanny=t)\n"
          "KEEP.append(memoryview(m))\nm.release()"),
         "BufferError", "cannot release: IndirectMemory2D has 1 exported buffer(s)"),
    ]),
    ("Entering pinned(): the checks of the typed tables", [
        ("pinned_wrong_format", 'mem().pinned(format="i").__enter__()',
         "TypeError", "element format is 'd', not 'i'"),
        ("pinned_wrong_row_offset", "mem().pinned(row_offset=8).__enter__()",
         "ValueError", "not 8 as requested"),
        ("pinned_entered_twice", "p = mem().pinned()\np.__enter__()\np.__enter__()",
         "ValueError", "already entered"),
        # A negative row_offset is no "any offset" (issue 21): a 1-based table stays 1-based.
        ("pinned_negative_row_offset", "mem().pinned(row_offset=-1).__enter__()",
         "ValueError", "row_offset must be >= 0, got -1"),
        ("pinned_row_offset_min", "mem().pinned(row_offset=-2**63).__enter__()",
         "ValueError", "row_offset must be >= 0, got -9223372036854775808"),
        ("pinned_row_offset_beyond_ssize_t", "mem().pinned(row_offset=2**63)",
         "OverflowError", "too large"),
        ("pinned_one_based_negative_row_offset",
         f"{ONE_BASED}m.pinned(row_offset=-8).__enter__()",
         "ValueError", "row_offset must be >= 0, got -8"),
        ("pinned_one_based_as_zero_based", f"{ONE_BASED}m.pinned(row_offset=0).__enter__()",
         "ValueError", "rows start 8 bytes after each row pointer (row_offset), not 0"),
    ]),
    ("Operations after release()", [
        ("released_memoryview", "memoryview(released())",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_testbuffer",
         "_testbuffer.ndarray(released(), getbuf=_testbuffer.PyBUF_FULL_RO)",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_shape", "released().shape",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_format", "released().format",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_len", "len(released())",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_address", "released().address",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_reinterpret_data", 'released().reinterpret_data("B")',
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_make_read_only", "released().make_read_only()",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_copy_from", "released().copy_from(np.zeros((2, 3)))",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_copy_to", "released().copy_to(np.zeros((2, 3)))",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_as_copy_source", "mem().copy_from(released())",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_to_numpy", "released().to_numpy()",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_direct_view", "released().direct_view()",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_copy", "released().copy()",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_with", "with released(): pass",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_as_indirect", "as_indirect(released())",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_as_collection_row", "BufferCollection2D([released()])",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_collection",
         'c = BufferCollection2D([b"ab"])\nc.release()\nmemoryview(c)',
         "ValueError", "operation on released BufferCollection2D"),
        ("released_direct_view_exporter",
         "m = mem()\ne = m.direct_view().obj\nm.release()\nmemoryview(e)",
         "ValueError", "operation on released IndirectMemory2D"),
        ("released_pinned", "released().pinned().__enter__()",
         "ValueError", "operation on released IndirectMemory2D"),
        ("uninitialised_pinned", "IndirectMemory2D.__new__(IndirectMemory2D).pinned().__enter__()",
         "ValueError", "operation on uninitialised IndirectMemory2D"),
    ]),
    ("Pickling and copying raw pointers", [
        ("pickle_memory", "pickle.dumps(mem())",
         "TypeError", "cannot pickle IndirectMemory2D: it holds raw pointers"),
        ("pickle_memory_protocol_0", "pickle.dumps(mem(), protocol=0)",
         "TypeError", "it holds raw pointers"),
        ("pickle_collection", 'pickle.dumps(BufferCollection2D([b"ab"]))',
         "TypeError", "cannot pickle BufferCollection2D"),
        ("pickle_released", "pickle.dumps(released())",
         "TypeError", "raw pointers"),
        ("copy_copy", "copy.copy(mem())",
         "TypeError", "use mem.copy()"),
        ("copy_deepcopy", "copy.deepcopy(mem())",
         "TypeError", "use mem.copy()"),
        ("pickle_nanny", "pickle.dumps(nannies.FreeRowsAndTableNanny())",
         "TypeError", "cannot pickle a memory nanny"),
        ("pickle_direct_view_exporter",
         "m = mem()\nm.copy_from(np.full((2, 3), -1.0))\npickle.dumps(m.direct_view().obj)",
         "TypeError", ""),
        ("reduce_direct_view_exporter", "mem().direct_view().obj.__reduce_ex__(2)",
         "TypeError", ""),
        ("pickle_pinned", "pickle.dumps(mem().pinned())",
         "TypeError", "cannot pickle"),
    ]),
    ("N-D memory: shapes and indirect dimensions", [
        ("nd_shape_1d", 'IndirectMemory.create_memory((3,), "d")',
         "ValueError", "shape must have 2 to 8 dimensions, got 1"),
        ("nd_shape_9d", 'IndirectMemory.create_memory((1,) * 9, "d")',
         "ValueError", "shape must have 2 to 8 dimensions, got 9"),
        ("nd_shape_negative", 'IndirectMemory.create_memory((2, -1, 3), "d")',
         "ValueError", "shape[1] must be >= 0, got -1"),
        ("nd_shape_bool", 'IndirectMemory.create_memory((2, True, 3), "d")',
         "TypeError", "shape[1] must be an int, not bool"),
        ("nd_shape_float", 'IndirectMemory.create_memory((2, 3, 4.0), "d")',
         "TypeError", "shape[2] must be an int, not float"),
        ("nd_shape_int", 'IndirectMemory.create_memory(6, "d")',
         "TypeError", "shape must be a sequence of ints, not int"),
        ("nd_data_overflow", 'IndirectMemory.create_memory((2**40, 2**40, 8), "d")',
         "MemoryError", "shape (1099511627776, 1099511627776, 8) of 8-byte elements overflows"),
        ("nd_table_overflow", 'IndirectMemory.create_memory((2**40, 2**40, 0), "d")',
         "MemoryError", "the pointer tables of shape (1099511627776, 1099511627776, 0) overflow"),
        ("nd_huge_allocation",
         'IndirectMemory.create_memory((2**20, 2**30, 2**10), "B", indirect=(0,))',
         "MemoryError", "cannot allocate memory of shape"),
        ("nd_huge_tables", 'IndirectMemory.create_memory((2**30, 2**29, 0), "B")',
         "MemoryError", "cannot allocate memory of shape"),
        ("nd_size_beyond_ssize_t", 'IndirectMemory.create_memory((2**64, 1, 1), "d")',
         "MemoryError", "shape[0] = 18446744073709551616 is too large"),
        ("nd_indirect_empty", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=())',
         "ValueError", "indirect must name at least one dimension"),
        ("nd_indirect_out_of_range", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(3,))',
         "ValueError", "indirect dimension 3 is out of range for 3 dimensions"),
        ("nd_indirect_negative", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(-1,))',
         "ValueError", "indirect dimension -1 is out of range for 3 dimensions"),
        ("nd_indirect_last_dimension",
         'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0, 2))',
         "ValueError", "(the last dimension holds the elements)"),
        ("nd_indirect_twice", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(1, 1))',
         "ValueError", "indirect dimension 1 is given twice"),
        ("nd_indirect_bool", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=(True,))',
         "TypeError", "indirect dimensions must be ints, not bool"),
        ("nd_indirect_int", 'IndirectMemory.create_memory((2, 3, 4), "d", indirect=0)',
         "TypeError", "indirect must be a sequence of dimensions, not int"),
        ("nd_instantiate_directly", "IndirectMemory()",
         "TypeError", "cannot be instantiated directly"),
        ("nd_subclass", 'type("Sub", (IndirectMemory,), {})',
         "TypeError", "not an acceptable base type"),
        ("nd_pickle", "pickle.dumps(mem3())",
         "TypeError", "cannot pickle IndirectMemory: it holds raw pointers"),
    ]),
    ("N-D memory: pointer structures, offsets and NULL pointers", [
        ("nd_from_address_null", 'IndirectMemory.from_address(0, (2, 3, 4), "d")',
         "ValueError", "the pointer table is NULL"),
        ("nd_null_table_pointer",
         f"{T3}\nt[1] = ctypes.POINTER(P)()\nIndirectMemory.from_ctype_ptr(t, (2, 3, 4))",
         "ValueError", "row 1 of the pointer table is NULL"),
        ("nd_null_row_pointer", f"{T3}\nt[1][2] = P()\nIndirectMemory.from_ctype_ptr(t, (2, 3, 4))",
         "ValueError", "element (1, 2) of the memory is behind a NULL pointer (in dimension 1)"),
        ("nd_from_address_null_row_pointer",
         (f'{T3}\nt[0][1] = P()\nIndirectMemory.from_address(ctypes.addressof(t), (2, 3, 4), "d", '
          'memory_nanny=t)'),
         "ValueError", "element (0, 1) of the memory is behind a NULL pointer (in dimension 1)"),
        ("nd_repointed_to_null",
         f"{T3}\nm = IndirectMemory.from_ctype_ptr(t, (2, 3, 4))\nt[0][1] = P()\nm.to_numpy()",
         "ValueError", "element (0, 1) of the source is behind a NULL pointer (in dimension 1)"),
        ("nd_offsets_wrong_length",
         (f'{T3}\nIndirectMemory.from_address(ctypes.addressof(t), (2, 3, 4), "d", '
          'memory_nanny=t, offsets=(8,))'),
         "ValueError", "offsets needs one value per indirect dimension (0, 1), got 1"),
        ("nd_offsets_negative",
         (f'{T3}\nIndirectMemory.from_address(ctypes.addressof(t), (2, 3, 4), "d", '
          'memory_nanny=t, offsets=(0, -8))'),
         "ValueError", "offsets[1] must be 0 to 9223372036854775807, got -8"),
        ("nd_offsets_bool", f"{T3}\nIndirectMemory.from_ctype_ptr(t, (2, 3, 4), offsets=(True, 0))",
         "TypeError", "offsets must be ints, not bool"),
        ("nd_ctypes_too_few_dimensions", "IndirectMemory.from_ctype_ptr(table3(), (2, 12))",
         "ValueError", "a ctypes table of 2 pointer level(s) needs at least 3 dimensions"),
        ("nd_ctypes_more_than_table", "IndirectMemory.from_ctype_ptr(table3(), (3, 3, 4))",
         "BufferError", "ctypes table has 2 entries, 3 requested"),
        ("nd_ctypes_null_pointer",
         "IndirectMemory.from_ctype_ptr(ctypes.POINTER(ctypes.POINTER(P))(), (2, 3, 4))",
         "ValueError", "the ctypes pointer table is NULL"),
    ]),
    ("N-D memory: views, copies and consumers", [
        ("nd_view_not_contiguous",
         "IndirectMemory.view_from_array(np.zeros((2, 3, 8))[:, :, ::2])",
         "BufferError", "not C-contiguous after its last indirect dimension 1: dimension 2 has "
         "stride 16, C-contiguous needs 8"),
        ("nd_view_frames_not_contiguous",
         "IndirectMemory.view_from_array(np.zeros((2, 6, 4))[:, ::2], indirect=(0,))",
         "BufferError", "dimension 1 has stride 64, C-contiguous needs 32"),
        ("nd_view_of_indirect_memory", "IndirectMemory.view_from_array(mem3())",
         "BufferError", "the source is itself indirect"),
        ("nd_view_1d", "IndirectMemory.view_from_array(np.zeros(4))",
         "BufferError", "expected a buffer of 2 to 8 dimensions, got 1-D"),
        ("nd_view_of_readonly_array",
         "a = np.zeros((2, 3, 4))\na.flags.writeable = False\nIndirectMemory.view_from_array(a)",
         "BufferError", "pass readonly=True"),
        ("nd_direct_view_not_one_block",
         "IndirectMemory.view_from_array(np.zeros((2, 3, 5))[:, :, 1:]).direct_view()",
         "BufferError", "rows are not back to back in memory"),
        ("nd_copy_shape_mismatch", "mem3().copy_from(np.zeros((2, 4, 3)))",
         "BufferError", "shape mismatch"),
        ("nd_copy_into_readonly", "mem3(readonly=True).copy_from(np.zeros((2, 3, 4)))",
         "BufferError", "cannot copy into IndirectMemory"),
        ("nd_consumer_without_indirect",
         "_testbuffer.ndarray(mem3(), getbuf=_testbuffer.PyBUF_RECORDS_RO)",
         "BufferError", "IndirectMemory is an indirect (T***) buffer: the consumer must request "
         "PyBUF_INDIRECT"),
        ("nd_numpy_asarray", "np.asarray(mem3(indirect=(1,)))",
         "BufferError", "suboffsets"),
        ("nd_as_indirect_1d", "as_indirect([1.0, 2.0], indirect=(0,))",
         "ValueError", "indirect memory needs 2 to 8 dimensions, got an array of shape (2,)"),
        ("nd_as_indirect_writable_of_readonly",
         "as_indirect(mem3(readonly=True), indirect=(0, 1), readonly=False)",
         "BufferError", "writable memory was requested, but the IndirectMemory is read-only"),
        ("nd_release_while_exported", "m = mem3()\nKEEP.append(memoryview(m))\nm.release()",
         "BufferError", "cannot release: IndirectMemory has 1 exported buffer(s)"),
        ("nd_released_shape", "m = mem3()\nm.release()\nm.shape",
         "ValueError", "operation on released IndirectMemory"),
        ("nd_pinned_wrong_format", 'mem3().pinned("i").__enter__()',
         "TypeError", "element format is 'd', not 'i'"),
        ("nd_pinned_negative_row_offset", "mem3().pinned(row_offset=-1).__enter__()",
         "ValueError", "row_offset must be >= 0, got -1"),
        ("nd_pinned_negative_offsets", "mem3().pinned(offsets=(-1, 0)).__enter__()",
         "ValueError", "offsets[0] must be 0 to 9223372036854775807, got -1"),
        ("nd_pinned_offsets_str", 'mem3().pinned(offsets="ab")',
         "TypeError", "offsets must be a sequence of ints, not str"),
        ("nd_as_indirect_one_shot_indirect_twice",
         "as_indirect(np.zeros((2, 3, 8))[:, :, ::2], indirect=iter([0, 0]))",
         "ValueError", "indirect dimension 0 is given twice"),
        ("nd_shape_one_shot_negative", 'IndirectMemory.create_memory(iter([2, -1, 4]), "d")',
         "ValueError", "shape[1] must be >= 0, got -1"),
        ("nd_reinterpret_indivisible", 'mem3().reinterpret_data("5s")',
         "ValueError", "row of 32 bytes is not divisible by itemsize 5"),
    ]),
]

CATALOGUE = [row for _, rows in SECTIONS for row in rows]


def child_code(code):
    *setup, action = code.split("\n")
    needs_numpy = "np." in code
    return (HARNESS.replace("NEEDS_NUMPY", str(needs_numpy)) + "\n" + "\n".join(setup)
            + f"\nACTION = {action!r}\n" + RUNNER)


# ---------------------------------------------------------------------------------------------
# the documentation table
# ---------------------------------------------------------------------------------------------

def _cell(text):
    return text.replace("|", "\\|")


def render_table():
    out = []
    for title, rows in SECTIONS:
        out += [f"### {title}", "", "| id | input | exception | message contains |",
                "|---|---|---|---|"]
        for row_id, code, exc, fragment in rows:
            shown = "; ".join(line.strip() for line in code.split("\n"))
            frag = f"`{_cell(fragment)}`" if fragment else "(any message)"
            out.append(f"| `{row_id}` | `{_cell(shown)}` | `{exc}` | {frag} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_doc():
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render_table()}{END}{tail}")


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # running as a script to rewrite the docs
    pytest = None

if pytest is not None:
    def test_catalogue_ids_are_unique():
        ids = [row[0] for row in CATALOGUE]
        assert len(ids) == len(set(ids))
        assert len(CATALOGUE) >= 100

    def test_docs_table_matches_catalogue():
        text = DOC.read_text()
        assert BEGIN in text and END in text
        table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
        for row_id, _, exc, _ in CATALOGUE:
            assert f"| `{row_id}` |" in table, f"docs/bad_input.md does not list {row_id}"
        assert table == render_table(), \
            "docs/bad_input.md is stale: run `python tests/test_catalogue.py`"

    @pytest.mark.parametrize("row_id, code, expected, fragment", CATALOGUE,
                             ids=[row[0] for row in CATALOGUE])
    def test_catalogue(row_id, code, expected, fragment):
        from conftest import run_python

        proc = run_python(child_code(code))
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["type"] == expected, (
            f"{row_id}: expected {expected}, got {result['type']}: {result['message']}")
        assert fragment in result["message"], (row_id, result["message"])
        # AddressSanitizer reports every allocation it refuses (allocator_may_return_null=1).
        stderr = [line for line in proc.stderr.splitlines()
                  if "WARNING: AddressSanitizer failed to allocate" not in line]
        assert stderr == [], proc.stderr

    def test_null_rows_are_accepted_when_cols_is_zero():
        from conftest import run_python

        run_python(HARNESS.replace("NEEDS_NUMPY", "False") + """
t = (P * 3)()
m = IndirectMemory2D.from_address(ctypes.addressof(t), 3, 0, "d", memory_nanny=t)
assert m.shape == (3, 0) and memoryview(m).tolist() == [[], [], []]
m = IndirectMemory2D.from_ctype_ptr(t, 3, 0)
assert m.shape == (3, 0)
""")


if __name__ == "__main__":
    write_doc()
    print(f"wrote {len(CATALOGUE)} rows to {DOC}", file=sys.stderr)
