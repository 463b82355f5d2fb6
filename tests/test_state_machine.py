"""Random sequences of lifetime operations against a NumPy model (hypothesis state machine).

The machine holds one object (created by an initialize step, replaced by a later create step)
plus the views exported from it. After every step the
export count, read-only flag, shape, format and data must match the model, and steps that are
forbidden in the current state must raise: BufferError while exported, ValueError after
release(). Objects dropped with live views ("orphans") must stay readable through those views.
"""
import _testbuffer
import gc
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from indirect_buffer import BufferCollection2D, IndirectMemory2D

# struct format -> NumPy dtype of the model.
FORMATS = {"B": np.uint8, "h": np.int16, "i": np.intc, "q": np.int64, "f": np.float32,
           "d": np.float64}
SANITIZED = bool(os.environ.get("IB_SANITIZE"))
# Arguments of a new object: a created one, a collection of NumPy rows, or a row view.
CREATE_ARGS = {"rows": st.integers(0, 5), "cols": st.integers(0, 6),
               "fmt": st.sampled_from(sorted(FORMATS)), "readonly": st.booleans(),
               "how": st.sampled_from(["create", "collection", "rows"]),
               "seed": st.integers(0, 2 ** 32 - 1)}


class View:
    """One export: its kind, the exported object, and whether it may be written."""

    def __init__(self, kind, obj, writable):
        self.kind, self.obj, self.writable = kind, obj, writable

    def tobytes(self):
        return self.obj.tobytes()

    def release(self):
        if self.kind in ("memoryview", "direct_view"):
            self.obj.release()
        self.obj = None  # a _testbuffer.ndarray releases its export when it is freed


class LifetimeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.mem = None
        self.model = None       # NumPy array: the expected contents (by bytes)
        self.readonly = False
        self.released = False
        self.views = []
        self.orphans = []       # (views, expected bytes) of dropped objects
        self.exporters = []     # the objects behind released direct views (view.obj)

    # -- helpers --------------------------------------------------------------------------------

    def expect_refused(self, exc_type, func, *args, **kwargs):
        try:
            func(*args, **kwargs)
        except exc_type as exc:
            if exc_type is ValueError and self.released:
                assert "operation on released" in str(exc), exc
            return True
        raise AssertionError(f"{func.__name__} did not raise {exc_type.__name__}")

    # -- creation -------------------------------------------------------------------------------

    @initialize(**CREATE_ARGS)
    def first_object(self, **kwargs):
        self.create(**kwargs)

    @rule(**CREATE_ARGS)
    def delete_and_create(self, **kwargs):
        """Drop the object (its views stay alive as orphans) and create a new one."""
        self.create(**kwargs)

    def create(self, rows, cols, fmt, readonly, how, seed):
        """A new object (the previous one, if any, is dropped first, as by delete)."""
        if self.mem is not None:
            self.delete()
        dtype = np.dtype(FORMATS[fmt])
        data = np.random.default_rng(seed).integers(0, 256, size=rows * cols * dtype.itemsize,
                                                    dtype=np.uint8)
        model = data.view(dtype).reshape(rows, cols)
        if how == "create":
            m = IndirectMemory2D.create_memory(rows, cols, fmt, readonly=False)
            m.copy_from(model.copy())
            if readonly:
                m.make_read_only()
        elif how == "collection" and rows > 0:
            self._rows = [np.array(model[i]) for i in range(rows)]  # kept alive by the collection
            m = BufferCollection2D(self._rows)
            if readonly:
                m.make_read_only()
        else:
            m = IndirectMemory2D.view_from_rows(model.copy(), readonly=readonly)
        self.mem, self.model, self.readonly, self.released = m, model.copy(), readonly, False
        assert m.export_count == 0

    # -- exports --------------------------------------------------------------------------------

    @rule()
    def export_memoryview(self):
        if self.released:
            self.expect_refused(ValueError, memoryview, self.mem)
            return
        v = memoryview(self.mem)
        assert v.readonly == self.readonly
        self.views.append(View("memoryview", v, not self.readonly))

    @rule(writable=st.booleans())
    def export_testbuffer(self, writable):
        flags = _testbuffer.PyBUF_FULL if writable else _testbuffer.PyBUF_FULL_RO
        if self.released:
            self.expect_refused(ValueError, _testbuffer.ndarray, self.mem, getbuf=flags)
            return
        if writable and self.readonly:
            self.expect_refused(BufferError, _testbuffer.ndarray, self.mem, getbuf=flags)
            return
        nd = _testbuffer.ndarray(self.mem, getbuf=flags)
        self.views.append(View("testbuffer", nd, False))

    @rule()
    def export_direct_view(self):
        if self.released:
            self.expect_refused(ValueError, self.mem.direct_view)
            return
        try:
            d = self.mem.direct_view()
        except BufferError:
            # Only a collection's separately allocated rows may be scattered.
            assert isinstance(self.mem, BufferCollection2D) and self.model.shape[0] > 1
            return
        assert d.shape == self.model.shape and d.readonly == self.readonly
        self.views.append(View("direct_view", d, not self.readonly))

    @rule()
    def direct_view_round_trip(self):
        """Export a direct view, check it and release it at once, keeping its exporter."""
        before = len(self.views)
        self.export_direct_view()
        if len(self.views) > before:
            view = self.views.pop()
            assert view.tobytes() == self.model.tobytes()
            self.exporters.append(view.obj.obj)
            view.release()

    @precondition(lambda self: self.views)
    @rule(data=st.data())
    def release_view(self, data):
        i = data.draw(st.integers(0, len(self.views) - 1), label="view")
        view = self.views.pop(i)
        if view.kind == "direct_view":
            self.exporters.append(view.obj.obj)
        view.release()

    @precondition(lambda self: self.exporters)
    @rule(data=st.data())
    def reexport_direct_exporter(self, data):
        """memoryview(dv.obj) again: refused, or an export with the object's current layout."""
        exporter = self.exporters[data.draw(st.integers(0, len(self.exporters) - 1))]
        if self.released:
            self.expect_refused(ValueError, memoryview, exporter)
            return
        try:
            d = memoryview(exporter)
        except BufferError:
            return
        self.views.append(View("direct_view", d, not self.readonly))
        assert (d.shape, d.format, d.nbytes, d.readonly) == (
            self.model.shape, self.model.dtype.char if d.format != self.mem.format
            else self.mem.format, self.model.nbytes, self.readonly), (d.shape, d.format, d.nbytes)

    @precondition(lambda self: self.views)
    @rule(data=st.data(), value=st.integers(0, 100))
    def write_through_view(self, data, value):
        i = data.draw(st.integers(0, len(self.views) - 1), label="view")
        view = self.views[i]
        rows, cols = self.model.shape
        if rows == 0 or cols == 0 or view.kind == "testbuffer":
            return
        r = data.draw(st.integers(0, rows - 1), label="row")
        c = data.draw(st.integers(0, cols - 1), label="col")
        pyvalue = float(value) if self.model.dtype.kind == "f" else value
        if not view.writable:
            with pytest.raises(TypeError):
                view.obj[r, c] = pyvalue
            return
        view.obj[r, c] = pyvalue
        self.model[r, c] = value

    # -- state changes --------------------------------------------------------------------------

    @rule(fmt=st.sampled_from(sorted(FORMATS)))
    def reinterpret_data(self, fmt):
        if self.released:
            self.expect_refused(ValueError, self.mem.reinterpret_data, fmt)
            return
        if self.views and fmt != self.mem.format:
            self.expect_refused(BufferError, self.mem.reinterpret_data, fmt)
            return
        dtype = np.dtype(FORMATS[fmt])
        rows, cols = self.model.shape
        row_bytes = cols * self.model.dtype.itemsize
        if row_bytes % dtype.itemsize:
            self.expect_refused(ValueError, self.mem.reinterpret_data, fmt)
            return
        self.mem.reinterpret_data(fmt)
        self.model = np.frombuffer(self.model.tobytes(), dtype=dtype).reshape(
            rows, row_bytes // dtype.itemsize).copy()

    @rule()
    def make_read_only(self):
        if self.released:
            self.expect_refused(ValueError, self.mem.make_read_only)
        elif self.views and not self.readonly:
            self.expect_refused(BufferError, self.mem.make_read_only)
        else:
            self.mem.make_read_only()
            self.readonly = True

    @rule(use_with=st.booleans())
    def release(self, use_with):
        if self.released:
            self.mem.release()  # idempotent
            return
        if self.views:
            if use_with:
                with pytest.raises(BufferError), self.mem:
                    pass
            else:
                self.expect_refused(BufferError, self.mem.release)
            return
        if use_with:
            with self.mem as m:
                assert m is self.mem
        else:
            self.mem.release()
        self.released = True

    @rule(seed=st.integers(0, 2 ** 32 - 1))
    def copy_from_numpy(self, seed):
        rows, cols = self.model.shape
        src = np.random.default_rng(seed).integers(
            0, 256, size=self.model.nbytes, dtype=np.uint8).view(self.model.dtype).reshape(
            rows, cols)
        if self.released:
            self.expect_refused(ValueError, self.mem.copy_from, src)
        elif self.readonly:
            self.expect_refused(BufferError, self.mem.copy_from, src)
        else:
            self.mem.copy_from(src)  # allowed while exported: the data changes, not the layout
            self.model = src.copy()

    @rule()
    def copy_to_numpy(self):
        out = np.empty_like(self.model)
        if self.released:
            self.expect_refused(ValueError, self.mem.copy_to, out)
        else:
            self.mem.copy_to(out)
            assert out.tobytes() == self.model.tobytes()

    @rule()
    def owned_copy(self):
        if self.released:
            self.expect_refused(ValueError, self.mem.copy)
            return
        c = self.mem.copy()
        assert c.shape == self.model.shape and c.readonly == self.readonly
        assert c.to_numpy().tobytes() == self.model.tobytes()
        c.release()

    def delete(self):
        """Drop the object; its live views keep it (and its data) alive."""
        if self.views:
            self.orphans.append((self.views, self.model.tobytes()))
        self.mem, self.model, self.views, self._rows = None, None, [], None
        self.exporters = []
        gc.collect()

    @precondition(lambda self: self.orphans)
    @rule()
    def release_orphans(self):
        views, _ = self.orphans.pop(0)
        for v in views:
            v.release()
        gc.collect()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def object_matches_model(self):
        if self.mem is None:
            return
        if self.released:
            assert self.mem.released and self.mem.export_count == 0
            try:
                _ = self.mem.shape
            except ValueError:
                pass
            else:
                raise AssertionError("shape readable after release")
            return
        m = self.mem
        assert not m.released
        assert m.export_count == len(self.views), (m.export_count, [v.kind for v in self.views])
        assert m.readonly == self.readonly
        assert m.shape == self.model.shape
        assert m.format == self.model.dtype.char or \
            np.dtype(m.format) == self.model.dtype, (m.format, self.model.dtype)
        assert m.to_numpy().tobytes() == self.model.tobytes()
        for v in self.views:
            assert v.tobytes() == self.model.tobytes(), v.kind

    @invariant()
    def orphans_still_readable(self):
        for views, expected in self.orphans:
            for v in views:
                assert v.tobytes() == expected, v.kind

    def teardown(self):
        for views, _ in self.orphans:
            for v in views:
                v.release()
        for v in self.views:
            v.release()
        if self.mem is not None:
            gc.collect()
            assert self.mem.export_count == 0
            self.mem.release()
            assert self.mem.released


LifetimeMachine.TestCase.settings = settings(
    max_examples=30 if SANITIZED else 80, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], database=None)
TestLifetimeMachine = LifetimeMachine.TestCase
