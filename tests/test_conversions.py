"""Value-converting copies: copy_from/copy_to(casting=...) and as_indirect(format=...).

The copy engine converts natively between bool, every integer width (signed and unsigned),
half, float and double, in either byte order (convert.pxi). NumPy is the oracle everywhere:

- the casting rule: np.can_cast(source dtype, destination dtype, casting), for every pair of
  types, byte orders and struct spellings of a type;
- the values: dst[...] = src.astype(dst.dtype) bit for bit, except float -> integer where the
  value is NaN or out of the destination's range, which is documented to saturate (NaN -> 0,
  below the minimum -> minimum, above the maximum -> maximum) where NumPy is
  platform-dependent: there the oracle is computed exactly with Python integers;
- half precision: every one of the 65536 bit patterns, and float32/float64 values rounded to
  binary16 (ties, the overflow boundary, the subnormal range), as numpy's astype rounds them;
- layouts: owned T** and N-D memory, row and column views of NumPy arrays, ctypes tables
  with scattered rows, pointer structures laid out by hand (_ndlayouts.Structure), NumPy
  arrays with negative and odd (unaligned) strides, _testbuffer's PIL-style ndarrays and
  memoryviews of all of these, a hand-made exporter indirect in its last dimension, and
  source and destination sharing memory (the oracle converts a snapshot of the source).
"""
import _testbuffer as tb
import ctypes
import itertools
import math
import re
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest

# NumPy's own floating-point warnings while the oracle computes (overflow or NaN in a cast):
# expected, and never raised by the library.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

import _hostile
from _ndlayouts import Structure, patterns
from indirect_buffer import IndirectMemory, IndirectMemory2D, as_indirect

LITTLE = sys.byteorder == "little"
OTHER = ">" if LITTLE else "<"      # the byte order that is not this machine's
CODES = "?bBhHiIqQefd"              # one native struct code per convertible type
CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
FLOATS = "efd"
INTS = "bBhHiIqQ"


def seed_of(*parts):
    """A deterministic seed for a test case (hash() of a str is randomised per process)."""
    return zlib.crc32(repr(parts).encode())


def np_dtype(fmt):
    """The NumPy dtype a struct format of one convertible element means (struct's sizes:
    '=l' is 4 bytes, 'l' is C long; '!' is big-endian)."""
    order = fmt[0] if fmt[0] in "@=<>!" else "@"
    code = fmt[-1]
    if code == "?":
        return np.dtype("?")
    kind = "f" if code in FLOATS else ("u" if code.isupper() else "i")
    size = struct.calcsize(fmt)
    bo = {"@": "=", "=": "=", "<": "<", ">": ">", "!": ">"}[order]
    return np.dtype(f"{bo}{kind}{size}")


def native(dt):
    return np.dtype(dt).newbyteorder("=")


def swapped(dt):
    dt = np.dtype(dt)
    return dt.itemsize > 1 and not dt.isnative


def type_text(dt):
    """How a convertible type is named in the messages: 'int32', 'float64 (other byte
    order)'."""
    return native(dt).name + (" (other byte order)" if swapped(dt) else "")


def fmt_of(code, swap):
    return (OTHER + code) if swap else code


def can_cast(sdt, ddt, casting):
    return bool(np.can_cast(sdt, ddt, "same_kind" if casting is None else casting))


def least_casting(sdt, ddt):
    return next(c for c in CASTINGS if np.can_cast(sdt, ddt, c))


def oracle(values, ddt):
    """values (any dtype) converted into native ddt as the library documents: NumPy's astype
    (casting='unsafe'), except float -> integer NaN and out-of-range values, which saturate
    (computed exactly: trunc(v) compared with the integer limits)."""
    values = np.asarray(values)
    ddt = native(ddt)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.array(values.astype(ddt, casting="unsafe"), copy=True)
    if values.dtype.kind == "f" and ddt.kind in "iu":
        info = np.iinfo(ddt)
        v = values.astype(np.float64)  # exact for half, float and double
        with np.errstate(all="ignore"):
            t = np.trunc(v)
        # min is 0 or -2**k and max + 1 is 2**k: both exact doubles, so these are exact.
        high = t >= float(int(info.max) + 1)
        low = t < float(int(info.min))
        out[high] = info.max
        out[low] = info.min
        out[np.isnan(v)] = 0
    return out


def assert_same(got, expected, what):
    """got and expected (same shape) hold the same values: floats bit for bit (every NaN
    matches every NaN), anything else by value. Names the first mismatches."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    got = got.astype(native(got.dtype))
    expected = expected.astype(native(expected.dtype))
    assert got.dtype == expected.dtype, (what, got.dtype, expected.dtype)
    if got.dtype.kind == "f":
        bits = f"u{got.dtype.itemsize}"
        gn, en = np.isnan(got), np.isnan(expected)
        ok = (gn & en) | (~gn & ~en & (got.view(bits) == expected.view(bits)))
    else:
        ok = got == expected
    if not ok.all():
        idx = np.argwhere(~ok)[:8]
        rows = [f"  at {tuple(i)}: got {got[tuple(i)]!r}, expected {expected[tuple(i)]!r}"
                for i in idx]
        raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.size} elements differ\n"
                             + "\n".join(rows))


def sample(dt, n, rng, moderate=False):
    """n values of dtype dt (native): a third random bit patterns (NaN, inf and huge values
    among them for floats), the rest small integers and fractions."""
    dt = native(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        out = rng.integers(max(int(info.min), -300), min(int(info.max), 300), n,
                           endpoint=True).astype(dt)
        if not moderate:
            wide = rng.integers(int(info.min), int(info.max), n, endpoint=True, dtype=dt)
            mask = rng.random(n) < 0.35
            out[mask] = wide[mask]
        return out
    out = (rng.integers(-4000, 4000, n) / 8.0).astype(dt)
    if not moderate:
        bits = rng.integers(0, 1 << (8 * dt.itemsize), n, dtype=f"u{dt.itemsize}",
                            endpoint=False).view(dt)
        mask = rng.random(n) < 0.35
        out[mask] = bits[mask]
        if n >= 4:
            out[rng.integers(0, n, 4)] = np.array([np.nan, np.inf, -np.inf, -0.0]).astype(dt)
    return out


def _spellings():
    """Every struct spelling of each convertible type: dtype.str -> [format, ...]."""
    out = {}
    for code in "?bBhHiIlLqQnNefd":
        for prefix in ("", "@", "=", "<", ">", "!"):
            if code in "nN" and prefix not in ("", "@"):
                continue
            fmt = prefix + code
            out.setdefault(np_dtype(fmt).str, []).append(fmt)
    return out


SPELLINGS = _spellings()   # 21 types: 9 multi-byte ones in two byte orders, 3 single bytes
assert len(SPELLINGS) == 21, sorted(SPELLINGS)


def try_copy(src, dst, *, direction="from", **kwargs):
    """dst.copy_from(src) or src.copy_to(dst); None, or the exception raised."""
    try:
        if direction == "from":
            dst.copy_from(src, **kwargs)
        else:
            src.copy_to(dst, **kwargs)
    except (BufferError, ValueError, TypeError) as exc:
        return exc
    return None


# ---------------------------------------------------------------------------------------------
# 1. the casting rule
# ---------------------------------------------------------------------------------------------

def _cell_cache():
    cache = {}

    def cell(fmt):
        if fmt not in cache:
            cache[fmt] = IndirectMemory2D.create_memory(1, 1, fmt)
        return cache[fmt]
    return cell


def test_casting_rule_agrees_with_numpy_for_every_pair():
    """Accepted iff np.can_cast, for every pair of the 21 types (12 types, 9 of them in two
    byte orders) and every casting (None: 'same_kind'), each type in turn spelt every way
    struct spells it ('l'/'q'/'n', '@', '=', '<', '>', '!')."""
    cell = _cell_cache()
    keys = sorted(SPELLINGS)
    disagreements = []
    count = 0
    for i, skey in enumerate(keys):
        for j, dkey in enumerate(keys):
            sdt, ddt = np.dtype(skey), np.dtype(dkey)
            for k, casting in enumerate(CASTINGS + (None,)):
                ss, ds = SPELLINGS[skey], SPELLINGS[dkey]
                sfmt = ss[(i + j + k) % len(ss)]
                dfmt = ds[(i * 7 + j + k * 3) % len(ds)]
                exc = try_copy(cell(sfmt), cell(dfmt), casting=casting,
                               direction="from" if (i + j + k) % 2 else "to")
                if exc is not None and not isinstance(exc, BufferError):
                    disagreements.append((sfmt, dfmt, casting, f"unexpected {exc!r}"))
                    continue
                ours, numpy_says = exc is None, can_cast(sdt, ddt, casting)
                count += 1
                if ours != numpy_says:
                    disagreements.append((sfmt, dfmt, casting,
                                          f"ours {'accepts' if ours else 'refuses'}, "
                                          f"np.can_cast({sdt.str}, {ddt.str}) is {numpy_says}"))
    assert count == 21 * 21 * 6
    assert not disagreements, "\n".join(map(str, disagreements))


def test_every_spelling_of_a_type_is_that_type():
    """Under casting='no' every spelling of a type copies into every other spelling of the
    same type (and byte order), and into no spelling of any other type."""
    cell = _cell_cache()
    wrong = []
    for skey, sfmts in SPELLINGS.items():
        for dkey, dfmts in SPELLINGS.items():
            for sfmt in sfmts:
                for dfmt in dfmts[:2]:
                    ok = try_copy(cell(sfmt), cell(dfmt), casting="no") is None
                    if ok != (skey == dkey):
                        wrong.append((sfmt, dfmt, ok))
    assert not wrong, wrong


def test_casting_default_is_same_kind_and_positional():
    src = np.full((2, 3), 2.75)
    dst = IndirectMemory2D.create_memory(2, 3, "f")
    dst.copy_from(src)                      # float64 -> float32: same_kind
    assert (dst.to_numpy() == 2.75).all()
    ints = IndirectMemory2D.create_memory(2, 3, "i")
    with pytest.raises(BufferError, match="casting='same_kind'; casting='unsafe' allows it"):
        ints.copy_from(src)
    ints.copy_from(src, False, "unsafe")    # (obj, cast, casting)
    assert (ints.to_numpy() == 2).all()
    with pytest.raises(BufferError, match="casting='same_kind'"):
        ints.copy_to(np.zeros((2, 3), np.uint8))
    ints.copy_to(np.zeros((2, 3), np.int64))


# ---------------------------------------------------------------------------------------------
# 2. values: every pair, with casting='unsafe'
# ---------------------------------------------------------------------------------------------

def representative(dt, rng):
    """0, +-1, the limits of dt, fractions, large values, NaN/inf/-0.0, half subnormals and
    rounding boundaries, and random bit patterns; for bool also the bytes 2 and 255."""
    dt = native(dt)
    if dt.kind == "b":
        return np.frombuffer(bytes([0, 1, 2, 255, 1, 0, 128]), dtype="?").copy()
    if dt == np.float16:
        return np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every half
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = int(info.min), int(info.max)
        cand = {0, 1, 2, -1, -2, 100, 127, 128, 255, 256, 2047, 2048, 2049, 2050, 2051,
                4097, 32767, 32768, 65503, 65504, 65505, 65519, 65520, 65521, 65535, 65536,
                2 ** 24 - 1, 2 ** 24, 2 ** 24 + 1, 2 ** 24 + 3, 2 ** 31 - 1, 2 ** 31,
                2 ** 32 - 1, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 64 - 1, 2 ** 63 - 512,
                -127, -128, -129, -32768, -32769, -65504, -65520, -2 ** 31, -2 ** 31 - 1,
                -2 ** 63, -(2 ** 24 + 1), lo, hi, lo + 1, hi - 1, hi // 2, lo // 2}
        vals = sorted(v for v in cand if lo <= v <= hi)
        wide = rng.integers(lo, hi, 2000, endpoint=True, dtype=dt)
        return np.concatenate([np.array(vals, dtype=dt), wide])
    fi = np.finfo(dt)
    vals = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.25, 1.5, -1.5, 2.5, -2.5, 0.9999, -0.9999,
            1 / 3, -2 / 3, 127.5, 127.99, 128.0, -128.0, -128.5, -128.99, -129.0, 255.5,
            255.99, 256.0, 32767.5, 32768.0, -32768.9, -32769.0, 65503.0, 65504.0, 65519.0,
            65519.99, 65520.0, 65535.9, 65536.0, 2.0 ** 24 + 1, 2.0 ** 31 - 1, 2.0 ** 31,
            -2.0 ** 31, -2.0 ** 31 - 1, 2.0 ** 32 - 1, 2.0 ** 32, 2.0 ** 53, 2.0 ** 63,
            -2.0 ** 63, 2.0 ** 64, -2.0 ** 64, 1e10, -1e10, 1e30, -1e30, 1e300, -1e300,
            float(fi.max), -float(fi.max), float(fi.tiny), float(fi.smallest_subnormal),
            2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -26, 1e-8, 6e-8, 1e-40,
            np.nan, -np.nan, np.inf, -np.inf]
    with np.errstate(all="ignore"):
        base = np.array(vals, dtype=np.float64).astype(dt)
    bits = rng.integers(0, 1 << (8 * dt.itemsize), 3000, dtype=f"u{dt.itemsize}",
                        endpoint=False).view(dt)
    scaled = (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 70, 3000)).astype(dt)
    return np.concatenate([base, bits, scaled])


@pytest.mark.parametrize("scode", CODES)
def test_values_of_every_pair_agree_with_numpy(scode):
    """Every destination type, both byte orders on each side, copy_from and copy_to: the
    values are numpy's astype, float -> integer NaN/out of range saturated."""
    rng = np.random.default_rng(seed_of("values", scode))
    values = representative(np_dtype(scode), rng)
    n = values.size
    for dcode in CODES:
        expected = oracle(values, np_dtype(dcode))
        for ssw, dsw in itertools.product((False, True), repeat=2):
            sfmt, dfmt = fmt_of(scode, ssw), fmt_of(dcode, dsw)
            what = f"{sfmt!r} -> {dfmt!r}"
            src = values.astype(np_dtype(sfmt)).reshape(1, n)
            # copy_from: a NumPy source into owned memory
            dst = IndirectMemory2D.create_memory(1, n, dfmt)
            dst.copy_from(src, casting="unsafe")
            assert_same(dst.to_numpy()[0], expected, what + " (copy_from)")
            # copy_to: owned memory into a NumPy destination, 3 rows
            rows = np.vstack([src, src[:, ::-1], src]).astype(np_dtype(sfmt))
            mem = IndirectMemory2D.create_memory(3, n, sfmt)
            mem.copy_from(rows, cast=True)
            out = np.zeros((3, n), np_dtype(dfmt))
            mem.copy_to(out, casting="unsafe")
            assert_same(out, np.vstack([expected, expected[::-1], expected]),
                        what + " (copy_to)")


