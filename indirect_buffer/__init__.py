"""indirect_buffer: exchange indirect memory (T**, T***: tables of pointers) with C.

IndirectMemory2D exports owned, borrowed or nanny-managed T** memory through the buffer
protocol (shape, strides and suboffsets); BufferCollection2D views equal-length buffers as one
T** without copying; IndirectMemory is the N-D case (pointer tables at chosen dimensions).
"""

try:
    from .buffer_impl import BufferCollection2D, IndirectMemory, IndirectMemory2D, as_indirect
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

__all__ = ["BufferCollection2D", "IndirectMemory", "IndirectMemory2D", "__version__",
           "as_indirect", "get_include"]


def get_include():
    """The directory holding the C API headers (indirect_buffer.h), for a compiler's -I."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
