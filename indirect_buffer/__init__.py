"""indirect_buffer: exchange indirect 2-D memory (T**, a table of row pointers) with C.

IndirectMemory2D exports owned, borrowed or nanny-managed T** memory through the buffer
protocol (shape, strides and suboffsets); BufferCollection2D views equal-length buffers as one
T** without copying.
"""

try:
    from .buffer_impl import BufferCollection2D, IndirectMemory2D, as_indirect
except ModuleNotFoundError as exc:
    # Only our own compiled module missing gets the explanation; anything else is re-raised.
    if exc.name != f"{__name__}.buffer_impl":
        raise
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    _where = ("this looks like the uncompiled source checkout"
              if os.path.exists(os.path.join(_here, "buffer_impl.pyx"))
              else "the installed package lacks it, or it was built for another Python")
    raise ImportError(
        f"indirect_buffer's compiled extension module (buffer_impl) is missing in {_here}: "
        f"{_where}. If you are inside the source tree, run from another directory so that "
        f"the installed package is imported, or build and install it with `pip install .` "
        f"(Python {sys.version_info[0]}.{sys.version_info[1]}).",
        name=exc.name, path=_here) from exc

__version__ = "0.2.0"

__all__ = ["BufferCollection2D", "IndirectMemory2D", "__version__", "as_indirect"]