def _saturated(v, ddt):
    """The documented result of float value v (a Python float) converted to integer ddt."""
    info = np.iinfo(ddt)
    if math.isnan(v):
        return 0
    if math.isinf(v):
        return int(info.max) if v > 0 else int(info.min)
    return min(max(math.trunc(v), int(info.min)), int(info.max))


@pytest.mark.parametrize("scode", FLOATS)
def test_float_to_integer_saturates_exactly(scode):
    """NaN -> 0, below the minimum -> minimum (negative -> 0 for unsigned), above the
    maximum -> maximum, in range -> truncated: checked value by value against Python
    integers, for every integer type and byte order."""
    sdt = np_dtype(scode)
    fmax = float(np.finfo(sdt).max)
    cand = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 0.99, -0.99, -1.0, -1.5,
            -2.0, 1.0, 126.9, 127.0, 127.5, 128.0, 128.5, 255.0, 255.99, 256.0, 300.0,
            -127.9, -128.0, -128.99, -129.0, -300.0, 32767.0, 32767.9, 32768.0, 65535.0,
            65535.9, 65536.0, -32768.0, -32768.9, -32769.0, -65504.0, 65504.0, 2.0 ** 31 - 1,
            2.0 ** 31, -2.0 ** 31, -2.0 ** 31 - 1, 2.0 ** 32 - 1, 2.0 ** 32, 2.0 ** 63,
            -2.0 ** 63, 2.0 ** 64, -2.0 ** 64, 1e19, 2.0 ** 65, -1e30, 1e30, fmax, -fmax]
    with np.errstate(all="ignore"):
        vals = np.array(cand, dtype=np.float64).astype(sdt)
    # the values next to each integer limit, in this float type
    edges = []
    for icode in INTS:
        info = np.iinfo(np_dtype(icode))
        for lim in (int(info.min), int(info.max), int(info.max) + 1, int(info.min) - 1):
            with np.errstate(all="ignore"):
                x = np.array([float(lim)], dtype=np.float64).astype(sdt)[0]
            if np.isfinite(x):
                edges += [x, np.nextafter(x, sdt.type(np.inf)), np.nextafter(x, sdt.type(-np.inf))]
    vals = np.concatenate([vals, np.array(edges, dtype=sdt)])
    pyvals = [float(v) for v in vals]
    bad = []
    for icode in INTS:
        ddt = np_dtype(icode)
        expected = np.array([_saturated(v, ddt) for v in pyvals], dtype=ddt)
        for ssw, dsw in itertools.product((False, True), repeat=2):
            src = vals.astype(np_dtype(fmt_of(scode, ssw))).reshape(1, -1)
            dst = IndirectMemory2D.create_memory(1, vals.size, fmt_of(icode, dsw))
            dst.copy_from(src, casting="unsafe")
            got = dst.to_numpy()[0].astype(ddt)
            for v, g, e in zip(pyvals, got.tolist(), expected.tolist()):
                if g != e:
                    bad.append((fmt_of(scode, ssw), fmt_of(icode, dsw), v, g, e))
    assert not bad, "\n".join(map(str, bad[:30]))


def test_saturation_examples():
    """A few spelt-out cases of the documented saturation."""
    def conv(value, sfmt, dfmt):
        src = np.array([[value]], dtype=np_dtype(sfmt))
        dst = IndirectMemory2D.create_memory(1, 1, dfmt)
        dst.copy_from(src, casting="unsafe")
        return int(dst.to_numpy()[0, 0])
    assert conv(np.nan, "d", "i") == 0
    assert conv(np.nan, "e", "Q") == 0
    assert conv(1e10, "d", "i") == 2 ** 31 - 1
    assert conv(-1e10, "d", "i") == -2 ** 31
    assert conv(-1.0, "d", "B") == 0
    assert conv(-0.99, "f", "B") == 0
    assert conv(255.9, "d", "B") == 255
    assert conv(256.0, "d", "B") == 255
    assert conv(2.0 ** 31, "f", "i") == 2 ** 31 - 1
    assert conv(2.0 ** 63, "d", "q") == 2 ** 63 - 1
    assert conv(-2.0 ** 63, "d", "q") == -2 ** 63
    assert conv(2.0 ** 64, "d", "Q") == 2 ** 64 - 1
    assert conv(-np.inf, "d", "Q") == 0
    assert conv(np.inf, "e", "h") == 2 ** 15 - 1
    assert conv(65504.0, "e", "h") == 2 ** 15 - 1
    assert conv(-65504.0, "e", "b") == -128
    assert conv(-1e30, OTHER + "f", OTHER + "I") == 0
    assert conv(3e9, OTHER + "d", "i") == 2 ** 31 - 1


def test_equiv_copies_are_exact_byte_swaps():
    """A change of byte order only (casting='equiv') is NumPy's byte swap: every bit kept,
    NaN payloads (quiet and signalling) included."""
    rng = np.random.default_rng(seed_of("equiv"))
    for code in "hHiIqQefd":
        dt = np_dtype(code)
        raw = rng.integers(0, 256, 4096 * dt.itemsize, dtype=np.uint8)
        vals = raw.view(dt).copy()
        if dt.kind == "f":  # signalling and quiet NaNs with payloads, both signs
            nans = {2: [0x7c01, 0x7d55, 0xfe01, 0x7fff], 4: [0x7f800001, 0x7fc00001,
                                                              0xffa5a5a5, 0x7fbfffff],
                    8: [0x7ff0000000000001, 0x7ff8000000000123, 0xfff5555555555555]}
            nan_vals = np.array(nans[dt.itemsize], dtype=f"u{dt.itemsize}").view(dt)
            vals[:nan_vals.size] = nan_vals
        for sfmt, dfmt in ((code, OTHER + code), (OTHER + code, code)):
            src = vals.astype(np_dtype(sfmt)).reshape(8, -1)
            dst = IndirectMemory2D.create_memory(8, src.shape[1], dfmt)
            dst.copy_from(src, casting="equiv")
            assert dst.to_numpy().tobytes() == src.astype(np_dtype(dfmt)).tobytes(), (sfmt, dfmt)


