# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IndirectMemory2D and BufferCollection2D: T** memory exported through the buffer protocol."""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_FORMAT,
    PyBUF_FULL_RO, PyBUF_INDIRECT, PyBUF_ND, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, strcmp

import operator
import struct
import sys

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX
    Py_buffer* PyMemoryView_GET_BUFFER(object)

# Every consumer must ask for at least this to follow row pointers.
cdef int _INDIRECT_FLAGS = PyBUF_INDIRECT
# Contiguity requests cannot be met by a table of row pointers.
cdef int _CONTIGUITY_BITS = (
    (PyBUF_C_CONTIGUOUS | PyBUF_F_CONTIGUOUS | PyBUF_ANY_CONTIGUOUS) & ~PyBUF_INDIRECT)

cdef bint _LITTLE = sys.byteorder == "little"
# What a NULL Py_buffer.format means.
cdef const char* _FMT_B = "B"
# One past the largest pointer value (a Python int: no C shift overflow).
_ADDRESS_LIMIT = 1 << (8 * struct.calcsize("P"))

# ---------------------------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------------------------

# format (as given) -> (ascii bytes, itemsize); formats are few, so the cache stays small.
cdef dict _format_cache = {}

# Native single-character codes grouped by kind, so that e.g. 'l' and 'q' (both 8-byte signed
# on LP64) compare equal when checking that two buffers hold the same element type.
cdef dict _KIND = {
    "b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "n": "i",
    "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u", "N": "u",
    "e": "f", "f": "f", "d": "f", "?": "?", "c": "c", "P": "P",
}


cdef tuple _parse_format(object format):
    """Validate a struct format; return (ascii bytes, itemsize)."""
    cdef bint cacheable = type(format) is str or type(format) is bytes
    if cacheable:
        cached = _format_cache.get(format)
        if cached is not None:
            return <tuple>cached
    # Exact str from here on: a subclass could override encode()/isascii() and make the
    # validated text differ from the exported one.
    cdef str text
    if isinstance(format, bytes):
        text = (<bytes>format).decode("ascii", "replace")
    elif isinstance(format, str):
        text = str.__str__(format)
    else:
        raise TypeError(f"format must be str or bytes, not {type(format).__name__}")
    if not text or not text.strip():
        raise ValueError(f"format must not be empty, got {format!r}")
    if not text.isascii():
        raise ValueError(f"unknown format {format!r}: not ASCII")
    try:
        itemsize = struct.calcsize(text)
    except struct.error as exc:
        raise ValueError(f"unknown format {format!r}: {exc}") from None
    if itemsize <= 0:
        raise ValueError(f"format {format!r} has itemsize 0")
    result = (text.encode("ascii"), itemsize)
    if cacheable and len(_format_cache) < 256:
        _format_cache[format] = result
    return result


cdef bint _is_native_order(str order):
    """True if a struct byte-order character means this machine's byte order."""
    return order in ("", "@", "=") or order == ("<" if _LITTLE else ">") or \
        (order == "!" and not _LITTLE)


cdef str _canonical_format(object fmt):
    """A key equal for formats that describe the same native element (e.g. 'l', '@q', '<q')."""
    if fmt is None:
        return "u1"
    text = (<bytes>fmt).decode("ascii", "replace") if isinstance(fmt, bytes) else <str>fmt
    order, code = "", text
    if text[:1] in ("@", "=", "<", ">", "!"):
        order, code = text[:1], text[1:]
    if len(code) == 1 and code in _KIND and _is_native_order(order):
        if order in ("", "@"):
            return f"{_KIND[code]}{struct.calcsize(code)}"
        if code not in "nNP":
            return f"{_KIND[code]}{struct.calcsize(order + code)}"
    return text


cdef str _native_format(str fmt):
    """'<i' -> 'i' where the standard-size type equals the native one (ctypes' formats)."""
    if len(fmt) == 2 and fmt[1] in _KIND and fmt[1] not in "nNP" and fmt[0] != "@" \
            and _is_native_order(fmt[0]) and struct.calcsize(fmt) == struct.calcsize(fmt[1]):
        return fmt[1]
    return fmt


# ---------------------------------------------------------------------------------------------
# size arithmetic
# ---------------------------------------------------------------------------------------------

cdef int _check_dims(Py_ssize_t rows, Py_ssize_t cols) except -1:
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if cols < 0:
        raise ValueError(f"cols must be >= 0, got {cols}")
    return 0


cdef Py_ssize_t _total_bytes(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t itemsize) except -1:
    """rows*cols*itemsize, or MemoryError if it does not fit in Py_ssize_t."""
    if cols != 0 and itemsize > PY_SSIZE_T_MAX // cols:
        raise MemoryError(f"cols*itemsize overflows: {cols}*{itemsize}")
    cdef Py_ssize_t row_bytes = cols * itemsize
    if rows != 0 and row_bytes > PY_SSIZE_T_MAX // rows:
        raise MemoryError(f"rows*cols*itemsize overflows: {rows}*{cols}*{itemsize}")
    if <size_t>rows > (<size_t>PY_SSIZE_T_MAX) // sizeof(void*):
        raise MemoryError(f"a table of {rows} row pointers overflows")
    return rows * row_bytes


# ---------------------------------------------------------------------------------------------
# generic element copy between two acquired 2-D buffers
# ---------------------------------------------------------------------------------------------

cdef inline const char* _format_of(const Py_buffer* view) noexcept:
    if view.format == NULL:
        return _FMT_B
    return view.format


cdef int _check_exported_format(const Py_buffer* view, Py_ssize_t row) except -1:
    """An exporter's itemsize and format must be usable: itemsize > 0, ASCII format."""
    cdef const char* f = _format_of(view)
    cdef Py_ssize_t i = 0
    cdef bint ascii = True
    while f[i] != 0:
        if <unsigned char>f[i] >= 128:
            ascii = False
        i += 1
    if view.itemsize > 0 and ascii:
        return 0
    what = "the source" if row < 0 else f"row {row}"
    if view.itemsize <= 0:
        raise BufferError(f"{what} has itemsize {view.itemsize}")
    raise BufferError(f"{what} has a non-ASCII format {(<bytes>f).decode('utf-8', 'replace')!r}")


cdef inline char* _row_ptr(const Py_buffer* view, Py_ssize_t i) noexcept nogil:
    """Start of row i of a 2-D (direct or PIL-style indirect) buffer."""
    cdef char* p = <char*>view.buf + i * view.strides[0]
    if view.suboffsets != NULL and view.suboffsets[0] >= 0:
        p = (<char**>p)[0] + view.suboffsets[0]
    return p


