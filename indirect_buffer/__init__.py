"""indirect_buffer: exchange indirect 2-D memory (T**, a table of row pointers) with C.

IndirectMemory2D exports owned, borrowed or nanny-managed T** memory through the buffer
protocol (shape, strides and suboffsets); BufferCollection2D views equal-length buffers as one
T** without copying.
"""

from .buffer_impl import BufferCollection2D, IndirectMemory2D, as_indirect

__version__ = "0.2.0"

__all__ = ["BufferCollection2D", "IndirectMemory2D", "__version__", "as_indirect"]