# ---------------------------------------------------------------------------------------------
# 3. half precision
# ---------------------------------------------------------------------------------------------

ALL_HALVES = np.arange(1 << 16, dtype=np.uint16).view(np.float16)


def convert(values, dfmt, sfmt=None):
    """values (native) stored as sfmt (default: their own type), converted by the library
    into dfmt (casting='unsafe'); returns the result as dfmt's native dtype."""
    values = np.asarray(values)
    src = values.astype(np_dtype(sfmt)) if sfmt else values
    src = src.reshape(1, -1)
    dst = IndirectMemory2D.create_memory(1, src.shape[1], dfmt)
    dst.copy_from(src, casting="unsafe")
    return dst.to_numpy()[0].astype(native(np_dtype(dfmt)))


@pytest.mark.parametrize("wide", ["f", "d"])
def test_every_half_to_float_and_back(wide):
    nan = np.isnan(ALL_HALVES)
    for hsw, wsw in itertools.product((False, True), repeat=2):
        hfmt, wfmt = fmt_of("e", hsw), fmt_of(wide, wsw)
        up = convert(ALL_HALVES, wfmt, sfmt=hfmt)
        assert_same(up, ALL_HALVES.astype(np_dtype(wide)), f"{hfmt} -> {wfmt}")
        assert (np.isnan(up) == nan).all()
        back = convert(up, hfmt, sfmt=wfmt)
        assert (back.view(np.uint16)[~nan] == ALL_HALVES.view(np.uint16)[~nan]).all(), \
            (hfmt, wfmt)
        assert np.isnan(back[nan]).all()
        # signs of NaNs survive too
        assert (np.signbit(back) == np.signbit(ALL_HALVES)).all()


def _half_boundaries():
    """Exact midpoints between consecutive finite halves (ties), the doubles next to them,
    and the overflow boundary 65504 / 65520."""
    h = ALL_HALVES.astype(np.float64)
    nxt = (np.arange(1 << 16, dtype=np.uint32) + 1).astype(np.uint16).view(
        np.float16).astype(np.float64)
    ok = np.isfinite(h) & np.isfinite(nxt) & (np.sign(h) == np.sign(nxt)) & (h != 0)
    mids = ((h + nxt) / 2)[ok]
    top = np.array([65504.0, 65519.0, 65519.99, 65520.0, 65520.01, 65535.0, 65536.0, 65504.5,
                    2.0 ** 15 + 16, 2.0 ** 15 + 48, 2.0 ** -14, 2.0 ** -24, 2.0 ** -25,
                    2.0 ** -26, 3 * 2.0 ** -25, 3 * 2.0 ** -26])
    top = np.concatenate([top, -top])
    return mids, top


@pytest.mark.parametrize("wide", ["f", "d"])
def test_rounding_to_half_matches_numpy(wide):
    """float32/float64 -> binary16, round to nearest even, once: ties, the values next to
    ties (a double just above a tie must round up, also when it rounds to the tie as
    float32), the overflow boundary, the subnormal range 2^-25..2^-14, random values and
    random bit patterns; both byte orders. Compared bit for bit with numpy (NaN: isnan)."""
    rng = np.random.default_rng(seed_of("half", wide))
    dt = np.dtype(wide)
    mids, top = _half_boundaries()
    near = np.concatenate([np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf)])
    if wide == "f":
        near = np.concatenate([np.nextafter(mids.astype(dt), dt.type(np.inf)),
                               np.nextafter(mids.astype(dt), dt.type(-np.inf))])
    sub = rng.uniform(2.0 ** -25, 2.0 ** -14, 100_000) * rng.choice([-1, 1], 100_000)
    edge = np.concatenate([np.linspace(65500, 65540, 20001), np.linspace(2.0 ** -26,
                                                                         2.0 ** -23, 20001)])
    scaled = rng.standard_normal(300_000) * 2.0 ** rng.integers(-30, 18, 300_000)
    bits = rng.integers(0, 1 << (8 * dt.itemsize), 300_000, dtype=f"u{dt.itemsize}",
                        endpoint=False).view(dt)
    # NaNs whose payload lies only in the bits binary16 drops must stay NaN (not become inf)
    nan_bits = {4: [0x7f800001, 0xff800001, 0x7f801fff, 0x7fc00000, 0x7fa00000],
                8: [0x7ff0000000000001, 0xfff0000000000001, 0x7ff000003fffffff,
                    0x7ff8000000000000, 0x7ff4000000000000]}[dt.itemsize]
    nans = np.array(nan_bits, dtype=f"u{dt.itemsize}").view(dt)
    values = np.concatenate([mids.astype(dt), near.astype(dt), top.astype(dt), sub.astype(dt),
                             edge.astype(dt), -edge.astype(dt), scaled.astype(dt), bits, nans])
    expected = values.astype(np.float16)
    for ssw, dsw in ((False, False), (True, True), (True, False)):
        got = convert(values, fmt_of("e", dsw), sfmt=fmt_of(wide, ssw))
        assert_same(got, expected, f"{fmt_of(wide, ssw)} -> {fmt_of('e', dsw)}")


def test_double_to_half_rounds_once():
    """A double just above a tie rounds up; through float32 first it would round to even."""
    tie = 1.0 + 2.0 ** -11            # halfway between 1.0 and the next half
    above = tie + 2.0 ** -40          # float32(above) == tie
    assert np.float32(above) == np.float32(tie)
    got = convert(np.array([tie, above, -above, 2049.0 + 2.0 ** -30]), "e")
    assert got.view(np.uint16).tolist() == np.array(
        [tie, above, -above, 2049.0 + 2.0 ** -30]).astype(np.float16).view(np.uint16).tolist()
    assert got.view(np.uint16).tolist() == [0x3c00, 0x3c01, 0xbc01, 0x6801]


def test_integers_to_half_match_numpy():
    rng = np.random.default_rng(seed_of("int-half"))
    cases = {"b": np.arange(-128, 128), "B": np.arange(256), "h": np.arange(-2 ** 15, 2 ** 15),
             "H": np.arange(2 ** 16)}
    around = np.concatenate([np.arange(65480, 65560), np.arange(2047, 2060),
                             np.arange(2 ** 24 - 4, 2 ** 24 + 4)])
    for code in "iIqQ":
        info = np.iinfo(np_dtype(code))
        r = rng.integers(int(info.min), int(info.max), 20000, endpoint=True,
                         dtype=np_dtype(code))
        small = rng.integers(max(int(info.min), -70000), 70000, 20000)
        extra = around if code in "IQ" else np.concatenate([around, -around])
        cases[code] = np.concatenate([r, small.astype(np_dtype(code)),
                                      extra.astype(np_dtype(code))])
    for code, vals in cases.items():
        vals = np.asarray(vals).astype(np_dtype(code))
        for ssw, dsw in itertools.product((False, True), repeat=2):
            got = convert(vals, fmt_of("e", dsw), sfmt=fmt_of(code, ssw))
            assert_same(got, vals.astype(np.float16), f"{fmt_of(code, ssw)} -> half")


@pytest.mark.parametrize("pair", ["d->f", "f->d", "q->f", "Q->f", "q->d", "Q->d", "i->f",
                                  "I->f"])
def test_random_bit_patterns_between_wide_types(pair):
    """Rounding of double -> float and of 32/64-bit integers -> float/double, as numpy."""
    scode, dcode = pair.split("->")
    sdt = np_dtype(scode)
    rng = np.random.default_rng(seed_of("bits", pair))
    vals = rng.integers(0, 1 << (8 * sdt.itemsize), 200_000, dtype=f"u{sdt.itemsize}",
                        endpoint=False).view(sdt)
    if sdt.kind == "f":
        vals = np.concatenate([vals, (rng.standard_normal(100_000)
                                      * 2.0 ** rng.integers(-140, 140, 100_000)).astype(sdt)])
    for ssw, dsw in ((False, False), (True, True)):
        got = convert(vals, fmt_of(dcode, dsw), sfmt=fmt_of(scode, ssw))
        assert_same(got, oracle(vals, np_dtype(dcode)), f"{pair} swapped={ssw}")


# ---------------------------------------------------------------------------------------------
# 4. layouts
# ---------------------------------------------------------------------------------------------

def _strided_empty(shape, dt, rng):
    """An array of shape inside a bigger one: random steps, some negative."""
    if len(shape) >= 2 and rng.random() < 0.3:  # a transposed (Fortran-ordered) array
        return np.zeros(shape[::-1], dt).T
    steps = [int(rng.choice([1, 2, 3, -1, -2])) for _ in shape]
    big = np.zeros([abs(s) * n + 1 for s, n in zip(steps, shape)], dt)
    view = big[tuple(slice(None, None, s) for s in steps)]
    return view[tuple(slice(0, n) for n in shape)]


def _odd_empty(shape, dt, rng):
    """An unaligned array of shape: odd strides, odd offset in a bytearray."""
    item = dt.itemsize
    strides = []
    step = item + (1 if item % 2 == 0 else 2)
    for n in reversed(shape):
        strides.append(step)
        step = step * max(n, 1) + 2 * int(rng.integers(0, 3)) + 1
    strides = strides[::-1]
    if rng.random() < 0.5:  # walk the last dimension backwards
        strides[-1] = -strides[-1]
        offset = 1 + abs(strides[-1]) * (shape[-1] - 1)
    else:
        offset = 1
    size = offset + sum(abs(s) * (n - 1) for s, n in zip(strides, shape)) + item + 8
    return np.ndarray(shape, dt, buffer=bytearray(size), offset=offset, strides=strides)