cdef struct _Scan:
    bint empty      # no elements at all
    Py_ssize_t null_row   # index of a NULL row pointer in an indirect buffer, or -1
    char* lo        # lowest byte touched by an element
    char* hi        # one past the highest byte touched
    char* first     # start of row 0
    bint block      # rows lie back to back with contiguous elements: one memmove copies all


cdef void _scan(const Py_buffer* view, bint trusted, _Scan* out) noexcept nogil:
    """Extent of a 2-D buffer's elements, and whether they form one C-contiguous block.

    trusted: the buffer is an IndirectMemory2D whose rows are known to be back to back.
    """
    cdef Py_ssize_t i, rows = view.shape[0], cols = view.shape[1]
    cdef Py_ssize_t stride = view.strides[1], k = view.itemsize, row_bytes = cols * k
    cdef char* start
    cdef char* a
    cdef char* b
    out.lo = out.hi = out.first = NULL
    out.block = False
    out.empty = rows == 0 or cols == 0
    out.null_row = -1
    if out.empty:
        return
    cdef bint block = cols == 1 or stride == k
    out.first = _row_ptr(view, 0)
    cdef Py_ssize_t rstride = view.strides[0]
    if view.suboffsets == NULL or view.suboffsets[0] < 0:
        # Direct buffer: the extent follows from the strides alone, no need to walk rows.
        a = b = out.first
        if rstride >= 0:
            b += (rows - 1) * rstride
        else:
            a += (rows - 1) * rstride
        if stride >= 0:
            b += (cols - 1) * stride
        else:
            a += (cols - 1) * stride
        out.lo, out.hi = a, b + k
        out.block = block and (rows == 1 or rstride == row_bytes)
        return
    if trusted:
        out.lo, out.hi, out.block = out.first, out.first + rows * row_bytes, True
        return
    # Indirect buffer: first the cheap common case, rows back to back (owned memory).
    cdef char* base = <char*>view.buf
    cdef Py_ssize_t sub = view.suboffsets[0]
    cdef char** tab = <char**>base
    cdef char* expect = out.first - sub
    cdef size_t mismatch = 0
    if block and rstride == sizeof(void*):
        # Branch-free so that the compiler can vectorise it: this check is the whole cost
        # of copying owned memory apart from the memmove itself.
        for i in range(rows):
            mismatch |= <size_t>(tab[i] - (expect + i * row_bytes))
        block = mismatch == 0
        if block:
            out.lo, out.hi, out.block = out.first, out.first + rows * row_bytes, True
            return
    for i in range(rows):
        start = (<char**>(base + i * rstride))[0]
        if start == NULL:
            out.null_row = i
            return
        start += sub
        if block and start != out.first + i * row_bytes:
            block = False
        if stride >= 0:
            a, b = start, start + (cols - 1) * stride + k
        else:
            a, b = start + (cols - 1) * stride, start + k
        if out.lo == NULL or a < out.lo:
            out.lo = a
        if out.hi == NULL or b > out.hi:
            out.hi = b
    out.block = block


cdef void _copy_elements(const Py_buffer* src, const Py_buffer* dst) noexcept nogil:
    """Copy src into dst (same shape and itemsize); may be called without the GIL."""
    cdef Py_ssize_t i, j, rows = src.shape[0], cols = src.shape[1], k = src.itemsize
    cdef Py_ssize_t ss = src.strides[1], ds = dst.strides[1]
    cdef char* s
    cdef char* d
    for i in range(rows):
        s = _row_ptr(src, i)
        d = _row_ptr(dst, i)
        if ss == k and ds == k:
            memmove(d, s, cols * k)
        elif k == 8:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, 8)
        elif k == 4:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, 4)
        else:
            for j in range(cols):
                memcpy(d + j * ds, s + j * ss, k)


cdef int _copy_buffers(Py_buffer* src, Py_buffer* dst, bint src_trusted,
                       bint dst_trusted) except -1:
    """Copy with the semantics of a copy through a temporary when the two overlap."""
    cdef _Scan ss, ds
    cdef Py_ssize_t rows = src.shape[0], cols = src.shape[1]
    cdef Py_buffer tmp
    cdef void* block
    cdef Py_ssize_t tshape[2]
    cdef Py_ssize_t tstrides[2]
    with nogil:
        _scan(src, src_trusted, &ss)
        _scan(dst, dst_trusted, &ds)
    if ss.empty:
        return 0
    if ss.null_row >= 0 or ds.null_row >= 0:
        # C code re-pointed a row to NULL after the memory was wrapped.
        what, row = ("source", ss.null_row) if ss.null_row >= 0 else ("destination", ds.null_row)
        raise ValueError(f"row {row} of the {what}'s pointer table is NULL")
    if ss.block and ds.block:
        # Both sides are one C-contiguous block: memmove is exact even when they overlap.
        with nogil:
            memmove(ds.first, ss.first, rows * cols * src.itemsize)
    elif ss.lo < ds.hi and ds.lo < ss.hi:
        # Overlap: stage through a contiguous temporary so the result equals a copy via a
        # temporary, whatever the strides.
        block = malloc(<size_t>(rows * cols * src.itemsize))
        if block == NULL:
            raise MemoryError(f"cannot allocate a {rows}x{cols} temporary for an overlapping copy")
        tmp = src[0]
        tmp.buf = block
        tmp.suboffsets = NULL
        tshape[0] = rows
        tshape[1] = cols
        tstrides[0] = cols * src.itemsize
        tstrides[1] = src.itemsize
        tmp.shape = tshape
        tmp.strides = tstrides
        with nogil:
            _copy_elements(src, &tmp)
            _copy_elements(&tmp, dst)
        free(block)
    else:
        with nogil:
            _copy_elements(src, dst)
    return 0


cdef str _describe(Py_buffer* view):
    fmt = "B" if view.format == NULL else view.format.decode("ascii", "replace")
    shape = tuple(view.shape[i] for i in range(view.ndim)) if view.shape != NULL else ()
    return f"shape {shape} format {fmt!r}"


