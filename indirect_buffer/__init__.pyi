from .buffer_impl import BufferCollection2D as BufferCollection2D
from .buffer_impl import IndirectMemory2D as IndirectMemory2D
from .buffer_impl import as_indirect as as_indirect

__version__: str
__all__ = ["BufferCollection2D", "IndirectMemory2D", "__version__", "as_indirect"]
