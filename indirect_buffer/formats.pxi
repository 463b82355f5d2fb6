# Struct formats: parsing, canonical forms, the ones foreign exporters report.

# format (as given) -> _FormatInfo; formats are few, so the cache stays small.
cdef dict _format_cache = {}
# Only this module holds it: no code outside can make a _FormatInfo.
cdef object _SEAL = object()


@cython.final
@cython.auto_pickle(False)
cdef class _FormatInfo:
    """A validated format as the cache holds it. Python code can reach the cache dict through
    the garbage collector (gc.get_objects), but cannot forge an entry: a record only pairs a
    format with the itemsize struct gave it, so at worst it swaps in another valid pair."""
    cdef bytes fmt
    cdef Py_ssize_t itemsize

    def __cinit__(self, seal, bytes fmt, Py_ssize_t itemsize):
        if seal is not _SEAL:
            raise TypeError("format records are made by indirect_buffer itself")
        self.fmt = fmt
        self.itemsize = itemsize

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
    cdef _FormatInfo info
    if cacheable:
        cached = _format_cache.get(format)
        if type(cached) is _FormatInfo:
            info = <_FormatInfo>cached
            return (info.fmt, info.itemsize)
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
    if "\x00" in text:  # C code would read only the part before it
        raise ValueError(f"unknown format {format!r}: it contains a NUL character")
    try:
        itemsize = struct.calcsize(text)
    except struct.error as exc:
        raise ValueError(f"unknown format {format!r}: {exc}") from None
    if itemsize <= 0:
        raise ValueError(f"format {format!r} has itemsize 0")
    fmt = text.encode("ascii")
    if cacheable and len(_format_cache) < 256:
        _format_cache[format] = _FormatInfo(_SEAL, fmt, itemsize)
    return (fmt, itemsize)


cdef bint _is_native_order(str order):
    """True if a struct byte-order character means this machine's byte order."""
    return order in ("", "@", "=") or order == ("<" if _LITTLE else ">") or \
        (order == "!" and not _LITTLE)


# format (exact str or bytes) -> canonical key; bounded like _format_cache.
cdef dict _canonical_cache = {}


cdef str _canonical_format(object fmt):
    """A key equal for formats that describe the same element (e.g. 'l', '@q', '<q' on a
    little-endian 64-bit machine; '>i', '!i', '>l'; 'c', '1s').

    fmt is None (a NULL Py_buffer.format: 'B'), str or bytes; anything else is a TypeError
    (the cimport API passes caller objects straight here).
    """
    if fmt is None:
        return "u1"
    cdef bint cacheable = type(fmt) is str or type(fmt) is bytes
    if cacheable:
        cached = _canonical_cache.get(fmt)
        if type(cached) is str:  # a key for comparisons only: sizes are always checked too
            return <str>cached
    cdef str text
    if isinstance(fmt, bytes):
        text = (<bytes>fmt).decode("ascii", "replace")
    elif isinstance(fmt, str):
        text = str.__str__(fmt)  # exact str: a subclass's methods never run
    else:
        raise TypeError(f"format must be str or bytes, not {type(fmt).__name__}")
    result = text
    order, code = "", text
    if text[:1] in ("@", "=", "<", ">", "!"):
        order, code = text[:1], text[1:]
    if code in ("s", "1s"):
        code = "c"  # one byte string, as 'c' (NumPy exports its 'S1' so)
    cdef Py_ssize_t size
    if len(code) == 1 and code in _KIND:
        if order in ("", "@"):
            result = f"{_KIND[code]}{struct.calcsize(code)}"
        elif code not in "nNP":
            # Standard sizes: 'l' is 'i', '!' is '>'; a foreign byte order stays in the key
            # of elements wider than a byte.
            size = struct.calcsize(order + code)
            result = f"{_KIND[code]}{size}"
            if size > 1 and not _is_native_order(order):
                result = ("<" if order == "<" else ">") + result
    if cacheable and len(_canonical_cache) < 256:
        _canonical_cache[fmt] = result
    return result


cdef char _code_kind(Py_UCS4 code) noexcept:
    """The kind of a native struct code: 'i' signed, 'u' unsigned, 'f' float, '?', 'c', 'P';
    0 for anything else."""
    if code in "bhilqn":
        return b'i'
    if code in "BHILQN":
        return b'u'
    if code in "efd":
        return b'f'
    if code in "?cP":
        return <char>code
    return 0


cdef Py_ssize_t _code_size(Py_UCS4 code) noexcept:
    """sizeof the native C type of a struct code _code_kind knows."""
    if code in "bB?c":
        return 1
    if code in "hHe":
        return 2
    if code in "iIf":
        return sizeof(int)
    if code in "lL":
        return sizeof(long)
    if code in "qQd":
        return 8
    if code in "nN":
        return sizeof(Py_ssize_t)
    return sizeof(void*)  # 'P'


cdef char _element_kind(bytes fmt) noexcept:
    """The kind of a native single-element format ('d', '@q'...), else 0: lets typed
    accessors check a format with C comparisons (the size is the itemsize)."""
    cdef const char* f = fmt
    if f[0] == b'@':
        f += 1
    if f[0] == 0 or f[1] != 0:
        return 0
    return _code_kind(<unsigned char>f[0])


cdef bint _is_native_element(object fmt, char kind, Py_ssize_t itemsize):
    """True if fmt (exact str or bytes) is a native single code of this kind and size, e.g.
    'd' for kind 'f' and 8 bytes; False if it is not, or is spelled some other way (then
    the canonical comparison decides)."""
    cdef Py_UCS4 code
    cdef Py_ssize_t n
    if kind == 0:
        return False
    if type(fmt) is str:
        n = len(<str>fmt)
        if n == 2 and (<str>fmt)[0] == "@":
            code = (<str>fmt)[1]
        elif n == 1:
            code = (<str>fmt)[0]
        else:
            return False
    elif type(fmt) is bytes:
        # By length, never as a C string: b"q\x00b" is not "q".
        n = len(<bytes>fmt)
        if n == 2 and (<bytes>fmt)[0] == 64:  # '@'
            code = (<bytes>fmt)[1]
        elif n == 1:
            code = (<bytes>fmt)[0]
        else:
            return False
    else:
        return False
    return _code_kind(code) == kind and _code_size(code) == itemsize


cdef str _native_format(str fmt):
    """'<i' -> 'i' where the standard-size type equals the native one (ctypes' formats)."""
    if len(fmt) == 2 and fmt[1] in _KIND and fmt[1] not in "nNP" and fmt[0] != "@" \
            and _is_native_order(fmt[0]) and struct.calcsize(fmt) == struct.calcsize(fmt[1]):
        return fmt[1]
    return fmt



# The last format _format_bytes made: a row view or collection of one dtype reuses it.
cdef bytes _last_format_bytes = b"B"


cdef bytes _format_bytes(const char* fmt):
    """An exporter's format as bytes (NULL means "B"), without a new object for a repeat."""
    global _last_format_bytes
    if fmt == NULL:
        fmt = _FMT_B
    if strcmp(fmt, <const char*>_last_format_bytes) != 0:
        _last_format_bytes = <bytes>fmt
    return _last_format_bytes


cdef bint _has_object_code(const char* fmt) noexcept:
    """True if a PEP 3118 format holds Python object pointers ('O' outside a :field name:):
    such elements must never be copied as bytes (nobody would count the references)."""
    cdef bint in_name = False
    cdef Py_ssize_t i = 0
    while fmt[i] != 0:
        if fmt[i] == b':':
            in_name = not in_name
        elif fmt[i] == b'O' and not in_name:
            return True
        i += 1
    return False
