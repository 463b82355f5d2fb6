"""Property-based checks (hypothesis) of IndirectMemory2D against _testbuffer and struct."""
import struct

import pytest
from test_memory import NATIVE_FORMATS, fill, packed, raw_rows

from indirect_buffer import IndirectMemory2D

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


def element_strategy(fmt):
    if fmt == "?":
        return st.booleans()
    if fmt == "f":
        return st.floats(width=32, allow_nan=False)
    if fmt == "d":
        return st.floats(allow_nan=False)
    bits = 8 * struct.calcsize(fmt)
    if fmt.islower():
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2 ** bits - 1)


@st.composite
def format_and_matrix(draw):
    fmt = draw(st.sampled_from(NATIVE_FORMATS))
    rows = draw(st.integers(1, 6))
    cols = draw(st.integers(1, 6))
    mat = draw(st.lists(st.lists(element_strategy(fmt), min_size=cols, max_size=cols),
                        min_size=rows, max_size=rows))
    return fmt, mat


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(format_and_matrix())
def test_random_contents_match_testbuffer(case):
    tb = pytest.importorskip("_testbuffer")
    fmt, mat = case
    rows, cols = len(mat), len(mat[0])
    mem = IndirectMemory2D.create_memory(rows, cols, fmt)
    fill(memoryview(mem), mat)
    reference = tb.ndarray([v for row in mat for v in row], shape=[rows, cols], format=fmt,
                           flags=tb.ND_PIL)
    assert memoryview(mem).tobytes() == reference.tobytes() == packed(fmt, mat)
    assert tb.ndarray(mem, getbuf=tb.PyBUF_FULL_RO).tolist() == reference.tolist()
    assert b"".join(raw_rows(mem)) == packed(fmt, mat)
    assert mem.export_count == 0


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(st.integers(0, 5), st.integers(0, 8), st.sampled_from(NATIVE_FORMATS),
                  st.sampled_from(NATIVE_FORMATS), st.data())
def test_random_reinterpret(rows, cols, fmt, new_fmt, data):
    mem = IndirectMemory2D.create_memory(rows, cols, fmt)
    row_bytes = cols * struct.calcsize(fmt)
    raw = data.draw(st.binary(min_size=rows * row_bytes, max_size=rows * row_bytes))
    mem.reinterpret_data("B")
    assert mem.shape == (rows, row_bytes)
    fill(memoryview(mem), [raw[i * row_bytes:(i + 1) * row_bytes] for i in range(rows)])
    k = struct.calcsize(new_fmt)
    if row_bytes % k:
        with pytest.raises(ValueError):
            mem.reinterpret_data(new_fmt)
        assert mem.shape == (rows, row_bytes) and mem.format == "B"
        return
    mem.reinterpret_data(new_fmt)
    assert mem.shape == (rows, row_bytes // k)
    assert mem.itemsize == k
    assert memoryview(mem).tobytes() == raw
    if new_fmt != "?":  # arbitrary bytes are not all valid bools
        n = row_bytes // k
        expected = [list(struct.unpack(f"{n}{new_fmt}", raw[i * row_bytes:(i + 1) * row_bytes]))
                    for i in range(rows)]
        got = memoryview(mem).tolist()
        # NaN payloads compare unequal: compare the packed bytes of each value
        assert [[struct.pack(new_fmt, v) for v in r] for r in got] == \
            [[struct.pack(new_fmt, v) for v in r] for r in expected]