def _pil(data, fmt, rng):
    """A _testbuffer ND_PIL ndarray (indirect in dimension 0) holding data, sliced with
    random steps (some negative) out of a bigger one."""
    shape = data.shape
    steps = [int(rng.choice([1, 2, -1, -2])) for _ in shape]
    base_shape = [abs(s) * n for s, n in zip(steps, shape)]
    key = tuple(slice(None, None, s) for s in steps)
    base = np.zeros(base_shape, data.dtype)
    base[key] = data
    nd = tb.ndarray(base.ravel().tolist(), shape=base_shape, format=fmt,
                    flags=tb.ND_PIL | tb.ND_WRITABLE)
    view = nd[key]
    assert view.suboffsets[0] >= 0 and tuple(view.shape) == shape
    return view


class Scattered:
    """A T** laid out by ctypes: each row its own buffer, allocated in shuffled order with
    padding, so rows never lie back to back."""

    def __init__(self, data, fmt, rng):
        r, c = data.shape
        self.dtype = data.dtype
        self.shape = data.shape
        self.row_bytes = c * data.dtype.itemsize
        order = list(range(r))
        rng.shuffle(order)
        bufs = {}
        for i in order:
            bufs[i] = ctypes.create_string_buffer(data[i].tobytes(),
                                                  self.row_bytes + 8 * int(rng.integers(1, 4)))
        self.bufs = [bufs[i] for i in range(r)]
        self.table = (ctypes.c_void_p * r)(*[ctypes.addressof(b) for b in self.bufs])
        self.mem = IndirectMemory2D.from_address(ctypes.addressof(self.table), r, c, fmt,
                                                 memory_nanny=self)

    def read(self):
        return np.stack([np.frombuffer(ctypes.string_at(ctypes.addressof(b), self.row_bytes),
                                       self.dtype) for b in self.bufs]).reshape(self.shape)


# IndirectMemory kinds (the object whose copy_from/copy_to runs); "nd_*" are N-D capable.
IM_KINDS_2D = ["memory", "rows", "rows_stepped", "columns", "address"]
IM_KINDS_ND = ["nd_memory", "nd_structure", "nd_view"]
IM_KINDS = IM_KINDS_2D + IM_KINDS_ND
# Other buffers: NumPy arrays, _testbuffer PIL-style ndarrays, memoryviews.
FOREIGN_KINDS = ["numpy", "numpy_strided", "numpy_odd", "pil", "memoryview_pil",
                 "memoryview_im"]


def build(kind, data, fmt, rng, indirect):
    """An object of this kind holding data (stored as fmt, which is data's type), and a
    function reading its elements back as an array."""
    dt = data.dtype
    shape = data.shape
    if kind == "numpy":
        a = data.copy()
        return a, lambda: a
    if kind == "numpy_strided":
        a = _strided_empty(shape, dt, rng)
        a[...] = data
        return a, lambda: a
    if kind == "numpy_odd":
        a = _odd_empty(shape, dt, rng)
        a[...] = data
        return a, lambda: a
    if kind == "pil":
        p = _pil(data, fmt, rng)
        return p, lambda: np.array(p.tolist(), dtype=dt).reshape(shape)
    if kind == "memoryview_pil":
        p = _pil(data, fmt, rng)
        return memoryview(p), lambda: np.array(p.tolist(), dtype=dt).reshape(shape)
    if kind == "memoryview_im":  # re-exported: never trusted, rows found by a walk
        inner_kind = (["address", "memory"] if len(shape) == 2 else
                      ["nd_structure", "nd_memory"])[int(rng.integers(0, 2))]
        inner, read = build(inner_kind, data, fmt, rng, indirect)
        mv = memoryview(inner)
        assert mv.suboffsets
        return mv, read
    if kind == "memory":
        m = IndirectMemory2D.create_memory(shape[0], shape[1], fmt)
        m.copy_from(data, cast=True)
        return m, lambda: m.to_numpy().astype(dt)
    if kind == "rows":
        a = data.copy()
        m = IndirectMemory2D.view_from_rows(a)
        return m, lambda: a
    if kind == "rows_stepped":
        step = int(rng.choice([-1, 2, -2]))
        base = np.zeros((abs(step) * shape[0], shape[1]), dt)
        a = base[::step]
        a[...] = data
        m = IndirectMemory2D.view_from_rows(a)
        return m, lambda: a
    if kind == "columns":
        f = np.asfortranarray(data.T)
        m = IndirectMemory2D.view_from_columns(f)
        assert m.shape == shape
        return m, lambda: f.T
    if kind == "address":
        s = Scattered(data, fmt, rng)
        return s.mem, s.read
    if kind == "nd_memory":
        m = IndirectMemory.create_memory(shape, fmt, indirect=indirect)
        m.copy_from(data, cast=True)
        return m, lambda: m.to_numpy().astype(dt)
    if kind == "nd_structure":
        s = Structure(data, indirect)
        return s.wrap(fmt), s.read
    if kind == "nd_view":
        step = int(rng.choice([1, 2, -1]))
        base = np.zeros((abs(step) * shape[0],) + shape[1:], dt)
        a = base[::step]
        a[...] = data
        m = IndirectMemory.view_from_array(a, indirect=indirect)
        return m, lambda: a
    raise ValueError(kind)


def random_pair(rng):
    """Source and destination formats: random types, random byte orders."""
    scode, dcode = rng.choice(list(CODES)), rng.choice(list(CODES))
    return fmt_of(scode, rng.random() < 0.4), fmt_of(dcode, rng.random() < 0.4)


def random_shape(rng, ndim):
    return tuple(int(rng.integers(1, 6)) for _ in range(ndim))


def run_layout_case(im_kind, other_kind, direction, rng, ndim=None, sfmt=None, dfmt=None,
                    shape=None):
    """One random converting copy between an IndirectMemory of im_kind and an object of
    other_kind (the source for copy_from, the destination for copy_to)."""
    if ndim is None:
        ndim = 2 if im_kind in IM_KINDS_2D or other_kind in IM_KINDS_2D else int(
            rng.integers(2, 5))
    shape = shape or random_shape(rng, ndim)
    pats = patterns(ndim)
    indirect = pats[int(rng.integers(0, len(pats)))]
    if sfmt is None:
        sfmt, dfmt = random_pair(rng)
    sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
    values = sample(sdt, math.prod(shape), rng).reshape(shape)
    garbage = sample(ddt, math.prod(shape), rng, moderate=True).reshape(shape)
    src_kind, dst_kind = (other_kind, im_kind) if direction == "from" else (im_kind, other_kind)
    src, _ = build(src_kind, values.astype(sdt), sfmt, rng, indirect)
    dst, read = build(dst_kind, garbage.astype(ddt), dfmt, rng, indirect)
    what = (f"{src_kind} {sfmt!r} -> {dst_kind} {dfmt!r} shape {shape} indirect {indirect} "
            f"({direction})")
    if direction == "from":
        dst.copy_from(src, casting="unsafe")
    else:
        src.copy_to(dst, casting="unsafe")
    assert_same(read(), oracle(values, ddt), what)
    return what


@pytest.mark.parametrize("direction", ["from", "to"])
@pytest.mark.parametrize("other_kind", IM_KINDS + FOREIGN_KINDS)
@pytest.mark.parametrize("im_kind", IM_KINDS)
def test_layouts(im_kind, other_kind, direction):
    rng = np.random.default_rng(seed_of("layout", im_kind, other_kind, direction))
    for _ in range(8):
        run_layout_case(im_kind, other_kind, direction, rng)


@pytest.mark.parametrize("seed", range(6))
def test_layouts_random_mixture(seed):
    """Random layouts on both sides, shapes up to 4-D and up to 40 along a dimension."""
    rng = np.random.default_rng(seed_of("mixture", seed))
    for _ in range(40):
        im_kind = str(rng.choice(IM_KINDS))
        other = str(rng.choice(IM_KINDS + FOREIGN_KINDS))
        ndim = 2 if im_kind in IM_KINDS_2D or other in IM_KINDS_2D else int(rng.integers(2, 5))
        limit = 40 if ndim == 2 else 7
        shape = tuple(int(rng.integers(1, limit)) for _ in range(ndim))
        run_layout_case(im_kind, other, str(rng.choice(["from", "to"])), rng, ndim=ndim,
                        shape=shape)


@pytest.mark.parametrize("im_kind", IM_KINDS)
def test_broadcast_sources(im_kind):
    """NumPy sources with zero strides (np.broadcast_to, a repeated middle dimension)."""
    rng = np.random.default_rng(seed_of("broadcast", im_kind))
    for _ in range(6):
        ndim = 2 if im_kind in IM_KINDS_2D else int(rng.integers(2, 5))
        shape = random_shape(rng, ndim)
        sfmt, dfmt = random_pair(rng)
        sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
        axis = int(rng.integers(0, ndim))
        small = list(shape)
        small[axis] = 1
        base = sample(sdt, math.prod(small), rng).reshape(small).astype(sdt)
        src = np.broadcast_to(base, shape)
        assert src.strides[axis] == 0 or shape[axis] == 1
        pats = patterns(ndim)
        dst, read = build(im_kind, np.zeros(shape, ddt), dfmt, rng,
                          pats[int(rng.integers(0, len(pats)))])
        dst.copy_from(src, casting="unsafe")
        assert_same(read(), oracle(np.ascontiguousarray(src), ddt),
                    f"broadcast {sfmt} -> {im_kind} {dfmt} {shape}")


CTYPES_OF = {"?": ctypes.c_bool, "b": ctypes.c_byte, "B": ctypes.c_ubyte, "h": ctypes.c_short,
             "H": ctypes.c_ushort, "i": ctypes.c_int, "I": ctypes.c_uint,
             "q": ctypes.c_longlong, "Q": ctypes.c_ulonglong, "f": ctypes.c_float,
             "d": ctypes.c_double, "l": ctypes.c_long, "L": ctypes.c_ulong}


