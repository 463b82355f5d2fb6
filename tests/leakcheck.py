"""Leak-check workload for indirect_buffer: run it under valgrind (see test_leakcheck.py).

    PYTHONMALLOC=malloc valgrind --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --error-exitcode=99 \
        --suppressions=tests/valgrind-python.supp python tests/leakcheck.py [--helper-dir DIR]

Creates, exports, copies, wraps and releases every kind of object many times, including
the error paths (a collection whose 5th row is bad, MemoryError from huge sizes, bad formats).
Every object is dropped before exit, so anything valgrind calls "definitely lost" with a frame in
indirect_buffer's extension modules (or the helper module) is a leak of ours.

The file is named so that pytest does not collect it. With --helper-dir, the directory holding
the compiled `ib_leak_helper` module (built from HELPER_PYX by the tests), the C-allocated
tables wrapped with the package's memory nannies are exercised too.
"""
import argparse
import copy
import ctypes
import gc
import pickle
import sys

# A Cython module used by the lifetime and leak tests: C-allocated double** tables whose memory
# nannies free them by calling into C (a hand-written nanny and the package's ready-made ones).
HELPER_PYX = r'''
# cython: language_level=3
from libc.stdlib cimport calloc, malloc

from indirect_buffer.buffer_impl cimport IndirectMemory, IndirectMemory2D
from indirect_buffer.nannies cimport (DeallocatorNanny, FreeLevelsNanny, FreeRowsAndTableNanny,
                                      FreeTreeNanny)

cdef extern from *:
    """
    #include <stdlib.h>
    #include <stdio.h>
    static long ib_helper_freed = 0;
    static void ib_helper_free_table(void **table, Py_ssize_t rows) {
        Py_ssize_t i;
        for (i = 0; i < rows; i++) free(table[i]);
        free(table);
        ib_helper_freed++;
        /* Lets a test see deallocations that happen during interpreter shutdown. */
        if (getenv("IB_HELPER_TRACE") != NULL) {
            printf("ib_helper: freed a %ld-row table\\n", (long)rows);
            fflush(stdout);
        }
    }
    /* rows x cols doubles, element (i, j) = i*cols + j; NULL on allocation failure. */
    static double **ib_helper_new_table(Py_ssize_t rows, Py_ssize_t cols) {
        Py_ssize_t i, j;
        double **table = (double **)calloc(rows > 0 ? (size_t)rows : 1, sizeof(double *));
        if (table == NULL) return NULL;
        for (i = 0; i < rows; i++) {
            table[i] = (double *)malloc(cols > 0 ? (size_t)cols * sizeof(double) : 1);
            if (table[i] == NULL) {
                ib_helper_free_table((void **)table, i);
                ib_helper_freed--;  /* not a deallocation by a nanny */
                return NULL;
            }
            for (j = 0; j < cols; j++) table[i][j] = (double)(i * cols + j);
        }
        return table;
    }
    """
    long ib_helper_freed
    void ib_helper_free_table(void** table, Py_ssize_t rows) noexcept nogil
    double** ib_helper_new_table(Py_ssize_t rows, Py_ssize_t cols) noexcept nogil


cdef class CallsCNanny:
    """A hand-written memory nanny whose deallocator calls a C function."""
    cdef void** table
    cdef Py_ssize_t rows

    def __dealloc__(self):
        if self.table != NULL:
            ib_helper_free_table(self.table, self.rows)
            self.table = NULL


def wrap_c_table(Py_ssize_t rows, Py_ssize_t cols, str nanny="hand", format="d",
                 bint readonly=False):
    """A rows x cols C double** wrapped with a nanny: 'hand', 'dealloc' or 'free_rows'."""
    cdef double** table = ib_helper_new_table(rows, cols)
    cdef CallsCNanny hand
    if table == NULL:
        raise MemoryError()
    if nanny == "hand":
        hand = CallsCNanny.__new__(CallsCNanny)
        hand.table = <void**>table
        hand.rows = rows
        keeper = hand
    elif nanny == "dealloc":
        keeper = DeallocatorNanny.create(<void*>table, rows, ib_helper_free_table)
    elif nanny == "free_rows":
        keeper = FreeRowsAndTableNanny.create(<void*>table, rows)
    else:
        ib_helper_free_table(<void**>table, rows)
        raise ValueError(f"unknown nanny {nanny!r}")
    # If the wrapper cannot be built (bad format...), the nanny is dropped and frees the table.
    return IndirectMemory2D.from_ptr_with_memory_nanny(<void*>table, rows, cols, format,
                                                       readonly, keeper)


def wrap_c_tensor(Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2, str nanny="tree"):
    """An n0 x n1 x n2 C double*** freed by a nanny: 'tree' (malloc per table and row, freed
    by FreeTreeNanny) or 'levels' (one block per level, freed by FreeLevelsNanny)."""
    cdef Py_ssize_t shape[3]
    cdef Py_ssize_t counts[2]
    cdef Py_ssize_t i, j, k
    cdef double*** t = <double***>calloc(n0, sizeof(double**))
    if t == NULL:
        raise MemoryError()
    shape[0], shape[1], shape[2] = n0, n1, n2
    counts[0], counts[1] = n0, n1
    if nanny == "tree":
        keeper = FreeTreeNanny.create(t, 2, counts)  # owns t from here: frees what is set
        for i in range(n0):
            t[i] = <double**>calloc(n1, sizeof(double*))
            if t[i] == NULL:
                raise MemoryError()
            for j in range(n1):
                t[i][j] = <double*>malloc(n2 * sizeof(double))
                if t[i][j] == NULL:
                    raise MemoryError()
                for k in range(n2):
                    t[i][j][k] = i * 10000 + j * 100 + k
    else:
        t[0] = <double**>calloc(n0 * n1, sizeof(double*))
        if t[0] != NULL:
            t[0][0] = <double*>calloc(n0 * n1 * n2, sizeof(double))
        if t[0] == NULL or t[0][0] == NULL:
            raise MemoryError()  # (a leak on this path would show in the report)
        for i in range(n0):
            t[i] = t[0] + i * n1
            for j in range(n1):
                t[i][j] = t[0][0] + (i * n1 + j) * n2
                for k in range(n2):
                    t[i][j][k] = i * 10000 + j * 100 + k
        keeper = FreeLevelsNanny.create(t, 2)
    return IndirectMemory.from_ptr_nd(t, 3, shape, "d", 0, NULL, False, keeper)


def freed():
    """How many tables ib_helper_free_table has freed so far."""
    return ib_helper_freed


def leak_for_selftest(Py_ssize_t rows, Py_ssize_t cols):
    """Allocate a C table and forget it: a definite leak with a frame in this module."""
    if ib_helper_new_table(rows, cols) == NULL:
        raise MemoryError()
'''


