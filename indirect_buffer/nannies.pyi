"""Type stubs for indirect_buffer.nannies: the nannies are created from Cython only."""
from typing import Dict

from typing_extensions import disjoint_base

# Cython's table of the module's docstrings for doctest (autotestdict).
__test__: Dict[str, str]

# C types with their own memory layout: no class can derive from two of them.
@disjoint_base
class FreeRowsAndTableNanny: ...
@disjoint_base
class FreeTableNanny: ...
@disjoint_base
class DeallocatorNanny: ...
@disjoint_base
class FreeLevelsNanny: ...
@disjoint_base
class FreeTreeNanny: ...
