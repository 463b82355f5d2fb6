# Struct formats: parsing, canonical forms, the ones foreign exporters report.

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


# format (exact str or bytes) -> canonical key; bounded like _format_cache.
cdef dict _canonical_cache = {}


cdef str _canonical_format(object fmt):
    """A key equal for formats that describe the same native element (e.g. 'l', '@q', '<q').

    fmt is None (a NULL Py_buffer.format: 'B'), str or bytes; anything else is a TypeError
    (the cimport API passes caller objects straight here).
    """
    if fmt is None:
        return "u1"
    cdef bint cacheable = type(fmt) is str or type(fmt) is bytes
    if cacheable:
        cached = _canonical_cache.get(fmt)
        if cached is not None:
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
    if len(code) == 1 and code in _KIND and _is_native_order(order):
        if order in ("", "@"):
            result = f"{_KIND[code]}{struct.calcsize(code)}"
        elif code not in "nNP":
            result = f"{_KIND[code]}{struct.calcsize(order + code)}"
    if cacheable and len(_canonical_cache) < 256:
        _canonical_cache[fmt] = result
    return result


cdef str _native_format(str fmt):
    """'<i' -> 'i' where the standard-size type equals the native one (ctypes' formats)."""
    if len(fmt) == 2 and fmt[1] in _KIND and fmt[1] not in "nNP" and fmt[0] != "@" \
            and _is_native_order(fmt[0]) and struct.calcsize(fmt) == struct.calcsize(fmt[1]):
        return fmt[1]
    return fmt