cdef int _check_copy_compatible(Py_buffer* src, Py_buffer* dst, bint cast) except -1:
    if src.ndim != 2 or dst.ndim != 2:
        raise BufferError(f"copy needs 2-D buffers: source {_describe(src)}, "
                          f"destination {_describe(dst)}")
    if src.shape[0] != dst.shape[0] or src.shape[1] != dst.shape[1]:
        raise BufferError(f"shape mismatch: source {_describe(src)}, destination {_describe(dst)}")
    cdef const char* sc = _format_of(src)
    cdef const char* dc = _format_of(dst)
    if not cast and src.itemsize == dst.itemsize and strcmp(sc, dc) == 0:
        return 0
    sfmt = (<bytes>sc).decode("ascii", "replace")
    dfmt = (<bytes>dc).decode("ascii", "replace")
    if cast:
        if src.itemsize != dst.itemsize:
            raise BufferError(f"cast needs equal itemsizes: source {_describe(src)} itemsize "
                              f"{src.itemsize}, destination {_describe(dst)} itemsize "
                              f"{dst.itemsize}")
    elif _canonical_format(sfmt) != _canonical_format(dfmt) or src.itemsize != dst.itemsize:
        raise BufferError(f"format mismatch: source {_describe(src)}, destination {_describe(dst)}"
                          " (pass cast=True to copy the bytes anyway)")
    return 0


# ---------------------------------------------------------------------------------------------
# IndirectMemory2D
# ---------------------------------------------------------------------------------------------