def expect(exc_type, func, *args, **kwargs):
    """Call func, which must raise exc_type (anything else is a failure of the workload)."""
    try:
        func(*args, **kwargs)
    except exc_type:
        return
    raise AssertionError(f"{func!r}{args} did not raise {exc_type.__name__}")


def ctypes_table(rows, cols):
    rows_ = [(ctypes.c_double * cols)(*range(i * cols, (i + 1) * cols)) for i in range(rows)]
    return (ctypes.POINTER(ctypes.c_double) * rows)(*rows_)


class PyNanny:
    """A pure-Python memory nanny: keeps ctypes objects alive."""

    def __init__(self, *objs):
        self.objs = objs


def workload(np, _testbuffer, helper, iterations):
    from indirect_buffer import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect

    a = np.arange(12.0).reshape(3, 4)
    fa = np.asfortranarray(a)
    for it in range(iterations):
        # -- owned memory: every export and copy path, then release / plain deletion --------
        m = IndirectMemory2D.create_memory(3, 4, "d")
        m.copy_from(a)
        m.copy_from(fa)
        mv = memoryview(m)
        mv[1, 1] = -1.0
        nd = _testbuffer.ndarray(m, getbuf=_testbuffer.PyBUF_FULL_RO)
        assert nd.tolist()[1][1] == -1.0
        dv = m.direct_view()
        arr = np.asarray(dv)
        assert arr[1, 1] == -1.0
        out = np.empty((3, 4))
        m.copy_to(out)
        m.copy_to(m)  # overlapping copy (through a temporary)
        t = m.to_numpy()
        c = m.copy(readonly=True)
        expect(BufferError, m.release)
        expect(BufferError, m.reinterpret_data, "B")
        del mv, nd, arr, dv
        m.reinterpret_data("B")
        m.reinterpret_data("d")
        m.make_read_only()
        expect(BufferError, m.copy_from, a)
        expect(TypeError, pickle.dumps, m)
        expect(TypeError, copy.copy, m)
        expect(TypeError, copy.deepcopy, m)
        with m:
            pass
        expect(ValueError, memoryview, m)
        expect(ValueError, m.copy_to, out)
        del m, c, t
        m = IndirectMemory2D.create_memory(5, 7, "i")  # freed by deallocation, not release()
        v = memoryview(m)
        del m, v
        m = IndirectMemory2D.create_memory(0, 0, "q")
        m.direct_view().release()
        del m

        # -- errors raised midway -------------------------------------------------------------
        expect(MemoryError, IndirectMemory2D.create_memory, 2 ** 40, 2 ** 40, "d")
        expect(MemoryError, IndirectMemory2D.create_memory, 1, 2 ** 62, "B")
        expect(ValueError, IndirectMemory2D.create_memory, -1, 2, "d")
        expect(ValueError, IndirectMemory2D.create_memory, 2, 2, "")
        expect(ValueError, IndirectMemory2D.create_memory, 2, 2, "not a format")
        expect(TypeError, IndirectMemory2D.create_memory, 2, 2, 3.5)
        m = IndirectMemory2D.create_memory(2, 3, "d")
        expect(BufferError, m.copy_from, np.zeros((3, 2)))
        expect(BufferError, m.copy_from, np.zeros((2, 3), dtype=np.complex64))
        expect(ValueError, m.reinterpret_data, "5s")
        del m

        # -- ctypes tables --------------------------------------------------------------------
        table = ctypes_table(3, 4)
        m = IndirectMemory2D.from_ctype_ptr(table, 3, 4)
        v = memoryview(m)
        assert v[2, 3] == 11.0
        del v
        m.release()
        p = ctypes.cast(table, ctypes.POINTER(ctypes.POINTER(ctypes.c_double)))
        m = IndirectMemory2D.from_ctype_ptr(p, 3, 4, memory_nanny=PyNanny(table))
        m.to_numpy()
        del m, p
        expect(BufferError, IndirectMemory2D.from_ctype_ptr, table, 4, 4)
        expect(ValueError, IndirectMemory2D.from_ctype_ptr,
               (ctypes.POINTER(ctypes.c_double) * 2)(), 2, 1)
        expect(TypeError, IndirectMemory2D.from_ctype_ptr, (ctypes.c_double * 3)(), 1, 3)

        # -- lent memory (no nanny): revoked with views out (a snapshot), while pinned, and
        #    N-D with offsets -----------------------------------------------------------------
        m = IndirectMemory2D.from_address(ctypes.addressof(table), 3, 4, "d")
        v = memoryview(m)
        m.release()  # revoked: v reads a snapshot that m owns until v goes
        assert v[2, 3] == 11.0
        del v, m
        m = IndirectMemory2D.from_ctype_ptr(table, 3, 4)
        v = memoryview(m)
        with m.pinned("d"):
            expect(BufferError, m.release)  # revoked all the same, and says the pin is held
        m.release()
        del v, m
        t3 = IndirectMemory.create_memory((2, 3, 4), "d", indirect=(0, 1))
        m = IndirectMemory.from_address(t3.address, (2, 3, 4), "d")
        v = memoryview(m)
        m.release()
        assert v.tolist() == t3.to_numpy().tolist()
        del v, m, t3

        # -- raw addresses with a Python nanny ------------------------------------------------
        m = IndirectMemory2D.from_address(ctypes.addressof(table), 3, 4, "d",
                                          memory_nanny=PyNanny(table))
        mv = memoryview(m)
        m2 = IndirectMemory2D.from_address(m.address, 3, 4, "d", memory_nanny=m)
        m2.copy_from(a)
        del mv
        m2.release()
        m.release()
        del m, m2, table
        expect(ValueError, IndirectMemory2D.from_address, 0, 1, 1, "d")

        # -- C tables wrapped with nannies that call into C -----------------------------------
        if helper is not None:
            for kind in ("hand", "dealloc", "free_rows"):
                m = helper.wrap_c_table(3, 4, kind)
                v = memoryview(m)
                assert v[2, 3] == 11.0
                m.copy_to(out)
                del v
                if it % 2:
                    m.release()
                del m
                expect(ValueError, helper.wrap_c_table, 2, 2, kind, "")  # nanny frees the table
            m = helper.wrap_c_table(2, 2, "hand")
            keep = [memoryview(m), m.copy()]
            assert keep[0][1, 1] == 3.0
            del m, keep

        # -- BufferCollection2D -----------------------------------------------------------------
        rows = [np.arange(4.0) + 4 * i for i in range(5)]
        coll = BufferCollection2D(rows)
        v = memoryview(coll)
        out5 = np.empty((5, 4))
        coll.copy_to(out5)
        coll.to_numpy()
        del v
        coll.release()
        coll = BufferCollection2D(bytearray(b"abcd") for _ in range(5))
        v = memoryview(coll)
        v[4, 3] = 0
        del v, coll
        for bad in (np.arange(5.0), b"abcd", np.arange(8.0)[::2], np.arange(4, dtype=np.int32),
                    object()):
            expect((BufferError, TypeError), BufferCollection2D, rows[:4] + [bad] + rows[4:])
        ba = [bytearray(4) for _ in range(6)]
        expect(BufferError, BufferCollection2D, ba[:4] + [bytearray(3)] + ba[4:])
        for row in ba:
            row.append(1)  # every row buffer was released: resizable again
        expect(ValueError, BufferCollection2D, [])
        empty = BufferCollection2D([], column_count=3, format="d")
        memoryview(empty).release()
        del empty, rows, ba, out5

        # -- views over rows and columns, as_indirect -------------------------------------------
        r = IndirectMemory2D.view_from_rows(a)
        memoryview(r)[0, 0] = 0.0
        r.to_numpy()
        r.release()
        col = IndirectMemory2D.view_from_columns(fa)
        col.copy_to(np.empty((4, 3)))
        dv = col.direct_view()  # the columns of a Fortran array lie back to back
        assert np.asarray(dv)[1, 2] == fa[2, 1]
        del col, dv
        expect(BufferError, IndirectMemory2D.view_from_rows, a[:, ::2])
        expect(BufferError, IndirectMemory2D.view_from_columns, a)
        expect(BufferError, IndirectMemory2D.view_from_rows, b"abc")
        expect(TypeError, IndirectMemory2D.view_from_rows, object())
        r = IndirectMemory2D.view_from_rows(bytearray(b"abcdef"))
        del r
        x = as_indirect([[1.0, 2.0], [3.0, 4.0]])
        y = as_indirect(a)
        z = as_indirect(a[:, ::2])
        w = as_indirect(x, format="f")
        del x, y, z, w

        # -- N-D memory ---------------------------------------------------------------------
        cube = np.arange(24.0).reshape(2, 3, 4)
        for indirect in (None, (0,), (1,)):
            n = IndirectMemory.create_memory((2, 3, 4), "d", indirect=indirect)
            n.copy_from(cube)
            mv = memoryview(n)
            assert mv[1, 2, 3] == 23.0
            n.copy_to(np.empty((2, 3, 4)))
            n.copy_from(n)  # overlapping: through a temporary
            n.to_numpy()
            c = n.copy()
            expect(BufferError, n.release)
            del mv
            n.release()
            del n, c
        v = IndirectMemory.view_from_array(cube[::-1], indirect=(0, 1))
        v.copy_to(np.empty((2, 3, 4)))
        del v
        expect(BufferError, IndirectMemory.view_from_array, np.asfortranarray(cube))
        expect(MemoryError, IndirectMemory.create_memory, (2 ** 40, 2 ** 40, 0), "d")
        expect(ValueError, IndirectMemory.create_memory, (2, 3), "d", indirect=(1,))
        t3 = as_indirect(cube, indirect=(0,))
        t4 = as_indirect(t3, indirect=(0, 1))
        del t3, t4
        if helper is not None:
            for kind in ("tree", "levels"):
                m = helper.wrap_c_tensor(2, 3, 4, kind)
                mv = memoryview(m)
                assert mv[1, 2, 3] == 10203.0
                m.copy_to(np.empty((2, 3, 4)))
                del mv
                if it % 2:
                    m.release()
                del m


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--helper-dir", default=None,
                        help="directory holding the compiled ib_leak_helper module")
    parser.add_argument("--selftest-leak", action="store_true",
                        help="leak one C table on purpose (checks that the report parser sees it)")
    args = parser.parse_args(argv)
    import _testbuffer

    import numpy as np

    helper = None
    if args.helper_dir:
        sys.path.insert(0, args.helper_dir)
        import ib_leak_helper as helper
    freed_before = helper.freed() if helper is not None else 0
    workload(np, _testbuffer, helper, args.iterations)
    gc.collect()
    if args.selftest_leak:
        helper.leak_for_selftest(3, 4)
    if helper is not None:
        # 'hand' and 'dealloc' nannies call the C deallocator; one extra 'hand' per iteration,
        # plus the failed wraps of both kinds.
        expected = args.iterations * (2 + 2 + 1)
        got = helper.freed() - freed_before
        assert got == expected, f"C deallocator ran {got} times, expected {expected}"
    print(f"leakcheck: {args.iterations} iterations done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
