# Pointers as users hold them: integer addresses, ctypes and cffi pointer objects, and ctypes
# tables of pointers (from_address, from_ctype_ptr).

cdef object _cffi_ffi = None  # made on first use: cffi is imported only when given a cdata


# ctypes' own getter of what a ctypes object keeps alive (its b_objects): the `_objects`
# descriptor of the _CData base type, taken from the _ctypes extension when this module is
# imported, never from whatever sys.modules["ctypes"] is later. A getter of the C type checks
# that it is given a real ctypes object, and no subclass can override what it reads.
import _ctypes
cdef object _CDATA_OBJECTS = _ctypes._SimpleCData.__base__.__dict__["_objects"]
del _ctypes


cdef object _ctypes_objects(object obj):
    """What ctypes itself keeps alive for a ctypes instance; TypeError if obj is not one."""
    try:
        return _CDATA_OBJECTS.__get__(obj, type(obj))
    except TypeError:
        raise TypeError(f"cannot tell what keeps the memory of {type(obj).__name__} alive: "
                        "not a ctypes object") from None


cdef tuple _ctypes_keepalive(object obj):
    """What keeps the memory behind a ctypes pointer object alive: the object and a frozen
    snapshot of what ctypes holds for it now, so that re-pointing it (ptr.contents = ...)
    or emptying a dict reached through gc.get_referents cannot free the table. Runs no
    Python code of the caller's."""
    return (obj, _frozen(_ctypes_objects(obj)))


cdef object _frozen(object objects):
    """ctypes' _objects with every dict (nested too) turned into a tuple of its values."""
    if isinstance(objects, dict):
        return tuple([_frozen(v) for v in (<dict>objects).values()])
    return objects


cdef tuple _address_and_keep(object address):
    """(pointer value, what keeps it alive or None) of an int-like, a ctypes pointer or
    c_void_p, or a cffi pointer. Call it last, after every other argument was converted:
    for a pointer object, nothing may run between taking the snapshot and reading the
    pointer (the caller's code could re-point it and free the memory)."""
    global _cffi_ffi
    if isinstance(address, (bool, float)):  # bool is an int, float has no exact address
        raise TypeError(f"address must be an int or a pointer object, not "
                        f"{type(address).__name__}")
    keep = None
    ctypes = sys.modules.get("ctypes")  # a ctypes object means ctypes is imported
    if ctypes is not None and isinstance(address, (ctypes.c_void_p, ctypes._Pointer)):
        keep = _ctypes_keepalive(address)
        # Read from the object's own storage: a subclass's `value` or `contents` can lie.
        value = ctypes.c_void_p.from_buffer(address).value or 0
    elif type(address).__module__ == "_cffi_backend":
        if _cffi_ffi is None:
            import _cffi_backend
            _cffi_ffi = _cffi_backend.FFI()
        kind = _cffi_ffi.typeof(address).kind
        if kind not in ("pointer", "array"):
            raise TypeError(f"address must be a cffi pointer or array, not a cffi {kind} "
                            f"({_cffi_ffi.typeof(address).cname})")
        keep = (address, None)  # an ffi.new() array owns its memory: keep it
        value = int(_cffi_ffi.cast("uintptr_t", address))
    else:
        try:
            value = operator.index(address)
        except TypeError:
            raise TypeError(f"address must be an int, a ctypes pointer or c_void_p, or a cffi "
                            f"pointer, not {type(address).__name__}") from None
    if value < 0 or value >= _ADDRESS_LIMIT:
        raise ValueError(f"address {value} is not a valid pointer value")
    return (value, keep)


cdef tuple _ctypes_table(object ptr):
    """A ctypes table of pointers: (address, pointer levels, element format, entries, keep).

    ptr is an array of POINTER(T) (or of POINTER(POINTER(T)) ...: one level per POINTER) or
    a POINTER(POINTER(T)) (...); entries is the array's length, or -1 for a pointer; keep is
    what keeps the table alive. The element format comes from T: a struct code where ctypes
    gives one, else opaque '<n>s'. The address is read last, right after the snapshot in
    keep: working out the format may run T's Python code, which could re-point ptr.
    """
    import ctypes
    cdef Py_ssize_t entries = -1
    what = "a ctypes array of POINTER(T) or a POINTER(POINTER(T))"
    if isinstance(ptr, ctypes.Array):
        row_type = getattr(type(ptr), "_type_", None)
        # ctypes caches array and pointer types: anything else is a subclass, whose _type_,
        # _length_ or __len__ may say something other than what its memory holds.
        if not isinstance(row_type, type) or type(ptr) is not row_type * type(ptr)._length_:
            raise TypeError(f"expected {what}, got the subclass {type(ptr).__name__}"
                            if isinstance(row_type, type) else
                            f"expected {what}, got {type(ptr).__name__}")
        # The size ctypes allocated, not what len() says.
        entries = ctypes.sizeof(ptr) // ctypes.sizeof(ctypes.c_void_p)
    elif isinstance(ptr, ctypes._Pointer):
        row_type = getattr(type(ptr), "_type_", None)
        if not isinstance(row_type, type) or type(ptr) is not ctypes.POINTER(row_type):
            raise TypeError(f"expected {what}, got the subclass {type(ptr).__name__}"
                            if isinstance(row_type, type) else
                            f"expected {what}, got {type(ptr).__name__}")
    else:
        raise TypeError(f"expected {what}, got {type(ptr).__name__}")
    cdef int levels = 0
    element = row_type
    while isinstance(element, type) and issubclass(element, ctypes._Pointer):
        levels += 1
        element = element._type_
    if levels == 0:
        raise TypeError(f"expected {what}, got {type(ptr).__name__}")
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
    # From here on no Python code of the caller's runs until the wrapper holds `keep`.
    keep = _ctypes_keepalive(ptr)
    cdef uintptr_t address
    if entries >= 0:
        address = ctypes.addressof(ptr)
    else:
        address = <uintptr_t>(ctypes.c_void_p.from_buffer(ptr).value or 0)
        if address == 0:
            raise ValueError("the ctypes pointer table is NULL")
    return (address, levels, fmt, entries, keep)