@cython.no_gc_clear  # keepalive must outlive every export, whatever order gc clears in
@cython.auto_pickle(False)
cdef class IndirectMemory2D:
    """A 2-D T** (table of row pointers) exported through the buffer protocol.

    Build one with create_memory, from_ctype_ptr, from_address, view_from_rows,
    view_from_columns or as_indirect (or the cdef constructors from Cython).
    """

    def __cinit__(self, *args, **kwargs):
        self.table = NULL
        self.owned_data = NULL
        self.owned_table = NULL
        self.exports = 0
        self.released_ = False
        self.readonly_ = True
        self.format_ = b"B"
        self.itemsize_ = 1
        self.shape_[0] = self.shape_[1] = 0
        self.strides_[0] = sizeof(void*)
        self.strides_[1] = 1
        self.suboffsets_[0] = 0
        self.suboffsets_[1] = -1

    def __init__(self, *args, **kwargs):
        raise TypeError("IndirectMemory2D cannot be instantiated directly; use "
                        "IndirectMemory2D.create_memory(), from_ctype_ptr(), from_address(), "
                        "view_from_rows() or view_from_columns()")

    def __dealloc__(self):
        # export_count is 0 here: every view holds a reference to self.
        free(self.owned_table)
        free(self.owned_data)
        self.owned_table = NULL
        self.owned_data = NULL
        self.table = NULL

    # -- the one initialiser every constructor funnels into ------------------------------------

    cdef int _init_layout(self, void** table, Py_ssize_t rows, Py_ssize_t cols, bytes format,
                          Py_ssize_t itemsize, bint readonly, Py_ssize_t row_offset,
                          object keepalive) except -1:
        _check_dims(rows, cols)
        _total_bytes(rows, cols, itemsize)
        if row_offset < 0:
            raise ValueError(f"row_offset must be >= 0, got {row_offset}")
        if table == NULL:
            raise ValueError("the pointer table is NULL")
        self.table = table
        self.shape_[0] = rows
        self.shape_[1] = cols
        self.strides_[0] = sizeof(void*)
        self.strides_[1] = itemsize
        self.suboffsets_[0] = row_offset
        self.suboffsets_[1] = -1
        self.itemsize_ = itemsize
        self.format_ = format
        self.readonly_ = readonly
        self.keepalive = keepalive
        self.layout_trusted = False  # constructors that know better set it afterwards
        return 0

    cdef int _check_alive(self) except -1:
        if self.released_:
            raise ValueError(f"operation on released {type(self).__name__}")
        if self.table == NULL:
            # Only reachable through IndirectMemory2D.__new__ without a constructor.
            raise ValueError(f"operation on uninitialised {type(self).__name__}")
        return 0

    cdef int _check_unlocked(self, str action) except -1:
        self._check_alive()
        if self.exports > 0:
            raise BufferError(f"cannot {action}: {type(self).__name__} has "
                              f"{self.exports} exported buffer(s)")
        return 0

    # -- cdef constructors (public cimport API) -----------------------------------------------

    @staticmethod
    cdef IndirectMemory2D create(Py_ssize_t rows, Py_ssize_t cols, object format, int readonly):
        _check_dims(rows, cols)
        fmt, itemsize = _parse_format(format)
        return _new_owned(rows, cols, fmt, itemsize, readonly)

    @staticmethod
    cdef IndirectMemory2D from_ptr(void* ptr, Py_ssize_t rows, Py_ssize_t cols, object format,
                                   int readonly):
        return IndirectMemory2D.from_ptr_with_offset(ptr, rows, cols, format, readonly, None, 0)

    @staticmethod
    cdef IndirectMemory2D from_ptr_with_memory_nanny(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                                     object format, int readonly,
                                                     object memory_nanny):
        return IndirectMemory2D.from_ptr_with_offset(ptr, rows, cols, format, readonly,
                                                     memory_nanny, 0)

    @staticmethod
    cdef IndirectMemory2D from_ptr_with_offset(void* ptr, Py_ssize_t rows, Py_ssize_t cols,
                                               object format, int readonly, object memory_nanny,
                                               Py_ssize_t row_offset):
        _check_dims(rows, cols)
        fmt, itemsize = _parse_format(format)
        _total_bytes(rows, cols, itemsize)
        if ptr == NULL:
            raise ValueError("the pointer table is NULL")
        cdef void** table = <void**>ptr
        cdef Py_ssize_t i
        if cols > 0:
            # A NULL row would crash the first consumer that reads it: refuse it here.
            for i in range(rows):
                if table[i] == NULL:
                    raise ValueError(f"row {i} of the pointer table is NULL")
        cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
        self._init_layout(table, rows, cols, fmt, itemsize, readonly, row_offset, memory_nanny)
        return self

    # -- typed accessors for C calls ----------------------------------------------------------

    cdef void** ptr_table(self) noexcept:
        self.layout_trusted = False  # C may re-point rows from now on
        return self.table

    cdef void** checked_table(self, object format, bint writable) except NULL:
        self._check_alive()
        if _canonical_format(format) != _canonical_format(self.format_):
            raise TypeError(f"element format is {self.format!r}, not {format!r}")
        if writable and self.readonly_:
            raise BufferError("writable table requested from read-only memory")
        self.layout_trusted = False  # C may re-point rows from now on
        return self.table

    cdef double** double_table(self, bint writable) except NULL:
        return <double**>self.checked_table("d", writable)

    cdef float** float_table(self, bint writable) except NULL:
        return <float**>self.checked_table("f", writable)

    cdef int** int_table(self, bint writable) except NULL:
        return <int**>self.checked_table("i", writable)

    cdef long** long_table(self, bint writable) except NULL:
        return <long**>self.checked_table("l", writable)

    cdef long long** longlong_table(self, bint writable) except NULL:
        return <long long**>self.checked_table("q", writable)

    cdef unsigned char** uchar_table(self, bint writable) except NULL:
        return <unsigned char**>self.checked_table("B", writable)

    cdef Py_ssize_t rows(self) noexcept:
        return self.shape_[0]

    cdef Py_ssize_t cols(self) noexcept:
        return self.shape_[1]

    cdef int pin(self) except -1:
        self._check_alive()
        self.exports += 1
        return 0

    cdef void unpin(self) noexcept:
        self.exports -= 1

    # -- buffer protocol ----------------------------------------------------------------------

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        self._check_alive()
        if (flags & _INDIRECT_FLAGS) != _INDIRECT_FLAGS:
            raise BufferError(f"{type(self).__name__} is an indirect (T**) buffer: the consumer "
                              "must request PyBUF_INDIRECT")
        if flags & _CONTIGUITY_BITS:
            raise BufferError(f"{type(self).__name__} is an indirect (T**) buffer and cannot be "
                              "exported as contiguous")
        if (flags & PyBUF_WRITABLE) and self.readonly_:
            raise BufferError(f"{type(self).__name__} is read-only")
        # buf: the row-pointer table; element (i, j) is *(char**)(buf + i*strides[0])
        #      + suboffsets[0] + j*strides[1].
        buffer.buf = <void*>self.table
        # len: bytes of element data (not of the table), as for any N-D buffer.
        buffer.len = self.shape_[0] * self.shape_[1] * self.itemsize_
        buffer.readonly = self.readonly_
        buffer.itemsize = self.itemsize_
        # format may be NULL ("B") only when the consumer did not ask for it.
        buffer.format = <char*>self.format_ if (flags & PyBUF_FORMAT) else NULL
        buffer.ndim = 2
        # shape/strides/suboffsets live in self and are frozen while exported.
        buffer.shape = self.shape_
        buffer.strides = self.strides_
        # suboffsets[0] >= 0: dereference after stepping over rows; -1: columns are direct.
        buffer.suboffsets = self.suboffsets_
        buffer.internal = NULL
        # obj: the view keeps self (and so whatever self points into) alive.
        buffer.obj = self
        if not self.internal_export:
            self.layout_trusted = False  # the consumer has the table in buf
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        self.exports -= 1

    # -- Python constructors ------------------------------------------------------------------

    @staticmethod
    def create_memory(Py_ssize_t rows, Py_ssize_t cols, format, readonly=False):
        """Owned, zero-initialised rows x cols memory of the struct format `format`."""
        return IndirectMemory2D.create(rows, cols, format, bool(readonly))

    @staticmethod
    def from_ctype_ptr(ptr, Py_ssize_t rows, Py_ssize_t cols, readonly=False, memory_nanny=None,
                       Py_ssize_t row_offset=0):
        """Wrap a ctypes table of pointers: an array of POINTER(T), or a POINTER(POINTER(T)).

        The element format comes from ctypes; ptr (or memory_nanny, if given) is kept alive
        as long as the wrapper and its views live.
        """
        import ctypes
        _check_dims(rows, cols)
        cdef uintptr_t address
        if isinstance(ptr, ctypes.Array):
            row_type = getattr(type(ptr), "_type_", None)
            if not (isinstance(row_type, type) and issubclass(row_type, ctypes._Pointer)):
                raise TypeError(f"expected a ctypes array of POINTER(T), got {type(ptr).__name__}")
            if len(ptr) < rows:
                raise BufferError(f"ctypes table has {len(ptr)} entries, {rows} rows requested")
            address = ctypes.addressof(ptr)
        elif isinstance(ptr, ctypes._Pointer):
            row_type = type(ptr)._type_
            if not (isinstance(row_type, type) and issubclass(row_type, ctypes._Pointer)):
                raise TypeError(f"expected a ctypes POINTER(POINTER(T)), got {type(ptr).__name__}")
            # Read the pointer's value from its own storage: ctypes.cast would leave a
            # reference cycle through ptr._objects (ptr kept alive until the next gc).
            address = <uintptr_t>(ctypes.c_void_p.from_buffer(ptr).value or 0)
            if address == 0:
                raise ValueError("the ctypes pointer table is NULL")
        else:
            raise TypeError(f"expected a ctypes array of POINTER(T) or a POINTER(POINTER(T)), "
                            f"got {type(ptr).__name__}")
        element = row_type._type_
        itemsize = ctypes.sizeof(element)
        ctype_format = memoryview(element()).format if issubclass(
            element, ctypes._SimpleCData) else None
        fmt = _native_format(ctype_format) if ctype_format else None
        try:
            if fmt is None or _parse_format(fmt)[1] != itemsize:
                raise ValueError
        except ValueError:
            # Structures, long double...: keep the bytes, let the user reinterpret_data().
            fmt = f"{itemsize}s"
        # ptr._objects holds what ptr points to (for POINTER(POINTER(T)): the table): keep a
        # snapshot, so that re-pointing ptr (ptr.contents = ...) cannot free our table.
        objects = getattr(ptr, "_objects", None)
        keep = (ptr, dict(objects) if isinstance(objects, dict) else objects, memory_nanny)
        return IndirectMemory2D.from_ptr_with_offset(
            <void*>address, rows, cols, fmt, bool(readonly), keep, row_offset)

    @staticmethod
    def from_address(address, Py_ssize_t rows, Py_ssize_t cols, format, readonly=False,
                     memory_nanny=None, Py_ssize_t row_offset=0):
        """Wrap the T** at integer `address` (e.g. from cffi or ctypes); memory_nanny is kept alive.

        Nothing can check that `address` really holds rows valid row pointers: that is the
        caller's promise.
        """
        if not isinstance(address, int) or isinstance(address, bool):
            raise TypeError(f"address must be an int, not {type(address).__name__}")
        if address < 0 or address >= _ADDRESS_LIMIT:
            raise ValueError(f"address {address} is not a valid pointer value")
        return IndirectMemory2D.from_ptr_with_offset(<void*><uintptr_t>address, rows, cols,
                                                     format, bool(readonly), memory_nanny,
                                                     row_offset)

    @staticmethod
    def view_from_rows(array2d, readonly=False):
        """Zero-copy T** over the contiguous rows of a 2-D (or 1-D: one row) buffer."""
        return _view_from_lines(array2d, bool(readonly), False)

    @staticmethod
    def view_from_columns(array2d, readonly=False):
        """Zero-copy T** over the contiguous columns of a 2-D (or 1-D: one column) buffer.

        The result has shape (columns, rows) of the source.
        """
        return _view_from_lines(array2d, bool(readonly), True)

    # -- properties ---------------------------------------------------------------------------

    @property
    def shape(self):
        """(rows, cols)."""
        self._check_alive()
        return (self.shape_[0], self.shape_[1])

    @property
    def format(self):
        """The struct format of one element, as str."""
        self._check_alive()
        return self.format_.decode("ascii")

    def get_format(self):
        """The struct format of one element, as str."""
        return self.format

    @property
    def itemsize(self):
        """Bytes per element."""
        self._check_alive()
        return self.itemsize_

    @property
    def readonly(self):
        """True if exports are read-only."""
        self._check_alive()
        return bool(self.readonly_)

    @property
    def row_offset(self):
        """Bytes from table[i] to the first element of row i (the first suboffset)."""
        self._check_alive()
        return self.suboffsets_[0]

    @property
    def address(self):
        """Integer address of the pointer table, for ctypes/cffi calls."""
        self._check_alive()
        self.layout_trusted = False  # C may re-point rows from now on
        return <uintptr_t>self.table

    @property
    def export_count(self):
        """Number of buffers currently exported (memoryviews, direct views, running copies)."""
        return self.exports

    @property
    def released(self):
        """True after release()."""
        return bool(self.released_)

    def __len__(self):
        self._check_alive()
        return self.shape_[0]

    def __repr__(self):
        if self.released_:
            return f"<{type(self).__name__} released>"
        return (f"<{type(self).__name__} shape=({self.shape_[0]}, {self.shape_[1]}) "
                f"format={self.format!r} readonly={bool(self.readonly_)}>")

    # -- state changes (refused while exported) -----------------------------------------------

    def reinterpret_data(self, new_format):
        """View the same row bytes as elements of new_format; cols becomes row_bytes // itemsize."""
        self._check_alive()
        fmt, itemsize = _parse_format(new_format)
        self._check_unlocked("reinterpret_data")
        cdef Py_ssize_t row_bytes = self.shape_[1] * self.itemsize_
        if row_bytes % <Py_ssize_t>itemsize != 0:
            raise ValueError(f"row of {row_bytes} bytes is not divisible by itemsize {itemsize} "
                             f"of format {new_format!r}")
        self.shape_[1] = row_bytes // <Py_ssize_t>itemsize
        self.strides_[1] = itemsize
        self.itemsize_ = itemsize
        self.format_ = fmt

    def make_read_only(self):
        """Make every later export read-only (irreversible)."""
        self._check_unlocked("make_read_only")
        self.readonly_ = True

    def release(self):
        """Free owned memory / drop references to borrowed memory now; idempotent.

        Raises BufferError while buffers are exported.
        """
        if self.released_:
            return
        self._check_unlocked("release")
        # Released first: dropping the last reference to a nanny may run Python code
        # (a __del__) that must already see this object as released.
        self.released_ = True
        self._release_resources()

    cdef void _release_resources(self) noexcept:
        free(self.owned_table)
        free(self.owned_data)
        self.owned_table = NULL
        self.owned_data = NULL
        self.table = NULL
        self.shape_[0] = self.shape_[1] = 0
        self.keepalive = None

    def __enter__(self):
        self._check_alive()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    # -- pickling / copying: never serialise a pointer ----------------------------------------

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {type(self).__name__}: it holds raw pointers; pickle "
                        "mem.to_numpy() instead")

    def __copy__(self):
        raise TypeError(f"cannot copy.copy {type(self).__name__}: it holds raw pointers; use "
                        "mem.copy() for an owned copy of the data")

    def __deepcopy__(self, memo):
        raise TypeError(f"cannot copy.deepcopy {type(self).__name__}: it holds raw pointers; use "
                        "mem.copy() for an owned copy of the data")

    # -- copying data -------------------------------------------------------------------------

    def copy_from(self, obj, cast=False):
        """Copy every element of the 2-D buffer obj (direct or indirect) into self."""
        _copy_between(obj, self, bool(cast))

    def copy_to(self, obj, cast=False):
        """Copy every element of self into the writable 2-D buffer obj (direct or indirect)."""
        _copy_between(self, obj, bool(cast))

    def copy(self, readonly=None):
        """An owned copy of the data (same shape and format); read-only like self unless given."""
        self._check_alive()
        ro = self.readonly_ if readonly is None else bool(readonly)
        cdef IndirectMemory2D out = _new_owned(self.shape_[0], self.shape_[1], self.format_,
                                               self.itemsize_, False)
        out.copy_from(self)
        out.readonly_ = ro
        return out

    def to_numpy(self):
        """A new C-ordered NumPy array holding a copy of the data."""
        self._check_alive()
        np = _import_numpy("to_numpy")
        cdef Py_ssize_t rows = self.shape_[0], cols = self.shape_[1]
        out = np.empty((rows, cols), dtype=_numpy_dtype(np, self.format_, self.itemsize_))
        # Sub-array elements ('2i') make out (rows, cols, 2): copy into a 2-D view of it.
        target = out if out.ndim == 2 else out.reshape(rows, cols, -1).view(
            np.dtype((np.void, self.itemsize_))).reshape(rows, cols)
        # The dtype was parsed from our own format, so the bytes mean the same thing even where
        # NumPy spells the format differently ('2i', '!d', 'c'...): copy them as they are.
        _copy_between(self, target, True)
        return out

    def direct_view(self):
        """A zero-copy C-contiguous 2-D memoryview, if the rows lie back to back in memory.

        Counts as an export of self. BufferError otherwise.
        """
        self._check_alive()
        cdef _DirectExport exporter = _DirectExport.__new__(_DirectExport)
        exporter.parent = self
        return memoryview(exporter)


