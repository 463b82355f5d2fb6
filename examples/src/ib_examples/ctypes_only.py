"""Flow 5, ctypes only: clib driven from pure Python, for users with no Cython build of their own.

    m = matrix_new(2, 3)                     # C allocates; a Python nanny calls ib_matrix_free
    memoryview(m)[1, 2] = 4.0
    matrix_scale(m, 0.5); matrix_sum(m)      # 2.0
    model = Model(2, 3); coef = model.coef() # borrowed table; coef keeps the C model alive
    decode(2, 3, 4, on_block)                # on_block(block): a lent block, revoked after it
    enc = Encoder(2); buf = enc.buffer(4)    # lent until enc.wrote(n), which revokes it first

Which shared library: $IB_LIBIBMATRIX if set (e.g. clib/libibmatrix.so from
`make -C clib shared`), else the copy of clib that setup.py compiled into this package as the
extension module ib_examples._clib_shared (an empty module that exports the ib_* symbols), so
a plain `pip install` is enough.

IndirectMemory2D.from_ctype_ptr(ptr, rows, cols, memory_nanny=...) wraps a POINTER(POINTER(T))
result; the nanny is any Python object, here a small one whose __del__ calls the library's
free function (and that references nothing else, so that it can never be in a reference
cycle). Tables go back into C inside `with mem.pinned("d", writable=...) as address:`:
pinned() makes the checks that Cython code gets from double_table() (element format,
writability, rows starting at table[i], not released) and keeps the memory from being
released until the block ends. That matters here: ctypes releases the GIL during every foreign
call, so without the pin another thread could free the table while C runs.

Memory that C only lends for a while (ib_decode's callback block, ib_encoder_buffer's buffer
valid until ib_encoder_wrote) is wrapped WITHOUT a memory_nanny: it is then *lent*, and
release() -- or leaving its `with` block -- revokes the loan; views still out switch to a
private snapshot, and nothing reads the C memory afterwards (see decode() and Encoder, and
lent.pyx for the same in Cython).
"""
import ctypes
import os
from ctypes import CFUNCTYPE, POINTER, c_double, c_float, c_int, c_int32, c_long, c_size_t, c_void_p

from indirect_buffer import IndirectMemory2D


def _load():
    path = os.environ.get("IB_LIBIBMATRIX")
    if not path:
        from . import _clib_shared  # importing it is harmless: it only gives us its path

        path = _clib_shared.__file__
    return ctypes.CDLL(path)


lib = _load()
DoublePP = POINTER(POINTER(c_double))
_ModelP = c_void_p  # ib_model* is opaque: an address is all Python needs
_EncoderP = c_void_p  # ib_encoder* too
# int (*ib_block_cb)(const int32_t *const *channels, int nchannels, int nsamples, void *ctx)
BlockCallback = CFUNCTYPE(c_int, POINTER(POINTER(c_int32)), c_int, c_int, c_void_p)

# Prototypes: without them ctypes would truncate pointers and size_t to int.
for name, restype, argtypes in [
    ("ib_matrix_new", DoublePP, [c_size_t, c_size_t]),
    ("ib_matrix_free", None, [DoublePP, c_size_t]),
    ("ib_block_new", DoublePP, [c_size_t, c_size_t]),
    ("ib_block_free", None, [DoublePP]),
    # Tables we pass in are addresses from IndirectMemory2D.pinned(): declare them as void*.
    ("ib_matrix_sum", c_double, [c_void_p, c_size_t, c_size_t]),
    ("ib_matrix_scale", None, [c_void_p, c_size_t, c_size_t, c_double]),
    ("ib_model_new", _ModelP, [c_size_t, c_size_t]),
    ("ib_model_free", None, [_ModelP]),
    ("ib_model_coef", DoublePP, [_ModelP]),
    ("ib_model_predict", c_int, [_ModelP, POINTER(c_double), POINTER(c_double)]),
    ("ib_live_allocations", c_long, []),
    ("ib_fail_allocations_after", None, [c_long]),
    ("ib_decode", c_int, [c_int, c_int, c_int, BlockCallback, c_void_p]),
    ("ib_encoder_new", _EncoderP, [c_int]),
    ("ib_encoder_buffer", POINTER(POINTER(c_float)), [_EncoderP, c_int]),
    ("ib_encoder_wrote", c_int, [_EncoderP, c_int]),
    ("ib_encoder_sum", c_double, [_EncoderP, c_int]),
    ("ib_encoder_samples", c_long, [_EncoderP]),
    ("ib_encoder_free", None, [_EncoderP]),
]:
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = restype, argtypes


