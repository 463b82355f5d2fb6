# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IndirectMemory (N-D), IndirectMemory2D (T**) and BufferCollection2D: indirect memory
exported through the buffer protocol.

One extension module, one topic per included file (found by its name).
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_C_CONTIGUOUS, PyBUF_F_CONTIGUOUS, PyBUF_FORMAT,
    PyBUF_FULL_RO, PyBUF_INDIRECT, PyBUF_ND, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject, PyTypeObject, traverseproc
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset, strcmp

import math
import operator
import struct
import sys

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

cdef enum:
    _MAX_NDIM = 64  # PyBUF_MAX_NDIM: the most dimensions a Py_buffer may have

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

include "formats.pxi"
include "convert.pxi"
include "copy_engine.pxi"
include "addresses.pxi"
include "layout.pxi"
include "memory.pxi"
include "memory2d.pxi"
include "export.pxi"
include "pinned.pxi"
include "lending.pxi"
include "windows.pxi"
include "ndarray_export.pxi"
include "held_buffers.pxi"
include "views.pxi"
include "collection.pxi"
include "numpy_interop.pxi"
include "capi.pxi"


# -- module initialisation ------------------------------------------------------------------

cdef extern from "Python.h":
    unsigned long Py_TPFLAGS_BASETYPE


cdef void _refuse_python_subclasses(type tp) noexcept:
    # Like memoryview: internal fast paths act on the object's own state, and a subclass could
    # contradict it (a __buffer__ handing out other rows, a __release_buffer__ that does not
    # release). Cython's own cdef subclasses (compiled against the .pxd) are unaffected.
    (<PyTypeObject*>tp).tp_flags &= ~Py_TPFLAGS_BASETYPE


_refuse_python_subclasses(IndirectMemory)
_refuse_python_subclasses(IndirectMemory2D)
_refuse_python_subclasses(BufferCollection2D)
_install_held_buffers_traverse()

