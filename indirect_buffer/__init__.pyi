from .buffer_impl import BufferCollection2D as BufferCollection2D
from .buffer_impl import IndirectMemory as IndirectMemory
from .buffer_impl import IndirectMemory2D as IndirectMemory2D
from .buffer_impl import as_indirect as as_indirect

__version__: str
__all__ = ["BufferCollection2D", "IndirectMemory", "IndirectMemory2D", "__version__",
           "as_indirect", "get_include"]

def get_include() -> str: ...