cdef IndirectMemory2D _new_owned(Py_ssize_t rows, Py_ssize_t cols, bytes fmt,
                                 Py_ssize_t itemsize, bint readonly):
    """Owned zeroed memory for an already validated format."""
    _check_dims(rows, cols)
    cdef Py_ssize_t total = _total_bytes(rows, cols, itemsize)
    cdef Py_ssize_t i, row_bytes = cols * itemsize
    cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
    # One zeroed data block plus one table: creation costs what numpy.zeros costs, and the
    # rows lie back to back (so direct_view works). Never a zero-byte request (may be NULL).
    self.owned_table = <void**>malloc((rows if rows > 0 else 1) * sizeof(void*))
    self.owned_data = calloc(total if total > 0 else 1, 1)
    if self.owned_table == NULL or self.owned_data == NULL:
        # __dealloc__ frees whichever of the two succeeded.
        raise MemoryError(f"cannot allocate {rows}x{cols} elements of format "
                          f"{fmt.decode('ascii')!r} ({total} bytes)")
    cdef char* data = <char*>self.owned_data
    for i in range(rows):
        self.owned_table[i] = data + i * row_bytes
    self._init_layout(self.owned_table, rows, cols, fmt, itemsize, readonly, 0, None)
    self.layout_trusted = True
    return self


