# Pointers as users hold them: integer addresses, ctypes and cffi pointer objects, and ctypes
# tables of pointers (from_address, from_ctype_ptr).

cdef object _cffi_ffi = None  # made on first use: cffi is imported only when given a cdata


cdef uintptr_t _ctypes_pointer_value(object ptr) except? 0:
    """The address a ctypes pointer instance holds, read from its own storage (ctypes.cast
    would leave a reference cycle through ptr._objects, keeping ptr alive until a gc)."""
    import ctypes
    return <uintptr_t>(ctypes.c_void_p.from_buffer(ptr).value or 0)


cdef tuple _ctypes_keepalive(object obj):
    """What keeps the memory behind a ctypes or cffi pointer object alive: the object and,
    for ctypes, a frozen snapshot of what its _objects holds now, so that re-pointing it
    (ptr.contents = ...) or emptying a dict reached through gc.get_referents cannot free
    the table."""
    return (obj, _frozen(getattr(obj, "_objects", None)))


cdef object _frozen(object objects):
    """ctypes' _objects with every dict (nested too) turned into a tuple of its values."""
    if isinstance(objects, dict):
        return tuple([_frozen(v) for v in (<dict>objects).values()])
    return objects


cdef uintptr_t _address_value(object address) except? 0:
    """The pointer value of an int-like, a ctypes pointer or c_void_p, or a cffi pointer."""
    global _cffi_ffi
    if isinstance(address, (bool, float)):  # bool is an int, float has no exact address
        raise TypeError(f"address must be an int or a pointer object, not "
                        f"{type(address).__name__}")
    ctypes = sys.modules.get("ctypes")  # a ctypes object means ctypes is imported
    if ctypes is not None and isinstance(address, ctypes.c_void_p):
        value = address.value or 0
    elif ctypes is not None and isinstance(address, ctypes._Pointer):
        value = _ctypes_pointer_value(address)
    elif type(address).__module__ == "_cffi_backend":
        if _cffi_ffi is None:
            import _cffi_backend
            _cffi_ffi = _cffi_backend.FFI()
        kind = _cffi_ffi.typeof(address).kind
        if kind not in ("pointer", "array"):
            raise TypeError(f"address must be a cffi pointer or array, not a cffi {kind} "
                            f"({_cffi_ffi.typeof(address).cname})")
        value = int(_cffi_ffi.cast("uintptr_t", address))
    else:
        try:
            value = operator.index(address)
        except TypeError:
            raise TypeError(f"address must be an int, a ctypes pointer or c_void_p, or a cffi "
                            f"pointer, not {type(address).__name__}") from None
    if value < 0 or value >= _ADDRESS_LIMIT:
        raise ValueError(f"address {value} is not a valid pointer value")
    return <uintptr_t>value


cdef tuple _ctypes_table(object ptr):
    """A ctypes table of pointers: (address, pointer levels, element format, entries).

    ptr is an array of POINTER(T) (or of POINTER(POINTER(T)) ...: one level per POINTER) or
    a POINTER(POINTER(T)) (...); entries is the array's length, or -1 for a pointer. The
    element format comes from T: a struct code where ctypes gives one, else opaque '<n>s'.
    """
    import ctypes
    cdef uintptr_t address
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
        address = ctypes.addressof(ptr)
    elif isinstance(ptr, ctypes._Pointer):
        row_type = getattr(type(ptr), "_type_", None)
        if not isinstance(row_type, type) or type(ptr) is not ctypes.POINTER(row_type):
            raise TypeError(f"expected {what}, got the subclass {type(ptr).__name__}"
                            if isinstance(row_type, type) else
                            f"expected {what}, got {type(ptr).__name__}")
        address = _ctypes_pointer_value(ptr)
        if address == 0:
            raise ValueError("the ctypes pointer table is NULL")
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
    return (address, levels, fmt, entries)