def live_allocations():
    """Live allocations of the loaded clib."""
    return lib.ib_live_allocations()


class _CallOnce:
    """Memory nanny: calls free_fn(*args) once, when the last wrapper/view holding it is gone.

    It holds nothing but the free function and its arguments, so it can never be part of a
    reference cycle: the garbage collector runs the __del__ of objects in a cycle while the
    cycle is still intact (PEP 442), and a nanny in one could free memory that a wrapper in
    the same cycle still points to. Outside any cycle, its __del__ runs only once every
    wrapper holding it is gone.
    """

    def __init__(self, free_fn, *args):
        self._free = free_fn
        self._args = args

    def __del__(self):
        self._free(*self._args)


def _adopt(table, rows, cols, free_fn, *free_args):
    # A NULL POINTER is falsy. Attach the nanny right away so every later error frees the table.
    if not table:
        raise MemoryError(f"clib could not allocate a {rows}x{cols} matrix")
    nanny = _CallOnce(free_fn, table, *free_args)
    return IndirectMemory2D.from_ctype_ptr(table, rows, cols, memory_nanny=nanny)


def _check_shape(rows, cols):
    if rows <= 0 or cols <= 0:  # clib's NULL would then not mean "out of memory"
        raise ValueError(f"matrix shape must be positive, got ({rows}, {cols})")


def matrix_new(rows, cols):
    """A zeroed matrix from ib_matrix_new, freed by ib_matrix_free after the last view."""
    _check_shape(rows, cols)
    return _adopt(lib.ib_matrix_new(rows, cols), rows, cols, lib.ib_matrix_free, rows)


def block_new(rows, cols):
    """A zeroed single-block matrix from ib_block_new, freed by ib_block_free."""
    _check_shape(rows, cols)
    return _adopt(lib.ib_block_new(rows, cols), rows, cols, lib.ib_block_free)


def matrix_sum(mem):
    """Sum of all elements of any double IndirectMemory2D (C reads the rows)."""
    with mem.pinned("d") as address:
        rows, cols = mem.shape
        return lib.ib_matrix_sum(address, rows, cols)


def matrix_scale(mem, factor):
    """Multiply every element by factor, in place (C writes the rows)."""
    with mem.pinned("d", writable=True) as address:
        rows, cols = mem.shape
        lib.ib_matrix_scale(address, rows, cols, factor)


class Model:
    """Owns one ib_model*; coef() views its table and keeps the model alive.

    The model is freed by a _CallOnce that this object and every coef() view hold: when the
    last of them is gone. (Not by a Model.__del__: a Model may well end up in a reference
    cycle with its own coef() views, e.g. by caching one, and see _CallOnce for why a nanny
    must stay out of cycles.)
    """

    def __init__(self, rows, cols):
        _check_shape(rows, cols)
        self.rows, self.cols = rows, cols
        ptr = lib.ib_model_new(rows, cols)
        if not ptr:
            raise MemoryError(f"ib_model_new({rows}, {cols}) failed")
        self._ptr = ptr
        self._owner = _CallOnce(lib.ib_model_free, ptr)

    def coef(self, readonly=False):
        """The coefficient table, zero-copy; valid as long as the result (or a view) lives."""
        return IndirectMemory2D.from_ctype_ptr(lib.ib_model_coef(self._ptr), self.rows,
                                               self.cols, readonly=readonly,
                                               memory_nanny=self._owner)

    def predict(self, x):
        """coef . x as a list (C reads the coefficient table)."""
        if len(x) != self.cols:
            raise ValueError(f"x has {len(x)} elements, expected {self.cols}")
        xs = (c_double * self.cols)(*x)
        ys = (c_double * self.rows)()
        if lib.ib_model_predict(self._ptr, xs, ys) != 0:
            raise RuntimeError("ib_model_predict failed")
        return list(ys)


# -- lent memory: a callback's block, a buffer valid until the next call ------------------------

IB_ENOMEM = -2  # ib_matrix.h