cdef object _numpy_dtype_cache = {}


cdef object _numpy_dtype(object np, bytes fmt, Py_ssize_t itemsize):
    key = (fmt, itemsize)
    dt = _numpy_dtype_cache.get(key)
    if dt is None:
        # Let NumPy parse the PEP 3118 format from a tiny direct export, so every struct format
        # NumPy understands maps exactly as it would for any buffer.
        probe = _new_owned(1, 1, fmt, itemsize, False)
        try:
            arr = np.asarray(probe.direct_view())
        except Exception as exc:
            raise ValueError(f"NumPy cannot represent format {fmt.decode('ascii')!r}: "
                             f"{exc}") from None
        # A sub-array format ('2i') comes back as extra trailing dimensions.
        dt = arr.dtype if arr.ndim == 2 else np.dtype((arr.dtype, arr.shape[2:]))
        if dt.itemsize != itemsize:
            raise ValueError(f"NumPy reads format {fmt.decode('ascii')!r} as {dt} of "
                             f"{dt.itemsize} bytes, not {itemsize}")
        _numpy_dtype_cache[key] = dt
    return dt


cdef object _import_numpy(str what):
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is None:  # also when sys.modules["numpy"] is None, which `import` lets through
        raise ImportError(f"{what}() needs NumPy, which is not installed (pip install numpy)")
    return numpy


cdef char* _first_row_of_block(IndirectMemory2D mem) except? NULL:
    """Start of row 0 if the rows lie back to back in memory, else BufferError."""
    cdef Py_ssize_t i, rows = mem.shape_[0], row_bytes = mem.shape_[1] * mem.itemsize_
    cdef Py_ssize_t sub = mem.suboffsets_[0]
    if rows == 0:
        return NULL
    if mem.table[0] == NULL:
        raise ValueError("row 0 of the pointer table is NULL")
    cdef char* first = <char*>mem.table[0] + sub
    for i in range(1, 0 if mem.layout_trusted else rows):
        if <char*>mem.table[i] + sub != first + i * row_bytes:
            raise BufferError(f"rows are not back to back in memory (row {i} is not "
                              f"{row_bytes} bytes after row {i - 1})")
    return first


