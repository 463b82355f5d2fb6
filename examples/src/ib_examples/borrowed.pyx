# cython: language_level=3
"""Flow 2, borrowed: a view of a table that belongs to a C handle (ib_model's coefficients).

    model = Model(2, 3)
    coef = model.coef()               # zero-copy double** view, no new allocation
    v = memoryview(coef); v[1, 2] = 10.0
    model.predict([1, 2, 3])          # C sees the write: [1.0, 32.0]
    del model, coef                   # safe: v keeps coef alive, coef keeps the model alive
    v[1, 2]                           # 10.0; ib_model_free runs when v is released

The table is valid only while the ib_model lives, so the view's memory nanny is the Model
wrapper itself: from_ptr_with_memory_nanny keeps it alive as long as the view or any
memoryview of it exists.
"""
from cpython.array cimport array, clone
from indirect_buffer.buffer_impl cimport IndirectMemory2D

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


cdef class Model:
    """Owns one ib_model*; frees it once, when the last reference (including views) is gone."""
    cdef c.ib_model* ptr
    cdef readonly Py_ssize_t rows, cols

    def __cinit__(self, Py_ssize_t rows, Py_ssize_t cols):
        if rows <= 0 or cols <= 0:
            raise ValueError(f"model shape must be positive, got ({rows}, {cols})")
        self.ptr = c.ib_model_new(rows, cols)
        if self.ptr == NULL:
            raise MemoryError(f"ib_model_new({rows}, {cols}) failed")
        self.rows, self.cols = rows, cols

    def __dealloc__(self):
        # Runs only when nothing references the wrapper, so no view can outlive the table.
        c.ib_model_free(self.ptr)
        self.ptr = NULL

    def coef(self, readonly=False):
        """The coefficient table as a zero-copy IndirectMemory2D; it keeps this model alive."""
        return IndirectMemory2D.from_ptr_with_memory_nanny(
            c.ib_model_coef(self.ptr), self.rows, self.cols, "d", bool(readonly),
            self)  # memory_nanny: the owner of the table

    def predict(self, x):
        """coef . x as an array('d'); x is any sequence of cols numbers (C reads the table)."""
        cdef array xa = array("d", x)
        if len(xa) != self.cols:
            raise ValueError(f"x has {len(xa)} elements, expected {self.cols}")
        cdef array y = clone(xa, self.rows, True)
        if c.ib_model_predict(self.ptr, xa.data.as_doubles, y.data.as_doubles) != c.IB_OK:
            raise RuntimeError("ib_model_predict failed")
        return y