@pytest.mark.parametrize("code", sorted(CTYPES_OF))
def test_ctypes_arrays(code):
    """ctypes arrays (formats such as '<d', '<q', '<?' on a little-endian machine) converted
    into and out of indirect memory."""
    rng = np.random.default_rng(seed_of("ctypes", code))
    ct = CTYPES_OF[code]
    rows, cols = 3, 5
    array_type = ct * cols * rows
    assert memoryview(array_type()).itemsize == ctypes.sizeof(ct)
    sdt = np.dtype(ct)
    values = sample(sdt, rows * cols, rng).reshape(rows, cols).astype(sdt)
    src = array_type()
    ctypes.memmove(src, values.tobytes(), values.nbytes)
    for dcode in CODES:
        dfmt = fmt_of(dcode, dcode in "hd")
        ddt = np_dtype(dfmt)
        mem = IndirectMemory2D.create_memory(rows, cols, dfmt)
        mem.copy_from(src, casting="unsafe")
        assert_same(mem.to_numpy(), oracle(values, ddt), f"ctypes {code} -> {dfmt}")
        back = array_type()
        mem.copy_to(back, casting="unsafe")
        expected = oracle(oracle(values, ddt), sdt)
        got = np.frombuffer(bytes(back), sdt).reshape(rows, cols)
        assert_same(got, expected, f"{dfmt} -> ctypes {code}")


def element_bytes(a):
    """rows x cols list of each element's stored bytes (byte order kept: a NumPy scalar
    would be native)."""
    return [[a[i, j:j + 1].tobytes() for j in range(a.shape[1])] for i in range(a.shape[0])]


@pytest.fixture(scope="module")
def exporter_mod(cython_builder):
    path = _hostile.build_module(cython_builder, "ib_hostile_exporter", _hostile.EXPORTER_PYX)
    return _hostile.exporter_module(path)


@pytest.mark.parametrize("sub", [(0, 0), (-1, 0), (0, -1), (8, 16)])
def test_foreign_layouts_indirect_in_the_last_dimension(exporter_mod, sub):
    """A hand-made exporter whose elements lie behind pointers of their own (suboffsets in
    the last dimension: the engine converts element by element), scattered and shuffled."""
    rng = np.random.default_rng(seed_of("foreign", sub))
    for k in range(12):
        sfmt, dfmt = random_pair(rng)
        sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
        shape = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
        values = sample(sdt, math.prod(shape), rng).reshape(shape)
        other, _ = build(str(rng.choice(["memory", "address", "rows_stepped"])),
                                  values.astype(sdt), sfmt, rng, (0,))
        # foreign -> ours
        lay = _hostile.ForeignLayout(exporter_mod, element_bytes(values.astype(sdt)),
                                     sfmt, sdt.itemsize, sub=sub, seed=k)
        dst = IndirectMemory2D.create_memory(*shape, dfmt)
        dst.copy_from(lay.exporter, casting="unsafe")
        assert_same(dst.to_numpy(), oracle(values, ddt), f"foreign {sfmt} -> {dfmt} {sub}")
        # ours -> foreign
        garbage = sample(ddt, math.prod(shape), rng, moderate=True).reshape(shape).astype(ddt)
        lay2 = _hostile.ForeignLayout(exporter_mod, element_bytes(garbage), dfmt,
                                      ddt.itemsize, sub=sub, seed=k + 100)
        other.copy_to(lay2.exporter, casting="unsafe")
        got = np.array([[np.frombuffer(b, ddt)[0] for b in row] for row in lay2.read()],
                       dtype=ddt).reshape(shape)
        assert_same(got, oracle(values, ddt), f"{sfmt} -> foreign {dfmt} {sub}")


# ---------------------------------------------------------------------------------------------
# 5. overlapping source and destination
# ---------------------------------------------------------------------------------------------

OVERLAP_PAIRS = ["b->q", "q->b", "d->e", "e->d", "i->f", "f->i", "h->d", "B->e", "?->d",
                 "d->?", f"{OTHER}i->d", f"H->{OTHER}q", f"{OTHER}d->{OTHER}e",
                 f"f->{OTHER}f", f"{OTHER}q->{OTHER}b"]


def _views_on(raw, off, fmt, shape):
    dt = np_dtype(fmt)
    n = math.prod(shape)
    return raw[off:off + n * dt.itemsize].view(dt).reshape(shape)