def decode(nchannels, nblocks, nsamples, callback):
    """ib_decode: callback(block) per block; returns the number of blocks delivered.

    block is a read-only IndirectMemory2D of shape (nchannels, nsamples), format 'i', lent for
    the duration of the call (block k holds k * 1000 + c * 100 + s at [c, s]). Views kept past
    the call read the values the block had when the callback returned. An exception raised by
    the callback stops decoding and propagates.
    """
    if nchannels < 1 or nsamples < 1 or nblocks < 0:
        raise ValueError(f"need nchannels >= 1, nsamples >= 1 and nblocks >= 0, got "
                         f"({nchannels}, {nblocks}, {nsamples})")
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    errors = []
    blocks = 0

    def on_block(channels, nch, nsamp, ctx):
        # Called by C through ctypes: no exception may leave it (ctypes would only print it).
        nonlocal blocks
        try:
            # No memory_nanny: lent. Leaving the `with` revokes it before C overwrites the block.
            with IndirectMemory2D.from_ctype_ptr(channels, nch, nsamp, readonly=True) as block:
                callback(block)
            blocks += 1
        except BaseException as exc:  # noqa: BLE001 - kept, re-raised after ib_decode returns
            errors.append(exc)
            return 1
        return 0

    c_callback = BlockCallback(on_block)  # referenced until ib_decode returns
    rc = lib.ib_decode(nchannels, nblocks, nsamples, c_callback, None)
    if errors:
        raise errors.pop()
    if rc == IB_ENOMEM:
        raise MemoryError(f"ib_decode could not allocate {nchannels} x {nsamples} samples")
    if rc != 0:
        raise ValueError(f"ib_decode({nchannels}, {nblocks}, {nsamples}) failed ({rc}): the "
                         "sample values would not fit in an int32")
    return blocks


class Encoder:
    """Owns one ib_encoder*. buffer(n) lends a float** ('f', channels x n) that the next
    wrote(), buffer() or close() takes back: each revokes the buffer it handed out (views of it
    keep a snapshot) before calling C. close() (or the end of a `with` block) frees it.
    """

    def __init__(self, channels):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self._ptr = None
        self._lent = None  # the last buffer() handed out, until revoked
        self._lent_samples = 0
        ptr = lib.ib_encoder_new(channels)
        if not ptr:
            raise MemoryError(f"ib_encoder_new({channels}) failed")
        self._ptr = ptr
        self.channels = channels

    def _check_open(self):
        if self._ptr is None:
            raise ValueError("the encoder is closed")

    def _revoke(self):
        # BufferError (kept, so that C does not free it) while a C call in flight pins it.
        if self._lent is not None:
            self._lent.release()  # lent memory: release() revokes the loan
            self._lent = None

    def buffer(self, n):
        """A zeroed, writable lent buffer of n samples per channel."""
        self._check_open()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._revoke()  # ib_encoder_buffer frees the previous buffer
        table = lib.ib_encoder_buffer(self._ptr, n)
        if not table:
            raise MemoryError(f"ib_encoder_buffer({n}) failed")
        self._lent = IndirectMemory2D.from_ctype_ptr(table, self.channels, n)  # no nanny: lent
        self._lent_samples = n  # (the buffer may be revoked before wrote() reads this)
        return self._lent

    def wrote(self, n):
        """Consume the first n samples per channel of the last buffer(), revoked first."""
        self._check_open()
        size = self._lent_samples if self._lent is not None else 0
        if not 0 <= n <= size:
            raise ValueError(f"wrote({n}): the last buffer() holds {size} samples per channel")
        self._revoke()  # before C reads and frees the buffer
        if lib.ib_encoder_wrote(self._ptr, n) != 0:
            raise RuntimeError(f"ib_encoder_wrote({n}) failed")

    def sum(self, channel):
        """Sum of every sample consumed on channel so far."""
        self._check_open()
        if not 0 <= channel < self.channels:
            raise IndexError(f"channel {channel} out of range for {self.channels} channels")
        return lib.ib_encoder_sum(self._ptr, channel)

    @property
    def samples(self):
        """Samples consumed per channel so far."""
        self._check_open()
        return lib.ib_encoder_samples(self._ptr)

    def close(self):
        """Revoke the outstanding buffer, then free the encoder; idempotent."""
        if self._ptr is None:
            return
        self._revoke()
        ptr, self._ptr = self._ptr, None
        lib.ib_encoder_free(ptr)

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def __del__(self):
        # Also in a reference cycle: the garbage collector runs this while the cycle (and the
        # lent buffer in it) is intact, so the buffer is revoked before the encoder is freed.
        # If a C call in flight pins it, close() raises: the encoder is leaked, not freed
        # under that call.
        if getattr(self, "_ptr", None) is not None:
            self.close()
