# cython: language_level=3
"""Flow 7, N-D: a double*** tensor and a stack of frames (unsigned char** over H x W blocks).

    t = tensor_new(2, 3, 4)           # ib_tensor_new: 3 allocations, one per level
    tensor_fill_index(t)              # C writes t[i][j][k] = i*10000 + j*100 + k
    memoryview(t)[1, 2, 3]            # 10203.0: memoryview follows both pointer levels
    tensor_sum(t.to_numpy())          # any 3-D array: copied into a T*** for the call
    del t                             # ib_tensor_free runs after the last view

    video = np.zeros((10, 480, 640), np.uint8)  # frames x H x W
    frames_add(video, 5)              # zero-copy: one pointer per frame, C writes into video
    frames_mean(video)                # H x W uint8, the mean frame, computed by C

IndirectMemory is the N-D type: pointer tables at the dimensions named `indirect` (a T*** has
them at 0 and 1; a frames table at 0 only, each pointer leading to a C-contiguous H x W
block). double_table3() hands out the double*** and uchar_table() the frames' unsigned
char**, each after checking the format, writability and the layout.
"""
import numpy as np

from indirect_buffer import as_indirect

from indirect_buffer.buffer_impl cimport IndirectMemory
from indirect_buffer.nannies cimport DeallocatorNanny, table_dealloc_fn

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


def fail_allocations_after(long n):
    """Test hook: the next n clib allocations succeed, later ones fail (n < 0: never fail)."""
    c.ib_fail_allocations_after(n)


# Adapters with the nannies' table_dealloc_fn signature around the library's free functions.
cdef void _free_tensor(void** table, Py_ssize_t rows) noexcept nogil:
    c.ib_tensor_free(<double***>table)


cdef void _free_frames(void** table, Py_ssize_t rows) noexcept nogil:
    c.ib_frames_free(<unsigned char**>table)


cdef int _check_shape(tuple shape) except -1:
    # clib returns NULL for a zero dimension too: reject it first, so NULL means MemoryError.
    if min(shape) <= 0:
        raise ValueError(f"every dimension must be positive, got {shape}")
    return 0


cdef IndirectMemory _adopt(void* ptr, tuple shape, str fmt, unsigned int indirect,
                          table_dealloc_fn dealloc, str what):
    # Hand a fresh C structure to its nanny before anything else can raise (then every error
    # path frees it, exactly once); NULL means out of memory (the shape was checked before).
    cdef Py_ssize_t dims[3]
    if ptr == NULL:
        raise MemoryError(f"clib could not allocate {what} of shape {shape}")
    try:
        nanny = DeallocatorNanny.create(ptr, shape[0], dealloc)
    except BaseException:
        dealloc(<void**>ptr, shape[0])  # no nanny yet: free it ourselves
        raise
    dims[0], dims[1], dims[2] = shape
    return IndirectMemory.from_ptr_nd(ptr, 3, dims, fmt, indirect, NULL, False, nanny)


def tensor_new(Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2):
    """A zeroed n0 x n1 x n2 double*** from ib_tensor_new, freed by ib_tensor_free."""
    _check_shape((n0, n1, n2))
    # indirect 0: all but the last dimension are tables (0b011): a T***.
    return _adopt(c.ib_tensor_new(n0, n1, n2), (n0, n1, n2), "d", 0, _free_tensor,
                  "a tensor")


def tensor_fill_index(IndirectMemory t not None):
    """t[i][j][k] = i*10000 + j*100 + k, written by C into any writable double T***."""
    cdef double*** p = t.double_table3(True)
    if c.ib_tensor_fill_index(p, t.dim(0), t.dim(1), t.dim(2)) != c.IB_OK:
        raise ValueError("ib_tensor_fill_index refused the tensor")


def tensor_sum(tensor):
    """Sum of a 3-D tensor computed by C: an IndirectMemory T*** as it is, or any 3-D array
    (copied into one; as_indirect returns a T*** unchanged)."""
    cdef IndirectMemory t = as_indirect(tensor, format="d", indirect=(0, 1))
    return c.ib_tensor_sum(<const double* const* const*>t.double_table3(False),
                           t.dim(0), t.dim(1), t.dim(2))


def frames_new(Py_ssize_t count, Py_ssize_t height, Py_ssize_t width):
    """count zeroed height x width frames from ib_frames_new, freed by ib_frames_free."""
    _check_shape((count, height, width))
    # indirect 0b001: one table, at dimension 0 (frames), then C-contiguous blocks.
    return _adopt(c.ib_frames_new(count, height, width), (count, height, width), "B", 1,
                  _free_frames, "frames")


def frames_add(frames, int delta):
    """Add delta to every pixel (saturating), in place: an IndirectMemory frames table, or a
    count x H x W uint8 array with C-contiguous frames (zero-copy: C writes into it)."""
    cdef IndirectMemory f
    if isinstance(frames, IndirectMemory):
        _frames_add(frames, delta)
    else:
        # A view of our own: released (the array's buffer given back) when the block ends.
        with IndirectMemory.view_from_array(frames, indirect=(0,)) as f:
            _frames_add(f, delta)


cdef int _frames_add(IndirectMemory f, int delta) except -1:
    if c.ib_frames_add(f.uchar_table(True), f.dim(0), f.dim(1), f.dim(2), delta) != c.IB_OK:
        raise ValueError("ib_frames_add refused the frames")
    return 0


def frames_mean(frames):
    """The mean of count x H x W uint8 frames (any such array or frames table), computed by
    C, as an H x W uint8 array."""
    cdef IndirectMemory f = as_indirect(frames, format="B", indirect=(0,))
    out = np.empty((f.dim(1), f.dim(2)), dtype=np.uint8)
    cdef unsigned char[:, ::1] o = out
    if c.ib_frames_mean(<const unsigned char* const*>f.uchar_table(False), f.dim(0), f.dim(1),
                        f.dim(2), &o[0, 0] if o.size else NULL) != c.IB_OK:
        raise ValueError("ib_frames_mean refused the frames")
    return out