@pytest.mark.parametrize("pair", OVERLAP_PAIRS)
def test_overlap_in_one_numpy_buffer(pair):
    """Source and destination are two dtypes' views of one byte buffer, the destination
    starting before, at, inside or after the source: the result is the conversion of a
    snapshot of the source (numpy converts a copy). Row views (one block: the converted
    fast path), reversed rows (the run by run path) and strided NumPy arrays."""
    sfmt, dfmt = pair.split("->")
    sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
    rng = np.random.default_rng(seed_of("overlap", pair))
    shape = (6, 37)
    n = math.prod(shape)
    span = n * max(sdt.itemsize, ddt.itemsize)
    base = 2 * span
    failures = []
    for shift in (-span // 2, -64, -8, -3, -1, 0, 1, 3, 8, 64, span // 2):
        for how in ("rows_from", "rows_to", "reversed_rows", "memoryview_from",
                    "strided_from", "strided_to"):
            raw = rng.integers(0, 256, 5 * span, dtype=np.uint8)
            soff, doff = base, base + shift
            s_arr = _views_on(raw, soff, sfmt, shape)
            d_arr = _views_on(raw, doff, dfmt, shape)
            if how == "strided_from":   # a strided NumPy source, every other column
                s_arr = _views_on(raw, soff, sfmt, (shape[0], 2 * shape[1]))[:, ::2]
            elif how == "strided_to":   # a NumPy destination walked backwards, stepping 2
                d_arr = _views_on(raw, doff, dfmt, (shape[0], 2 * shape[1]))[:, ::-2]
            s_arr[...] = sample(sdt, n, rng).reshape(shape).astype(sdt)
            snapshot = s_arr.astype(native(sdt))
            if how in ("rows_from", "strided_from"):
                IndirectMemory2D.view_from_rows(d_arr).copy_from(s_arr, casting="unsafe")
            elif how in ("rows_to", "strided_to"):
                IndirectMemory2D.view_from_rows(s_arr).copy_to(d_arr, casting="unsafe")
            elif how == "reversed_rows":
                src = IndirectMemory2D.view_from_rows(s_arr[::-1])
                IndirectMemory2D.view_from_rows(d_arr[::-1]).copy_from(src, casting="unsafe")
            else:  # a memoryview of a row view: not trusted, its rows found back to back
                src = memoryview(IndirectMemory2D.view_from_rows(s_arr))
                IndirectMemory2D.view_from_rows(d_arr).copy_from(src, casting="unsafe")
            try:
                assert_same(d_arr, oracle(snapshot, ddt), f"{pair} shift {shift} {how}")
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_overlap_of_n_d_views():
    """N-D: an IndirectMemory over a 3-D view of a buffer copied into a NumPy view of the
    same buffer as another dtype (and back), overlapping."""
    rng = np.random.default_rng(seed_of("overlap-nd"))
    shape = (3, 4, 29)
    n = math.prod(shape)
    failures = []
    for sfmt, dfmt in (("h", "d"), ("d", "h"), (OTHER + "f", "q"), ("B", OTHER + "e"),
                       ("i", OTHER + "i")):
        sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
        span = n * max(sdt.itemsize, ddt.itemsize)
        for shift in (-span // 3, -5, 0, 4, 7, span // 3):
            for indirect in ((0,), (1,), (0, 1)):
                raw = rng.integers(0, 256, 4 * span, dtype=np.uint8)
                s_arr = _views_on(raw, span, sfmt, shape)
                d_arr = _views_on(raw, span + shift, dfmt, shape)
                s_arr[...] = sample(sdt, n, rng).reshape(shape).astype(sdt)
                snapshot = s_arr.astype(native(sdt))
                if indirect == (1,):
                    IndirectMemory.view_from_array(d_arr, indirect=indirect).copy_from(
                        s_arr, casting="unsafe")
                else:
                    IndirectMemory.view_from_array(s_arr, indirect=indirect).copy_to(
                        d_arr, casting="unsafe")
                try:
                    assert_same(d_arr, oracle(snapshot, ddt),
                                f"{sfmt} -> {dfmt} shift {shift} indirect {indirect}")
                except AssertionError as exc:
                    failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("pair", ["b->d", "d->b", "i->f", f"{OTHER}h->q"])
def test_destination_overwrites_the_sources_row_pointers(pair):
    """The destination's elements cover the source's own table of row pointers (the rows
    lie elsewhere, scattered): the copy must read the whole source before it writes."""
    sfmt, dfmt = pair.split("->")
    sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
    rng = np.random.default_rng(seed_of("pointers", pair))
    rows, cols = 16, 24
    ptr = ctypes.sizeof(ctypes.c_void_p)
    dst_bytes = rows * cols * ddt.itemsize
    assert dst_bytes >= rows * ptr
    row_area = dst_bytes + 64
    pitch = cols * sdt.itemsize + 24      # padded: rows are never back to back
    raw = np.zeros(row_area + rows * pitch + 64, np.uint8)
    base = raw.ctypes.data
    order = rng.permutation(rows)
    table = raw[:rows * ptr].view(np.uintp)
    values = sample(sdt, rows * cols, rng).reshape(rows, cols).astype(sdt)
    for i in range(rows):
        off = row_area + int(order[i]) * pitch
        raw[off:off + cols * sdt.itemsize] = values[i:i + 1].view(np.uint8).ravel()
        table[i] = base + off
    src = IndirectMemory2D.from_address(base, rows, cols, sfmt, memory_nanny=raw)
    dst = raw[:dst_bytes].view(ddt).reshape(rows, cols)
    src.copy_to(dst, casting="unsafe")
    assert_same(dst, oracle(values, ddt), pair)


# ---------------------------------------------------------------------------------------------
# 6. large and small copies, chunk boundaries of byte-swapped sides, zero sizes
# ---------------------------------------------------------------------------------------------

LARGE_PAIRS = ["d->f", "f->d", "q->e", "b->d", "e->f", "H->q", "d->B", "?->i", "Q->b"]


@pytest.mark.parametrize("pair", LARGE_PAIRS)
def test_large_copies(pair):
    """Copies of more than 64 KiB (run without the GIL) in several layouts, with either side
    byte-swapped; also lent memory (copied with the GIL held)."""
    scode, dcode = pair.split("->")
    rng = np.random.default_rng(seed_of("large", pair))
    shape = (257, 301)
    cases = [("memory", "numpy", "from"), ("memory", "numpy_strided", "from"),
             ("address", "numpy_odd", "to"), ("rows_stepped", "memory", "to"),
             ("columns", "numpy", "to")]
    for k, (im_kind, other, direction) in enumerate(cases):
        ssw, dsw = k % 2 == 1, k % 3 == 1
        sfmt, dfmt = fmt_of(scode, ssw), fmt_of(dcode, dsw)
        assert math.prod(shape) * max(np_dtype(sfmt).itemsize, np_dtype(dfmt).itemsize) \
            >= 65536
        run_layout_case(im_kind, other, direction, rng, ndim=2, sfmt=sfmt, dfmt=dfmt,
                        shape=shape)
    # N-D, large
    run_layout_case("nd_memory", "numpy_strided", "from", rng, ndim=3,
                    sfmt=fmt_of(scode, True), dfmt=fmt_of(dcode, True), shape=(9, 31, 257))
    run_layout_case("nd_structure", "nd_memory", "to", rng, ndim=3, sfmt=scode,
                    dfmt=fmt_of(dcode, True), shape=(7, 40, 300))
    # lent memory (no nanny): pinned, copied with the GIL held
    sdt, ddt = np_dtype(scode), np_dtype(dcode)
    values = sample(sdt, math.prod(shape), rng).reshape(shape)
    lender = Scattered(values.astype(sdt), scode, rng)
    lent = IndirectMemory2D.from_address(ctypes.addressof(lender.table), *shape, scode)
    assert lent.lent
    out = np.zeros(shape, np_dtype(fmt_of(dcode, True)))
    lent.copy_to(out, casting="unsafe")
    assert_same(out, oracle(values, ddt), "lent " + pair)
    back = Scattered(np.zeros(shape, ddt), dcode, rng)
    target = IndirectMemory2D.from_address(ctypes.addressof(back.table), *shape, dcode)
    target.copy_from(values.astype(np_dtype(fmt_of(scode, True))), casting="unsafe")
    assert_same(back.read(), oracle(values, ddt), "into lent " + pair)
    lent.release()
    target.release()


CHUNK_PAIRS = ["i->d", "d->i", "e->f", "f->e", "q->h", "h->q", "d->d", "B->H", "?->e"]


@pytest.mark.parametrize("length", [1, 255, 256, 257, 511, 512, 513, 1000])
def test_byte_swapped_chunk_boundaries(length):
    """A byte-swapped side goes through a native buffer 256 elements at a time: runs of
    these lengths, one block (1 and 3 rows: the whole copy is one run) and run by run
    (strided NumPy, a column view, a scattered table), each side swapped or not."""
    rng = np.random.default_rng(seed_of("chunk", length))
    for pair in CHUNK_PAIRS:
        scode, dcode = pair.split("->")
        for ssw, dsw in ((True, False), (False, True), (True, True)):
            sfmt, dfmt = fmt_of(scode, ssw), fmt_of(dcode, dsw)
            for rows, im_kind, other, direction in (
                    (1, "memory", "numpy", "from"), (3, "memory", "numpy", "to"),
                    (2, "rows", "numpy_strided", "from"), (2, "columns", "numpy_odd", "to"),
                    (3, "address", "memory", "from")):
                shape = (rows, length)
                values = (np.arange(rows * length) % 2000 - 1000).reshape(shape)
                sdt = np_dtype(sfmt)
                if sdt.kind == "u":
                    values = np.abs(values)
                values = values.astype(native(sdt))
                if sdt.kind == "f":
                    values = values + 0.25
                src_kind, dst_kind = ((other, im_kind) if direction == "from"
                                      else (im_kind, other))
                src, _ = build(src_kind, values.astype(sdt), sfmt, rng, (0,))
                ddt = np_dtype(dfmt)
                dst, read = build(dst_kind, np.zeros(shape, ddt), dfmt, rng, (0,))
                if direction == "from":
                    dst.copy_from(src, casting="unsafe")
                else:
                    src.copy_to(dst, casting="unsafe")
                assert_same(read(), oracle(values, ddt),
                            f"{src_kind} {sfmt} -> {dst_kind} {dfmt} shape {shape}")


ZERO_SHAPES = [(0, 5), (5, 0), (0, 0), (2, 0, 3), (0, 2, 2), (3, 2, 0)]


@pytest.mark.parametrize("shape", ZERO_SHAPES)
def test_zero_sized_copies(shape):
    """Nothing to convert, nothing fails; the casting rule and the formats are still
    checked."""
    ndim = len(shape)
    for sfmt, dfmt in (("d", "f"), ("i", OTHER + "q"), (OTHER + "e", "d"), ("?", "B")):
        mem = (IndirectMemory2D.create_memory(*shape, dfmt) if ndim == 2
               else IndirectMemory.create_memory(shape, dfmt, indirect=(0,)))
        src = np.zeros(shape, np_dtype(sfmt))
        mem.copy_from(src)
        mem.copy_from(src, casting="unsafe")
        mem.copy_to(np.zeros(shape, np_dtype(sfmt)), casting="unsafe")
        assert mem.shape == shape
    mem = (IndirectMemory2D.create_memory(*shape, "i") if ndim == 2
           else IndirectMemory.create_memory(shape, "i", indirect=(0,)))
    with pytest.raises(BufferError, match="casting='same_kind'; casting='unsafe' allows it"):
        mem.copy_from(np.zeros(shape))
    with pytest.raises(BufferError, match="no conversion between these formats"):
        mem.copy_from(np.zeros(shape, np.complex64))
    with pytest.raises(BufferError, match="shape mismatch"):
        mem.copy_from(np.zeros(shape[::-1] if shape[::-1] != shape else (1,) * ndim, "d"),
                      casting="unsafe")


@pytest.mark.parametrize("rows", [1, 4, 200_000])
def test_converting_block_copy_values(rows):
    """Both sides one C-contiguous block (the one-pass path), and the same copy into stepped
    rows (the walk): the same values. That the block path is one pass is measured in
    benchmarks/ (time and instructions), never timed here."""
    src_vals = (np.arange(rows) % 251 - 125).astype(np.int8).reshape(rows, 1)
    src = IndirectMemory2D.create_memory(rows, 1, "b")
    src.copy_from(src_vals)
    block = IndirectMemory2D.create_memory(rows, 1, OTHER + "h")
    stepped_base = np.zeros((2 * rows, 1), np.dtype(OTHER + "i2"))
    stepped = IndirectMemory2D.view_from_rows(stepped_base[::2])
    block.copy_from(src, casting="safe")
    stepped.copy_from(src, casting="safe")
    assert (block.to_numpy() == src_vals).all()
    assert (stepped_base[::2] == src_vals).all()


def _releases_the_gil(fn, attempts=20):
    """True if another thread gets the GIL while fn() runs, in any of several attempts.

    The other thread waits on a semaphore (without the GIL); released, it needs the GIL to
    count one. The switch interval is made long and this thread keeps the GIL (busy for
    5 ms) until the other one is surely waiting for it, so with the GIL held throughout fn()
    the count cannot move before fn() returns; a GIL released for some milliseconds lets it
    count (unless every core is busy elsewhere all that time: hence the attempts)."""
    import threading
    import time
    state = {"n": 0, "stop": False}
    go = threading.Semaphore(0)

    def waiter():
        while True:
            go.acquire()
            if state["stop"]:
                return
            state["n"] += 1
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        for _ in range(attempts):
            before = state["n"]
            go.release()
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass
            assert state["n"] == before   # the GIL was never let go meanwhile
            fn()
            if state["n"] != before:
                return True
            deadline = time.monotonic() + 10
            while state["n"] == before and time.monotonic() < deadline:
                time.sleep(0.001)         # it counts now, and waits again
        return False
    finally:
        state["stop"] = True
        go.release()
        thread.join()
        sys.setswitchinterval(old)


def test_large_conversions_release_the_gil():
    """At least 64 KiB on the larger side run without the GIL: also when only the
    destination is that large (int8 -> int64); a small conversion keeps it. The copies
    walk one-element rows, so each keeps the GIL released for milliseconds."""
    n = 300_000
    src = IndirectMemory2D.create_memory(n, 1, "b")
    base = np.zeros((2 * n, 1), np_dtype(OTHER + "d"))
    dst = IndirectMemory2D.view_from_rows(base[::2])
    assert _releases_the_gil(lambda: dst.copy_from(src, casting="safe"))
    n = 65000
    assert n * 1 < 65536 <= n * 8
    src = IndirectMemory2D.create_memory(n, 1, "b")
    base = np.zeros((2 * n, 1), np_dtype(OTHER + "q"))
    dst = IndirectMemory2D.view_from_rows(base[::2])
    assert _releases_the_gil(lambda: dst.copy_from(src, casting="safe"), attempts=40)
    small_src = np.zeros((10, 10), np.int8)
    small = IndirectMemory2D.create_memory(10, 10, "d")
    assert not _releases_the_gil(lambda: small.copy_from(small_src), attempts=3)


def test_concurrent_large_conversions_in_threads():
    """Large converting copies (without the GIL) in several threads at once, each into its
    own memory: every result exact."""
    import threading
    rng = np.random.default_rng(seed_of("threads"))
    shape = (300, 400)
    jobs = []
    for k, pair in enumerate(["d->f", "i->d", "e->d", "q->h"]):
        scode, dcode = pair.split("->")
        vals = sample(np_dtype(scode), math.prod(shape), rng).reshape(shape)
        src = IndirectMemory2D.create_memory(*shape, fmt_of(scode, k % 2 == 1))
        src.copy_from(vals.astype(np_dtype(fmt_of(scode, k % 2 == 1))), cast=True)
        dst = IndirectMemory2D.create_memory(*shape, fmt_of(dcode, k % 2 == 0))
        jobs.append((src, dst, oracle(vals, np_dtype(dcode))))
    errors = []

    def work(src, dst):
        try:
            for _ in range(5):
                dst.copy_from(src, casting="unsafe")
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(s, d)) for s, d, _ in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for src, dst, expected in jobs:
        assert_same(dst.to_numpy(), expected, f"{src.format} -> {dst.format}")


# ---------------------------------------------------------------------------------------------
# 7. errors
# ---------------------------------------------------------------------------------------------

def refusal_problem(exc, sfmt, sdt, dfmt, ddt, casting):
    """None if exc is the BufferError of a refused cast as documented: it names the source
    format and type, then the destination's, the casting asked for and the least permissive
    one that allows the cast (NumPy's answer); else what is wrong."""
    if not isinstance(exc, BufferError):
        return f"expected BufferError, got {exc!r}"
    msg = str(exc)
    given = "same_kind" if casting is None else casting
    src_part = f"format {sfmt!r} ({type_text(sdt)})"
    dst_part = f"format {dfmt!r} ({type_text(ddt)})"
    tail = f"with casting={given!r}; casting={least_casting(sdt, ddt)!r} allows it"
    for part in ("source", src_part, "destination", dst_part, tail):
        if part not in msg:
            return f"{part!r} missing from {msg!r}"
    if not (msg.index("source") < msg.index(src_part) < msg.index("destination")
            < msg.index(dst_part) < msg.index(tail)):
        return f"parts out of order in {msg!r}"
    return None


def test_refusal_messages_name_both_formats_and_the_least_casting():
    """Every refused pair: BufferError naming both formats (as exported), their types, the
    casting asked for and the least permissive one that allows it (NumPy's answer); the
    destination is left untouched."""
    keys = sorted(SPELLINGS)
    wrong = []
    refused = 0
    for i, skey in enumerate(keys):
        for j, dkey in enumerate(keys):
            sdt, ddt = np.dtype(skey), np.dtype(dkey)
            sfmt = SPELLINGS[skey][(i + 2 * j) % len(SPELLINGS[skey])]
            dfmt = SPELLINGS[dkey][(3 * i + j) % len(SPELLINGS[dkey])]
            src = IndirectMemory2D.create_memory(1, 2, sfmt)
            memoryview(src.direct_view()).cast("B")[:] = bytes(range(1, 2 * src.itemsize + 1))
            dst = IndirectMemory2D.create_memory(1, 2, dfmt)
            before = bytes(memoryview(dst.direct_view()).cast("B"))
            for casting in CASTINGS + (None,):
                if can_cast(sdt, ddt, casting):
                    continue
                refused += 1
                exc = try_copy(src, dst, casting=casting, direction="from" if j % 2 else "to")
                problem = refusal_problem(exc, src.format, sdt, dst.format, ddt, casting)
                if problem:
                    wrong.append((sfmt, dfmt, casting, problem))
            assert bytes(memoryview(dst.direct_view()).cast("B")) == before
    assert refused > 1000
    assert not wrong, "\n".join(map(str, wrong[:20]))


def test_refusal_message_with_numpy_arrays():
    a = np.zeros((2, 3))
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    cases = [
        (lambda: mem.copy_from(a), "d", "i", None),
        (lambda: mem.copy_to(np.zeros((2, 3), np_dtype(OTHER + "i")), casting="no"), "i",
         OTHER + "i", "no"),
        (lambda: mem.copy_to(np.zeros((2, 3), np.uint16), casting="safe"), "i", "H", "safe"),
        (lambda: IndirectMemory2D.create_memory(2, 3, "h").copy_from(
            np.zeros((2, 3), np.uint8), casting="no"), "B", "h", "no"),
        (lambda: mem.copy_from(np.zeros((2, 3), "<f2"), casting="equiv"), "e", "i", "equiv"),
    ]
    for call, sfmt, dfmt, casting in cases:
        with pytest.raises(BufferError) as info:
            call()
        problem = refusal_problem(info.value, sfmt, np_dtype(sfmt), dfmt, np_dtype(dfmt),
                                  casting)
        assert problem is None, problem
    with pytest.raises(BufferError) as info:
        mem.copy_from(a)
    assert "'d' (float64)" in str(info.value) and "'i' (int32)" in str(info.value)
    assert str(info.value).endswith("casting='same_kind'; casting='unsafe' allows it")


def test_cast_true_with_other_itemsizes_is_refused():
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    for other in ("d", "h", "b", "q", "e"):
        with pytest.raises(BufferError) as info:
            mem.copy_to(np.zeros((2, 3), np_dtype(other)), cast=True)
        msg = str(info.value)
        assert "itemsize" in msg and "itemsize 4" in msg and \
            f"itemsize {np_dtype(other).itemsize}" in msg, msg
        with pytest.raises(BufferError, match="itemsize"):
            mem.copy_from(np.zeros((2, 3), np_dtype(other)), cast=True)


@pytest.mark.parametrize("casting", CASTINGS)
def test_cast_true_takes_no_casting(casting):
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    for cast in (True, 1):
        with pytest.raises(ValueError, match=re.escape(f"casting={casting!r}")):
            mem.copy_from(np.zeros((2, 3), "f4"), cast=cast, casting=casting)
        with pytest.raises(ValueError, match="cast=True"):
            mem.copy_to(np.zeros((2, 3), "f4"), cast=cast, casting=casting)
    mem.copy_from(np.full((2, 3), 7.5, "f4"), cast=False, casting="unsafe")
    assert (mem.to_numpy() == 7).all()


@pytest.mark.parametrize("bad", [1, 0, b"unsafe", 2.5, ["unsafe"], ("safe",), object()])
def test_casting_must_be_a_str(bad):
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    src = np.ones((2, 3))
    with pytest.raises(TypeError, match="casting must be one of 'no', 'equiv', 'safe', "
                                        "'same_kind', 'unsafe'"):
        mem.copy_from(src, casting=bad)
    with pytest.raises(TypeError, match=type(bad).__name__):
        mem.copy_to(np.zeros((2, 3)), casting=bad)
    assert (mem.to_numpy() == 0).all()   # nothing copied


@pytest.mark.parametrize("bad", ["Unsafe", "SAFE", "same-kind", "samekind", "", " no",
                                 "unsafe ", "none", "equivalent"])
def test_unknown_casting_names(bad):
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    for call in (lambda: mem.copy_from(np.ones((2, 3)), casting=bad),
                 lambda: mem.copy_to(np.zeros((2, 3)), casting=bad)):
        with pytest.raises(ValueError) as info:
            call()
        assert repr(bad) in str(info.value), str(info.value)
        assert "casting must be one of" in str(info.value)
    assert (mem.to_numpy() == 0).all()


def test_read_only_destinations_are_still_refused():
    ro = IndirectMemory2D.create_memory(2, 3, "i", readonly=True)
    for casting in (None, "unsafe", "no"):
        with pytest.raises(BufferError, match="read-only"):
            ro.copy_from(np.ones((2, 3)), casting=casting)
        with pytest.raises(BufferError, match="read-only"):
            ro.copy_from(np.ones((2, 3), np.int32), casting=casting)
    frozen = np.zeros((2, 3), np.float64)
    frozen.flags.writeable = False
    src = IndirectMemory2D.create_memory(2, 3, "i")
    for casting in (None, "unsafe", "safe"):
        with pytest.raises(BufferError, match="cannot copy into ndarray"):
            src.copy_to(frozen, casting=casting)
    nd = IndirectMemory.create_memory((2, 3, 4), "h", indirect=(1,))
    nd.make_read_only()
    with pytest.raises(BufferError, match="read-only"):
        nd.copy_from(np.ones((2, 3, 4)), casting="unsafe")
    pil = tb.ndarray([0.0] * 6, shape=[2, 3], format="d", flags=tb.ND_PIL)  # read-only
    with pytest.raises(BufferError):
        src.copy_to(pil, casting="unsafe")
    assert (ro.to_numpy() == 0).all() and (frozen == 0).all()


def test_shape_mismatch_is_unchanged_by_conversion():
    mem = IndirectMemory2D.create_memory(2, 3, "i")
    for other, casting in ((np.zeros((3, 2)), "unsafe"), (np.zeros((2, 4)), "no"),
                           (np.zeros((2, 3, 1), "i4"), None), (np.zeros(6, "f4"), "unsafe"),
                           (np.zeros((3, 2), "c16"), "unsafe")):
        with pytest.raises(BufferError) as info:
            mem.copy_from(other, casting=casting)
        msg = str(info.value)
        assert "shape mismatch" in msg or "same dimensions" in msg, msg
        with pytest.raises(BufferError):
            mem.copy_to(np.zeros_like(other), casting=casting)
    nd = IndirectMemory.create_memory((2, 3, 4), "d")
    with pytest.raises(BufferError, match="shape mismatch"):
        nd.copy_from(np.zeros((2, 4, 3), "f"), casting="unsafe")


NON_CONVERTIBLE = [
    # (source: a NumPy dtype, or "fmt:" and a struct format for owned memory; destination
    # format; itemsizes equal)
    ("S1", "B", True),               # 'c' / '1s' text bytes
    ("S1", "b", True),
    ("fmt:c", "?", True),
    ("S4", "i", True),
    ("S8", "d", True),
    ("fmt:2i", "q", True),           # sub-array
    ("fmt:2i", "i", False),
    ("fmt:2h", "e", False),
    ("c16", "d", False),             # complex 'Zd'
    ("c8", "d", True),               # 'Zf', 8 bytes
    ("c8", "f", False),
    ([("a", "<i4"), ("b", "<f4")], "q", True),   # 'T{...}'
    ([("a", "<i4"), ("b", "<f4")], "i", False),
    ("V3", "B", False),
    ("fmt:ihh", "q", True),          # C structs ('ih' is 6 bytes to struct)
    ("fmt:ih", "q", False),
]


def _non_convertible(spec, shape=(2, 3)):
    """A zeroed object of shape holding spec's elements, and its exported format."""
    if isinstance(spec, str) and spec.startswith("fmt:"):
        mem = IndirectMemory2D.create_memory(*shape, spec[4:])
        return mem, memoryview(mem).format
    a = np.zeros(shape, np.dtype(spec))
    return a, memoryview(a).format


@pytest.mark.parametrize("spec,dfmt,same_size", NON_CONVERTIBLE,
                         ids=[f"{i}" for i in range(len(NON_CONVERTIBLE))])
def test_non_convertible_formats(spec, dfmt, same_size):
    """'c', sub-arrays, complex, structs: no conversion, whatever the casting; the message
    suggests cast=True only when the itemsizes allow it (and then cast=True works)."""
    src, sformat = _non_convertible(spec)
    mem = IndirectMemory2D.create_memory(2, 3, dfmt)
    for casting in CASTINGS + (None,):
        for direction in ("from", "to"):
            target, _ = _non_convertible(spec)
            exc = (try_copy(src, mem, casting=casting) if direction == "from"
                   else try_copy(mem, target, casting=casting, direction="to"))
            assert isinstance(exc, BufferError), (direction, casting, exc)
            msg = str(exc)
            assert msg.startswith("format mismatch"), msg
            assert "no conversion between these formats" in msg, msg
            assert repr(sformat) in msg and repr(dfmt) in msg, msg
            assert msg.endswith("; cast=True copies the bytes unchanged") == same_size, msg
    if same_size:
        mem.copy_from(src, cast=True)


def test_non_convertible_formats_of_pointers():
    """'P' (void*) is not a number here: 'P' into 'Q' is refused with the cast=True hint;
    'P' to 'P' copies."""
    a = IndirectMemory2D.create_memory(1, 2, "P")
    b = IndirectMemory2D.create_memory(1, 2, "Q")
    with pytest.raises(BufferError, match="no conversion between these formats; cast=True"):
        b.copy_from(a, casting="unsafe")
    with pytest.raises(BufferError, match="no conversion between these formats; cast=True"):
        a.copy_from(b, casting="unsafe")
    IndirectMemory2D.create_memory(1, 2, "P").copy_from(a, casting="no")
    b.copy_from(a, cast=True)


def _stored_bytes(obj):
    if isinstance(obj, np.ndarray):
        return obj.tobytes()
    return bytes(memoryview(obj.direct_view()).cast("B"))


def test_identical_non_convertible_formats_still_copy():
    """The same non-convertible format on both sides is a copy of the bytes, under every
    casting (NumPy's 'no' accepts identical dtypes)."""
    rng = np.random.default_rng(seed_of("identical"))
    for spec in ("S1", "fmt:2i", "c16", "V3", [("a", "<i4"), ("b", "<f4")], "fmt:ih", "fmt:c"):
        src, fmt = _non_convertible(spec)
        raw = rng.integers(0, 256, len(_stored_bytes(src)), dtype=np.uint8).tobytes()
        if isinstance(src, np.ndarray):
            src = np.frombuffer(raw, src.dtype).reshape(2, 3).copy()
        else:
            memoryview(src.direct_view()).cast("B")[:] = raw
        mem = (IndirectMemory2D.view_from_rows(np.zeros((2, 3), src.dtype))
               if isinstance(src, np.ndarray) else IndirectMemory2D.create_memory(2, 3, fmt))
        assert mem.format == fmt
        for casting in CASTINGS + (None,):
            mem.copy_from(_non_convertible(spec)[0], casting=casting)
            mem.copy_from(src, casting=casting)
            out, _ = _non_convertible(spec)
            mem.copy_to(out, casting=casting)
            assert _stored_bytes(out) == raw, (spec, casting)


# ---------------------------------------------------------------------------------------------
# 8. cast=True: the bytes, unchanged
# ---------------------------------------------------------------------------------------------

CAST_PAIRS = [("i", "f"), ("f", "i"), ("q", "d"), ("d", "q"), ("h", "e"), ("e", "H"),
              (OTHER + "i", "i"), ("i", OTHER + "f"), ("?", "B"), ("B", "b"), ("Q", OTHER + "d"),
              ("d", OTHER + "d")]


@pytest.mark.parametrize("sfmt,dfmt", CAST_PAIRS)
def test_cast_true_copies_raw_bytes(sfmt, dfmt):
    """Equal itemsizes, other formats: the destination holds the source's bytes (numpy's
    .view), in every layout, both directions."""
    rng = np.random.default_rng(seed_of("cast", sfmt, dfmt))
    sdt, ddt = np_dtype(sfmt), np_dtype(dfmt)
    for im_kind, other, direction in (("memory", "numpy", "from"), ("memory", "numpy", "to"),
                                      ("address", "numpy_strided", "from"),
                                      ("rows_stepped", "numpy_odd", "to"),
                                      ("nd_memory", "pil", "from"),
                                      ("columns", "memoryview_im", "to")):
        shape = (int(rng.integers(1, 9)), int(rng.integers(1, 300)))
        raw = rng.integers(0, 256, math.prod(shape) * sdt.itemsize, dtype=np.uint8)
        if sdt.kind == "b":
            raw %= 2
        values = raw.view(sdt).reshape(shape)
        if other == "pil" and sdt.kind == "f":  # _testbuffer packs through Python floats
            values = np.where(np.isnan(values), sdt.type(1.5), values).astype(sdt)
        src_kind, dst_kind = (other, im_kind) if direction == "from" else (im_kind, other)
        src, _ = build(src_kind, values, sfmt, rng, (0,))
        garbage = rng.integers(0, 2, math.prod(shape)).astype(ddt).reshape(shape)
        dst, read = build(dst_kind, garbage, dfmt, rng, (0,))
        if direction == "from":
            dst.copy_from(src, cast=True)
        else:
            src.copy_to(dst, cast=True)
        got = np.ascontiguousarray(read()).astype(ddt)
        assert got.tobytes() == np.ascontiguousarray(values).view(ddt).tobytes(), \
            (src_kind, sfmt, dst_kind, dfmt)


# ---------------------------------------------------------------------------------------------
# 9. as_indirect(obj, format=...)
# ---------------------------------------------------------------------------------------------

AS_INDIRECT_PAIRS = [("f8", "i"), ("f8", OTHER + "h"), ("i4", "d"), ("u1", "e"), ("f2", "d"),
                     ("i8", "B"), ("f4", "?"), ("?", "f"), (OTHER + "f8", "f"),
                     ("i2", OTHER + "q"), ("u8", "e"), ("f8", "=l")]


def _as_indirect_values(sdt, ddt, shape, rng):
    """Values numpy and the library convert alike: float -> integer in range only (out of
    range NumPy is platform-dependent)."""
    sdt, ddt = np.dtype(sdt), np.dtype(ddt)
    vals = sample(sdt, math.prod(shape), rng).reshape(shape)
    if sdt.kind == "f" and ddt.kind in "iu":
        info = np.iinfo(ddt)
        lo, hi = max(float(info.min), -30000.0), min(float(info.max), 30000.0)
        vals = rng.uniform(lo, hi, shape).astype(sdt)
    return vals


def _sources(vals, rng):
    """vals as a C array, a strided array, a Fortran array, a PIL-style buffer and an
    IndirectMemory; N-D too."""
    out = [("numpy", vals.copy())]
    strided = _strided_empty(vals.shape, vals.dtype, rng)
    strided[...] = vals
    out.append(("strided", strided))
    out.append(("fortran", np.asfortranarray(vals)))
    fmt = memoryview(vals).format
    if len(fmt.lstrip("@=<>!")) == 1:
        out.append(("pil", _pil(vals, fmt, rng)))
        mem = (IndirectMemory2D.create_memory(*vals.shape, fmt) if vals.ndim == 2 else
               IndirectMemory.create_memory(vals.shape, fmt, indirect=(0,)))
        mem.copy_from(vals)
        out.append(("memory", mem))
    return out


@pytest.mark.parametrize("sdt,fmt", AS_INDIRECT_PAIRS)
def test_as_indirect_converts_like_numpy(sdt, fmt):
    rng = np.random.default_rng(seed_of("as_indirect", sdt, fmt))
    ddt = np_dtype(fmt)
    shape = (5, 7)
    vals = _as_indirect_values(sdt, ddt, shape, rng).astype(np.dtype(sdt))
    for what, obj in _sources(vals, rng):
        out = as_indirect(obj, format=fmt)
        assert isinstance(out, IndirectMemory2D), what
        assert out.shape == shape and out.readonly, what
        assert np_dtype(out.format) == ddt, (what, out.format)
        assert_same(out.to_numpy(), oracle(vals, ddt), f"as_indirect({what}, {fmt!r})")
        if what != "pil":  # read-only: refused with readonly=False
            writable = as_indirect(obj, format=fmt, readonly=False)
            assert not writable.readonly
            assert_same(writable.to_numpy(), oracle(vals, ddt), f"writable ({what})")
            writable.copy_from(np.ones(shape, np.int8), casting="unsafe")
            assert_same(obj.to_numpy() if what == "memory" else obj, vals,
                        f"{what} untouched")


@pytest.mark.parametrize("indirect", [(0,), (1,), (0, 1)])
@pytest.mark.parametrize("sdt,fmt", AS_INDIRECT_PAIRS[:8])
def test_as_indirect_n_d_converts_like_numpy(sdt, fmt, indirect):
    rng = np.random.default_rng(seed_of("as_indirect_nd", sdt, fmt, indirect))
    ddt = np_dtype(fmt)
    shape = (3, 4, 6)
    vals = _as_indirect_values(sdt, ddt, shape, rng).astype(np.dtype(sdt))
    for what, obj in _sources(vals, rng):
        out = as_indirect(obj, format=fmt, indirect=indirect)
        assert isinstance(out, IndirectMemory), what
        assert out.shape == shape and out.indirect == indirect and out.readonly, what
        assert np_dtype(out.format) == ddt, (what, out.format)
        assert_same(out.to_numpy(), oracle(vals, ddt), f"as_indirect({what}, {fmt!r}, "
                                                       f"indirect={indirect})")


def test_as_indirect_of_n_d_input_as_rows_converts():
    """2-D as_indirect of an H x W x C array: one row per index of the first dimension,
    converted."""
    vals = (np.arange(2 * 3 * 4) * 1.75 - 9).reshape(2, 3, 4)
    out = as_indirect(vals, format="h")
    assert out.shape == (2, 12)
    assert_same(out.to_numpy(), vals.reshape(2, 12).astype(np.int16), "rows")
    out = as_indirect(vals[:, ::-1, ::2], format=OTHER + "e")
    assert_same(out.to_numpy(), vals[:, ::-1, ::2].reshape(2, 6).astype(np.float16), "strided")
