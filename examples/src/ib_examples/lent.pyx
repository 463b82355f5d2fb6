# cython: language_level=3
"""Flow 8, lent: memory C lends for a limited time -- a callback's block, a buffer valid until
the next call.

    def on_block(block):              # an IndirectMemory2D, 'i', read-only, lent for this call
        kept.append(memoryview(block))
    decode(2, 3, 4, on_block)         # 3 blocks of 2 channels x 4 samples; returns 3
    kept[0][1, 3]                     # 103: block 0 as it was when its callback returned,
                                      # although the decoder has overwritten and freed it

    enc = Encoder(2)
    buf = enc.buffer(4)               # lent float** ('f'), valid until wrote()
    v = memoryview(buf); v[0, 0] = 1.5
    enc.wrote(4)                      # revokes buf first, then C consumes and frees it
    v[0, 0]                           # 1.5, read from a private snapshot; v[0, 0] = 9.0 no
    enc.sum(0)                        # longer reaches C: 1.5
    enc.close()

Memory wrapped without a memory nanny (IndirectMemory2D.from_ptr, from_address, from_ctype_ptr)
is *lent*: release() -- or leaving its `with` block -- revokes the loan. With no view out that
just forgets the pointers; views still out (memoryview, Cython typed memoryviews, NumPy arrays
over them) switch to a private snapshot of the data as it was at revocation, so nothing reads
or writes the C memory after that. The binding's one job is to revoke at the moment the C
library takes the memory back: when the callback returns (`with` around the callback), before
the call that invalidates a buffer (wrote(), the next buffer(), close()). While the memory is
pinned by a C call in flight, release() revokes all the same but raises BufferError (again at
every call until the pin ends): the binding then does not let C free the buffer.
"""
cimport cython
from libc.stdint cimport int32_t

from indirect_buffer.buffer_impl cimport IndirectMemory2D

from ib_examples cimport ib_matrix_decl as c

# The decoder's samples are int32_t, exported with the struct format 'i' (a C int): the same
# type wherever int is 32 bits, which is checked here rather than assumed.
if sizeof(int32_t) != sizeof(int):
    raise ImportError("ib_examples.lent exports int32_t as 'i', but int is not 32 bits here")


def live_allocations():
    """Live allocations of this module's copy of clib."""
    return c.ib_live_allocations()


def fail_allocations_after(long n):
    """Fault injection for tests: clib's next n allocations succeed, later ones fail (n < 0:
    never fail)."""
    c.ib_fail_allocations_after(n)


# -- a callback API: ib_decode lends each block for the duration of one call -------------------

cdef class _Decoding:
    """What ib_decode's ctx points to: the Python callback, and the exception that stopped it."""
    cdef object callback
    cdef object error
    cdef Py_ssize_t blocks


cdef int _on_block(const int32_t* const* channels, int nchannels, int nsamples,
                   void* ctx) noexcept with gil:
    # Called by C. No exception may leave it: one is kept in ctx and stops decoding.
    cdef _Decoding state = <_Decoding>ctx
    try:
        # Lent (no memory nanny) and read-only, as the const table says: leaving the `with`
        # revokes the loan before C overwrites the block.
        with IndirectMemory2D.from_const_ptr(channels, nchannels, nsamples, "i", None) as block:
            state.callback(block)
        state.blocks += 1
    except BaseException as exc:
        state.error = exc
        return 1
    return 0


def decode(int nchannels, int nblocks, int nsamples, callback):
    """Decode nblocks blocks, calling callback(block) for each; return the number of blocks.

    block is a read-only IndirectMemory2D of shape (nchannels, nsamples), format 'i', lent for
    the duration of the call: block[c][s] == k * 1000 + c * 100 + s for block k. Anything kept
    from it (a memoryview, a NumPy array, a Cython typed memoryview) keeps the values it had
    when the callback returned. An exception raised by the callback stops decoding and
    propagates.
    """
    if nchannels < 1 or nsamples < 1 or nblocks < 0:
        raise ValueError(f"need nchannels >= 1, nsamples >= 1 and nblocks >= 0, got "
                         f"({nchannels}, {nblocks}, {nsamples})")
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    cdef _Decoding state = _Decoding()
    state.callback = callback
    # With the GIL: the callback is Python code anyway (and _on_block would take the GIL).
    cdef int rc = c.ib_decode(nchannels, nblocks, nsamples, _on_block, <void*>state)
    if state.error is not None:
        error, state.error = state.error, None  # no reference cycle through the traceback
        raise error
    if rc == c.IB_ENOMEM:
        raise MemoryError(f"ib_decode could not allocate {nchannels} x {nsamples} samples")
    if rc != c.IB_OK:
        raise ValueError(f"ib_decode({nchannels}, {nblocks}, {nsamples}) failed ({rc}): the "
                         "sample values would not fit in an int32")
    return state.blocks


