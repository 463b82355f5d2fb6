"""ib_examples: binding the sample C library clib (ib_matrix.h, ib_stream.h) with indirect_buffer.

One module per memory flow; read them in this order:

- ``owned``: Python allocates the T** memory, C reads and writes it.
- ``borrowed``: a view of a table owned by a C handle (``Model``), which the view keeps alive.
- ``nanny_managed``: C allocates, the library's own free function runs once after the last view.
- ``numpy_in``: a list of NumPy rows passed to C as a T**, zero-copy.
- ``ctypes_only``: pure Python, clib loaded with ctypes (no Cython build of your own).
- ``image``: an H x W x 3 NumPy image passed to C as ``unsigned char**`` rows, zero-copy.
- ``tensor``: N-D memory: a ``double***`` tensor, and frames (``unsigned char**`` over H x W
  blocks) from C or from a NumPy video array, zero-copy.
- ``lent``: memory C lends for a while -- a decoder's callback block, an encoder buffer valid
  until the next call -- wrapped without a nanny and revoked when C takes it back (views kept
  past that read a snapshot); ``ctypes_only`` binds the same with ctypes.
- ``demo``: ``python -m ib_examples.demo`` walks through all of them.

Each compiled module links its own copy of clib, so each has its own allocation counter
(``live_allocations()``), and memory from one module's clib must be freed by the same module
(each flow below does so).
"""

__version__ = "0.1.0"
