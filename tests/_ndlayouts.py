"""N-D pointer structures for the tests (tests/test_nd.py, tests/test_fuzz.py): the layouts of
IndirectMemory, values of any dtype, and pointer structures laid out by hand with ctypes."""
import ctypes
import itertools
import math

import numpy as np

from indirect_buffer import IndirectMemory

PTR = ctypes.sizeof(ctypes.c_void_p)
# ctypes element types of the struct formats the structures are built with
CTYPES = {"B": ctypes.c_ubyte, "b": ctypes.c_byte, "h": ctypes.c_short, "i": ctypes.c_int,
          "q": ctypes.c_longlong, "f": ctypes.c_float, "d": ctypes.c_double}


def patterns(ndim):
    """Every non-empty set of indirect dimensions (never the last)."""
    return [p for r in range(1, ndim) for p in itertools.combinations(range(ndim - 1), r)]


def values(shape, dtype, seed=0):
    """Distinct-looking values of dtype (fractions for floats, random bytes for S/V)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    if dtype.kind in "SV":
        return np.frombuffer(rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).tobytes(),
                             dtype=dtype).reshape(shape).copy()
    if dtype.kind == "f":
        return (rng.integers(-500, 500, n) / 4).astype(dtype).reshape(shape)
    if dtype.kind == "c":
        return (rng.integers(-50, 50, n) + 1j * rng.integers(-50, 50, n)).astype(
            dtype).reshape(shape)
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -10 ** 6), min(info.max, 10 ** 6), n,
                        endpoint=True).astype(dtype).reshape(shape)


class Structure:
    """A pointer structure laid out by hand in ctypes memory: a C-contiguous table of pointers
    for each group of dimensions ending at an indirect dimension, each slot pointing at its own
    separately allocated block of the next group; C-contiguous data blocks last. offsets[k]:
    each pointer of the k-th indirect dimension points that many bytes before its block (1-based
    Numerical-Recipes structures). Blocks are padded, so they never lie back to back."""

    def __init__(self, arr, indirect, offsets=None, pad=24):
        arr = np.ascontiguousarray(arr)
        self.arr = arr
        self.shape = arr.shape
        self.itemsize = arr.itemsize
        self.dims = dims = sorted(indirect)
        self.offsets = offsets = list(offsets) if offsets is not None else [0] * len(dims)
        self.keep = []
        self.tables = {}   # index prefix before a group -> its ctypes table of pointers
        self.blocks = {}   # index prefix of the data group -> (address, bytes)
        bounds = [(0 if k == 0 else dims[k - 1] + 1, d) for k, d in enumerate(dims)]

        def make(level, prefix):
            if level == len(dims):
                block = arr[prefix].tobytes() if prefix else arr.tobytes()
                buf = ctypes.create_string_buffer(block, len(block) + pad)
                self.keep.append(buf)
                self.blocks[prefix] = (ctypes.addressof(buf), len(block))
                return ctypes.addressof(buf)
            a, d = bounds[level]
            sub = arr.shape[a:d + 1]
            table = (ctypes.c_void_p * max(1, math.prod(sub)))()
            self.keep.append(table)
            self.tables[prefix] = table
            for s, idx in enumerate(itertools.product(*[range(x) for x in sub])):
                table[s] = make(level + 1, prefix + idx) - offsets[level]
            return ctypes.addressof(table)

        self.address = make(0, ())

    def read(self):
        """The elements as they are now in the data blocks, as an array of arr's dtype."""
        out = np.empty_like(self.arr)
        for prefix, (addr, size) in self.blocks.items():
            block = np.frombuffer(ctypes.string_at(addr, size), dtype=self.arr.dtype)
            out[prefix] = block.reshape(out[prefix].shape)
        return out

    def wrap(self, fmt=None, readonly=False, memory_nanny=None):
        return IndirectMemory.from_address(
            self.address, self.shape, fmt or memoryview(self.arr).format, indirect=self.dims,
            readonly=readonly, memory_nanny=self if memory_nanny is None else memory_nanny,
            offsets=self.offsets)


def ctypes_tensor(a, ctype=ctypes.c_double, levels=None):
    """a (N-D) as ctypes builds a pointer structure: the first `levels` dimensions (default
    all but the last) are arrays of POINTER(...), the rest one ctypes block per pointer. Returns
    the root array: an array of POINTER(POINTER(...(T))) with `levels` POINTERs."""
    levels = a.ndim - 1 if levels is None else levels

    def build(sub, level):
        if level == levels:
            block = (ctype * max(1, sub.size))(*sub.ravel().tolist())
            return block
        elem_type = ctype
        for _ in range(levels - level - 1):
            elem_type = ctypes.POINTER(elem_type)
        ptr_type = ctypes.POINTER(elem_type)
        children = [build(sub[i], level + 1) for i in range(sub.shape[0])]
        return (ptr_type * max(1, sub.shape[0]))(*[ctypes.cast(c, ptr_type) for c in children])

    return build(a, 0)