# -- a "valid until the next call" API: ib_encoder_buffer / ib_encoder_wrote --------------------

@cython.no_gc_clear  # __dealloc__ must still find the buffer it has to revoke
cdef class Encoder:
    """Owns one ib_encoder*. buffer(n) lends a float** that the next wrote(), buffer() or
    close() takes back: each of them revokes the buffer it handed out before calling C."""
    cdef c.ib_encoder* enc
    cdef readonly int channels
    cdef IndirectMemory2D lent_buffer  # the last buffer() handed out, until it is revoked
    cdef Py_ssize_t lent_samples       # its samples per channel (it may be revoked already)

    def __cinit__(self, int channels):
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.enc = c.ib_encoder_new(channels)
        if self.enc == NULL:
            raise MemoryError(f"ib_encoder_new({channels}) failed")
        self.channels = channels

    cdef int _check_open(self) except -1:
        if self.enc == NULL:
            raise ValueError("the encoder is closed")
        return 0

    cdef int _revoke(self) except -1:
        """Take back the buffer handed out last: views of it keep a snapshot of its data.
        Raises BufferError (and keeps it, so that C does not free it) while a C call in
        flight pins it."""
        if self.lent_buffer is not None:
            self.lent_buffer.release()  # lent memory: release() revokes the loan
            self.lent_buffer = None
        return 0

    def buffer(self, int n):
        """A zeroed, writable (channels, n) IndirectMemory2D of format 'f', lent until the
        next wrote(), buffer() or close()."""
        self._check_open()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._revoke()  # ib_encoder_buffer frees the previous buffer
        cdef float** table = c.ib_encoder_buffer(self.enc, n)
        if table == NULL:
            raise MemoryError(f"ib_encoder_buffer({n}) failed")
        mem = IndirectMemory2D.from_ptr(table, self.channels, n, "f", False)  # lent
        self.lent_buffer = mem
        self.lent_samples = n
        return mem

    def wrote(self, int n):
        """Consume the first n samples of every channel of the last buffer(); the buffer is
        revoked first, so what C consumes is what the buffer held at this call."""
        self._check_open()
        cdef Py_ssize_t size = self.lent_samples if self.lent_buffer is not None else 0
        if n < 0 or n > size:
            raise ValueError(f"wrote({n}): the last buffer() holds {size} samples per channel")
        self._revoke()  # before C reads and frees the buffer
        if c.ib_encoder_wrote(self.enc, n) != c.IB_OK:
            raise RuntimeError(f"ib_encoder_wrote({n}) failed")

    def sum(self, int channel):
        """Sum of every sample consumed on channel so far."""
        self._check_open()
        if not 0 <= channel < self.channels:
            raise IndexError(f"channel {channel} out of range for {self.channels} channels")
        return c.ib_encoder_sum(self.enc, channel)

    @property
    def samples(self):
        """Samples consumed per channel so far."""
        self._check_open()
        return c.ib_encoder_samples(self.enc)

    def close(self):
        """Revoke the outstanding buffer, then free the encoder; idempotent."""
        if self.enc == NULL:
            return
        self._revoke()
        c.ib_encoder_free(self.enc)
        self.enc = NULL

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def __dealloc__(self):
        if self.enc == NULL:
            return
        try:
            self._revoke()
        except BufferError:
            # A C call in flight still pins the buffer (it holds the buffer, not this encoder):
            # leak the encoder rather than free memory under that call.
            return
        c.ib_encoder_free(self.enc)
        self.enc = NULL