@cython.no_gc_clear  # __releasebuffer__ needs parent, whatever order gc clears a cycle in
@cython.auto_pickle(False)
cdef class _DirectExport:
    """Exports the rows of an IndirectMemory2D as one C-contiguous 2-D block."""
    cdef IndirectMemory2D parent
    # Geometry of the live exports; refreshed by each new export (the parent cannot change
    # shape or format while one is alive).
    cdef Py_ssize_t shape_[2]
    cdef Py_ssize_t strides_[2]
    cdef Py_ssize_t live  # exports of this exporter (the parent counts them too)

    def __init__(self, *args, **kwargs):
        raise TypeError("direct view exporters are made by IndirectMemory2D.direct_view()")

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        cdef IndirectMemory2D p = self.parent
        if p is None:  # made with __new__, bypassing direct_view()
            raise ValueError("operation on uninitialised direct view exporter")
        p._check_alive()
        if (flags & PyBUF_WRITABLE) and p.readonly_:
            raise BufferError(f"{type(p).__name__} is read-only")
        if (flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS and p.shape_[0] > 1 \
                and p.shape_[1] > 1:
            raise BufferError("a direct view is C-contiguous, not Fortran-contiguous")
        # Checked at every export: C code may have re-pointed rows since the last one.
        cdef char* data = _first_row_of_block(p)
        if self.live == 0:
            self.shape_[0] = p.shape_[0]
            self.shape_[1] = p.shape_[1]
            self.strides_[0] = p.shape_[1] * p.itemsize_
            self.strides_[1] = p.itemsize_
        # A zero-row view still needs a non-NULL buf: point at the table itself.
        buffer.buf = data if data != NULL else <void*>p.table
        buffer.len = p.shape_[0] * p.shape_[1] * p.itemsize_
        buffer.readonly = p.readonly_
        buffer.itemsize = p.itemsize_
        buffer.format = <char*>p.format_ if (flags & PyBUF_FORMAT) else NULL
        buffer.ndim = 2
        # The block is C-contiguous: shape and strides are reported when asked for, and a
        # plain PyBUF_SIMPLE consumer may read it as bytes.
        buffer.shape = self.shape_ if (flags & PyBUF_ND) == PyBUF_ND else NULL
        buffer.strides = self.strides_ if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        # obj: the view keeps this exporter, and through it the parent, alive.
        buffer.obj = self
        self.live += 1
        p.exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        self.live -= 1
        self.parent.exports -= 1

    def __reduce_ex__(self, protocol):
        raise TypeError("cannot pickle a direct view exporter: it exports raw memory")

    def __copy__(self):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")

    def __deepcopy__(self, memo):
        raise TypeError("cannot copy a direct view exporter: it exports raw memory")


cdef bint _trusted(object obj):
    return isinstance(obj, IndirectMemory2D) and (<IndirectMemory2D>obj).layout_trusted


cdef int _get_buffer(object obj, Py_buffer* view, int flags) except -1:
    """PyObject_GetBuffer, marked as this module's own export (the table stays private)."""
    cdef IndirectMemory2D mem
    # Exact types only: a subclass's own __buffer__ (Python 3.12+) could run code, and hand
    # out the table, inside the internal window.
    if type(obj) is IndirectMemory2D or type(obj) is BufferCollection2D:
        mem = <IndirectMemory2D>obj
        mem.internal_export = True
        try:
            PyObject_GetBuffer(obj, view, flags)
        finally:
            mem.internal_export = False
    else:
        PyObject_GetBuffer(obj, view, flags)
    return 0


cdef inline void _c_strides(Py_buffer* view, Py_ssize_t* storage) noexcept:
    """Point a 2-D view's NULL strides (allowed for C-contiguous data, e.g. ctypes arrays)
    at C-contiguous strides in storage."""
    if view.strides == NULL and view.ndim == 2 and view.shape != NULL:
        storage[1] = view.itemsize
        storage[0] = view.shape[1] * view.itemsize
        view.strides = storage


cdef int _copy_between(object src, object dst, bint cast) except -1:
    """Copy src -> dst through the buffer protocol (both may be indirect)."""
    cdef Py_buffer sview
    cdef Py_buffer dview
    cdef Py_buffer s2
    cdef Py_buffer d2
    cdef Py_ssize_t sstrides[2]
    cdef Py_ssize_t dstrides[2]
    for obj in (src, dst):
        if isinstance(obj, IndirectMemory2D):
            (<IndirectMemory2D>obj)._check_alive()
    _get_buffer(src, &sview, PyBUF_FULL_RO)
    try:
        try:
            _get_buffer(dst, &dview, PyBUF_FULL_RO | PyBUF_WRITABLE)
        except (BufferError, ValueError) as exc:
            # NumPy answers a writable request on a read-only array with ValueError.
            raise BufferError(f"cannot copy into {type(dst).__name__}: {exc}") from None
        try:
            # Work on copies: the exporters get back exactly the Py_buffer they filled.
            s2, d2 = sview, dview
            _c_strides(&s2, sstrides)
            _c_strides(&d2, dstrides)
            _check_copy_compatible(&s2, &d2, cast)
            _copy_buffers(&s2, &d2, _trusted(src), _trusted(dst))
        finally:
            PyBuffer_Release(&dview)
    finally:
        PyBuffer_Release(&sview)
    return 0


cdef IndirectMemory2D _view_from_lines(object source, bint readonly, bint columns):
    """Build a T** over the contiguous rows (or columns) of source, holding its buffer."""
    # A memoryview holds the source's buffer: it fills in strides that an exporter may leave
    # NULL (ctypes does), and the garbage collector can see the source through it, so a
    # reference cycle through the view is collectable.
    holder = memoryview(source)
    cdef Py_buffer* view = PyMemoryView_GET_BUFFER(holder)
    if not readonly and view.readonly:
        raise BufferError(f"cannot make a writable view of read-only {type(source).__name__}; "
                          "pass readonly=True")
    if view.ndim not in (1, 2):
        raise BufferError(f"expected a 1-D or 2-D buffer, got {view.ndim}-D "
                          f"{type(source).__name__}")
    cdef Py_ssize_t lines, length, line_stride, elem_stride, line_sub = -1
    if view.ndim == 1:
        lines, length = 1, view.shape[0]
        line_stride, elem_stride = 0, view.strides[0]
        if view.suboffsets != NULL and view.suboffsets[0] >= 0:
            raise BufferError("a 1-D indirect buffer has no contiguous row")
    elif not columns:
        lines, length = view.shape[0], view.shape[1]
        line_stride, elem_stride = view.strides[0], view.strides[1]
        if view.suboffsets != NULL:
            line_sub = view.suboffsets[0]
            if view.suboffsets[1] >= 0:
                raise BufferError("rows of the source are themselves indirect")
    else:
        lines, length = view.shape[1], view.shape[0]
        line_stride, elem_stride = view.strides[1], view.strides[0]
        if view.suboffsets != NULL and (view.suboffsets[0] >= 0 or view.suboffsets[1] >= 0):
            raise BufferError("columns of an indirect buffer are not contiguous")
    _check_exported_format(view, -1)
    what = "columns" if columns else "rows"
    if lines > 0 and length > 1 and elem_stride != view.itemsize:
        raise BufferError(f"{what} of the source are not contiguous: element stride "
                          f"{elem_stride}, itemsize {view.itemsize}")
    # The exporter vouches for format and itemsize (NumPy's 'Zd' is not a struct format).
    fmt = b"B" if view.format == NULL else <bytes>view.format
    cdef void** table = <void**>malloc((lines if lines > 0 else 1) * sizeof(void*))
    if table == NULL:
        raise MemoryError(f"cannot allocate a table of {lines} row pointers")
    cdef Py_ssize_t i
    cdef char* base = <char*>view.buf
    cdef char* p
    for i in range(lines):
        p = base + i * line_stride
        if line_sub >= 0:
            p = (<char**>p)[0]
            if p == NULL and length > 0:
                free(table)
                raise ValueError(f"row {i} of the source's pointer table is NULL")
            p += line_sub
        table[i] = p
    cdef IndirectMemory2D self = IndirectMemory2D.__new__(IndirectMemory2D)
    self.owned_table = table  # freed by self; the data belongs to source (held by holder)
    self._init_layout(table, lines, length, fmt, view.itemsize, readonly, 0, holder)
    self.layout_trusted = line_sub < 0 and (lines <= 1 or line_stride == length * view.itemsize)
    return self


# ---------------------------------------------------------------------------------------------
# BufferCollection2D
# ---------------------------------------------------------------------------------------------

@cython.no_gc_clear
@cython.auto_pickle(False)
cdef class BufferCollection2D(IndirectMemory2D):
    """Equal-length buffers (e.g. NumPy rows, bytearrays) viewed as one T**, zero-copy.

    BufferCollection2D(rows, column_count=-1, format=None, unravel=True)
    """

    def __cinit__(self, *args, **kwargs):
        self.views = NULL
        self.view_count = 0

    def __init__(self, rows, column_count=-1, format=None, unravel=True):
        self._check_not_initialised()
        if column_count is None:
            column_count = -1
        if isinstance(column_count, bool):
            raise TypeError("column_count must be an int or None, not bool")
        try:
            column_count = operator.index(column_count)
        except TypeError:
            raise TypeError(f"column_count must be an int or None, not "
                            f"{type(column_count).__name__}") from None
        if column_count < -1:
            raise ValueError(f"column_count must be >= 0 or -1 (auto), got {column_count}")
        cdef Py_ssize_t columns = column_count
        cdef tuple objs = tuple(rows)
        cdef Py_ssize_t n = len(objs)
        expected_fmt = None
        cdef Py_ssize_t expected_itemsize = -1
        if format is not None:
            expected_fmt, expected_itemsize = _parse_format(format)
        elif n == 0:
            raise ValueError("an empty BufferCollection2D needs an explicit format")
        if n == 0 and columns == -1:
            raise ValueError("an empty BufferCollection2D needs an explicit column_count")
        # Again: everything above may have run Python code (iterators, __index__, format
        # objects) that called __init__ on this very object.
        self._check_not_initialised()
        self.views = <Py_buffer*>PyMem_Calloc(n if n > 0 else 1, sizeof(Py_buffer))
        self.view_count = 0
        self.keepalive = objs  # the rows, as the garbage collector sees them (_acquire_rows)
        self.owned_table = <void**>malloc((n if n > 0 else 1) * sizeof(void*))
        if self.views == NULL or self.owned_table == NULL:
            self._release_resources()
            raise MemoryError(f"cannot allocate a collection of {n} rows")
        try:
            self._acquire_rows(objs, columns, expected_fmt, expected_itemsize, unravel)
        except BaseException:
            # Give every row back now, not when the object dies: a failed construction must
            # not keep bytearray rows locked.
            self._release_resources()
            raise

    cdef int _check_not_initialised(self) except -1:
        if self.views != NULL or self.released_ or self.table != NULL:
            raise TypeError("BufferCollection2D is already initialised")
        return 0

    cdef int _acquire_rows(self, tuple objs, Py_ssize_t columns, object expected_fmt,
                           Py_ssize_t expected_itemsize, bint unravel) except -1:
        cdef Py_ssize_t n = len(objs)
        cdef Py_ssize_t i, k, count
        cdef Py_buffer* view
        cdef bint readonly = False
        cdef bint back_to_back = True
        # Compared with strcmp first: the Python-level canonical comparison only runs when
        # two rows spell their format differently (keeps the per-row cost near GetBuffer's).
        cdef const char* expected_c = NULL
        cdef const char* row_c
        if expected_fmt is not None:
            expected_c = <bytes>expected_fmt
        for i in range(n):
            obj = objs[i]
            if not PyObject_CheckBuffer(obj):
                raise TypeError(f"row {i} is not a buffer: {type(obj).__name__}")
            view = &self.views[i]
            PyObject_GetBuffer(obj, view, PyBUF_FULL_RO)
            self.view_count = i + 1
            if view.obj is obj:
                # The reference the Py_buffer holds is invisible to the garbage collector, so
                # a cycle through a row (row -> its owner -> this collection) could never be
                # collected. Lend it to the rows tuple in keepalive instead, which the
                # collector traverses; _release_views gives it back before releasing.
                Py_DECREF(obj)
            row_c = _format_of(view)
            if view.suboffsets != NULL:
                for k in range(view.ndim):
                    if view.suboffsets[k] >= 0:
                        raise BufferError(f"row {i} is an indirect buffer")
            if not unravel and view.ndim != 1:
                raise BufferError(f"row {i} is {view.ndim}-D, expected 1-D (pass unravel=True "
                                  "to read C-contiguous buffers as flat rows)")
            if not _is_c_contiguous(view):
                raise BufferError(f"row {i} is not C-contiguous")
            _check_exported_format(view, i)
            count = view.len // view.itemsize
            if expected_c == NULL:
                expected_fmt, expected_itemsize = <bytes>row_c, view.itemsize
                expected_c = <bytes>expected_fmt
            elif view.itemsize != expected_itemsize or (
                    strcmp(row_c, expected_c) != 0
                    and _canonical_format(<bytes>row_c) != _canonical_format(expected_fmt)):
                got = (<bytes>row_c).decode("ascii", "replace")
                raise BufferError(f"row {i} has format {got!r} (itemsize {view.itemsize}), "
                                  f"expected {expected_fmt.decode('ascii')!r} "
                                  f"(itemsize {expected_itemsize})")
            if columns == -1:
                columns = count
            elif count != columns:
                raise BufferError(f"row {i} has {count} elements, expected {columns}")
            if view.readonly:
                readonly = True
            self.owned_table[i] = view.buf
            if i > 0 and <char*>view.buf != <char*>self.owned_table[0] + i * count * view.itemsize:
                back_to_back = False
        self._init_layout(self.owned_table, n, columns, expected_fmt, expected_itemsize,
                          readonly, 0, objs)
        self.layout_trusted = back_to_back
        return 0

    def __dealloc__(self):
        self._release_views()

    cdef void _release_views(self) noexcept:
        cdef Py_ssize_t i
        cdef tuple objs = <tuple>self.keepalive if type(self.keepalive) is tuple else ()
        if self.views != NULL:
            for i in range(self.view_count):
                if i < len(objs) and self.views[i].obj is objs[i]:
                    Py_INCREF(objs[i])  # the reference lent to the tuple in _acquire_rows
                PyBuffer_Release(&self.views[i])
            PyMem_Free(self.views)
            self.views = NULL
            self.view_count = 0

    cdef void _release_resources(self) noexcept:
        self._release_views()
        IndirectMemory2D._release_resources(self)


cdef bint _is_c_contiguous(Py_buffer* view):
    """C-contiguity check that tolerates NULL strides and size-0/1 dimensions."""
    if view.strides == NULL:
        return True
    cdef Py_ssize_t k, expected = view.itemsize
    for k in range(view.ndim - 1, -1, -1):
        if view.shape[k] == 0:
            return True
        if view.shape[k] != 1 and view.strides[k] != expected:
            return False
        expected *= view.shape[k]
    return True


def as_indirect(obj, format=None, readonly=True):
    """obj as an IndirectMemory2D: the same object, a zero-copy row view, or an owned copy.

    Accepts an IndirectMemory2D, any buffer with contiguous rows, a non-contiguous array or
    a nested sequence (the last two need NumPy). format, if given, is the element format the
    caller needs; values are converted (through NumPy) when it differs. readonly=False asks
    for writable memory: a read-only obj is refused with BufferError rather than copied.
    Writes to a copy do not reach obj; check `result is obj` or use view_from_rows where
    they must.
    """
    cdef IndirectMemory2D mem
    cdef Py_buffer probe
    want = None if format is None else _canonical_format(_parse_format(format)[0])
    if isinstance(obj, IndirectMemory2D):
        mem = <IndirectMemory2D>obj
        mem._check_alive()
        if not readonly and mem.readonly_:
            raise BufferError("writable memory was requested, but the IndirectMemory2D is "
                              "read-only")
        if want is None or want == _canonical_format(mem.format_):
            return mem
    elif PyObject_CheckBuffer(obj):
        if not readonly:
            PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO)
            is_readonly = probe.readonly
            PyBuffer_Release(&probe)
            if is_readonly:
                raise BufferError(f"writable memory was requested, but the "
                                  f"{type(obj).__name__} is read-only")
        try:
            view = _view_from_lines(obj, bool(readonly), False)
        except BufferError:
            view = None
        if view is not None and (want is None or want == _canonical_format(view.format_)):
            return view
        if view is not None:
            view.release()
    np = _import_numpy("as_indirect")
    if isinstance(obj, IndirectMemory2D):
        obj = (<IndirectMemory2D>obj).to_numpy()
    dtype = None
    if format is not None:
        fmt_bytes, fmt_size = _parse_format(format)
        dtype = _numpy_dtype(np, fmt_bytes, fmt_size)
    arr = np.asarray(obj, dtype=dtype)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"expected 2-D data, got a {arr.ndim}-D array of shape {arr.shape}")
    # The array's own buffer format, so dtypes that struct cannot spell (complex) work too.
    source = memoryview(arr)
    out = _new_owned(arr.shape[0], arr.shape[1], source.format.encode("ascii"),
                     source.itemsize, False)
    out.copy_from(arr)
    if readonly:
        out.make_read_only()
    return out
