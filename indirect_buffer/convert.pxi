# Converting copies: the element types the copy engine converts between natively (bool, every
# integer width signed and unsigned, half, float and double, in either byte order), NumPy's
# casting rules for them, and the loops that convert one run of elements.
#
# The copy engine (copy_engine.pxi) calls ib_cast_run where it would copy a run's bytes; all
# its walking, overlap and NULL handling stays the same for converting copies.

cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>

    /* Element types, in the order of their ids (0: not a convertible type). */
    enum { IB_T_NONE, IB_T_BOOL, IB_T_I8, IB_T_U8, IB_T_I16, IB_T_U16, IB_T_I32, IB_T_U32,
           IB_T_I64, IB_T_U64, IB_T_F16, IB_T_F32, IB_T_F64, IB_T_COUNT };
    /* NumPy's casting names, from the strictest. */
    enum { IB_CASTING_NO, IB_CASTING_EQUIV, IB_CASTING_SAFE, IB_CASTING_SAME_KIND,
           IB_CASTING_UNSAFE };

    /* Kind of each type, ordered as NumPy orders kinds for 'same_kind' (bool < unsigned <
       signed < float), and its size in bytes. */
    enum { IB_K_BOOL, IB_K_UINT, IB_K_INT, IB_K_FLOAT };
    static const unsigned char ib_type_kind[IB_T_COUNT] = {
        0, IB_K_BOOL, IB_K_INT, IB_K_UINT, IB_K_INT, IB_K_UINT, IB_K_INT, IB_K_UINT,
        IB_K_INT, IB_K_UINT, IB_K_FLOAT, IB_K_FLOAT, IB_K_FLOAT };
    static const unsigned char ib_type_size[IB_T_COUNT] = {
        0, 1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 4, 8 };
    static const char *const ib_type_name[IB_T_COUNT] = {
        "", "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "float16", "float32", "float64" };

    /* The type of a struct format of one element, or IB_T_NONE. *swapped: stored in the
       other byte order than this machine's. */
    static int ib_elem_type(const char *f, Py_ssize_t itemsize, int *swapped) {
        const uint16_t probe = 1;
        int little, native = 1, is_signed = 1, size, t;
        char order = 0;
        little = *(const unsigned char *)&probe == 1;
        if (*f == '@' || *f == '=' || *f == '<' || *f == '>' || *f == '!') {
            order = *f++;
            native = order == '@';
        }
        if (f[0] == 0 || f[1] != 0)
            return IB_T_NONE;
        switch (f[0]) {
        case '?': size = 1; break;
        case 'b': size = 1; break;
        case 'B': size = 1; is_signed = 0; break;
        case 'h': size = 2; break;
        case 'H': size = 2; is_signed = 0; break;
        case 'i': size = native ? (int)sizeof(int) : 4; break;
        case 'I': size = native ? (int)sizeof(int) : 4; is_signed = 0; break;
        case 'l': size = native ? (int)sizeof(long) : 4; break;
        case 'L': size = native ? (int)sizeof(long) : 4; is_signed = 0; break;
        case 'q': size = 8; break;
        case 'Q': size = 8; is_signed = 0; break;
        case 'n': if (!native) return IB_T_NONE; size = (int)sizeof(Py_ssize_t); break;
        case 'N': if (!native) return IB_T_NONE; size = (int)sizeof(size_t);
                  is_signed = 0; break;
        case 'e': size = 2; break;
        case 'f': size = 4; break;
        case 'd': size = 8; break;
        default: return IB_T_NONE;
        }
        if (size != itemsize)
            return IB_T_NONE;
        if (f[0] == '?')
            t = IB_T_BOOL;
        else if (f[0] == 'e')
            t = IB_T_F16;
        else if (f[0] == 'f')
            t = IB_T_F32;
        else if (f[0] == 'd')
            t = IB_T_F64;
        else
            t = (size == 1 ? IB_T_I8 : size == 2 ? IB_T_I16 : size == 4 ? IB_T_I32 : IB_T_I64)
                + !is_signed;
        *swapped = size > 1 && ((order == '<' && !little) ||
                                ((order == '>' || order == '!') && little));
        return t;
    }

    /* NumPy's 'safe' rule: every value of s is a value of d. */
    static int ib_safe_cast(int s, int d) {
        int ks = ib_type_kind[s], kd = ib_type_kind[d];
        int ss = ib_type_size[s], ds = ib_type_size[d];
        if (s == d || ks == IB_K_BOOL)
            return 1;
        if (kd == IB_K_BOOL)
            return 0;
        if (kd == IB_K_FLOAT) {
            if (ks == IB_K_FLOAT)
                return ds >= ss;
            /* Integers: as NumPy decides (64-bit integers go to float64 too). */
            return ds == 8 || (ds == 4 && ss <= 2) || (ds == 2 && ss == 1);
        }
        if (ks == IB_K_FLOAT)
            return 0;
        if (ks == IB_K_UINT)
            return kd == IB_K_UINT ? ds >= ss : ds > ss;
        return kd == IB_K_INT && ds >= ss;
    }

    /* Whether casting allows a copy from (s, s_swapped) to (d, d_swapped). */
    static int ib_can_cast(int s, int s_swapped, int d, int d_swapped, int casting) {
        if (s == d && s_swapped == d_swapped)
            return 1;
        switch (casting) {
        case IB_CASTING_NO: return 0;
        case IB_CASTING_EQUIV: return s == d;
        case IB_CASTING_SAFE: return ib_safe_cast(s, d);
        case IB_CASTING_SAME_KIND:
            return ib_safe_cast(s, d) || ib_type_kind[s] <= ib_type_kind[d];
        default: return 1;
        }
    }

    /* -- half precision (IEEE binary16), rounded to nearest even ------------------------- */

    static float ib_half_to_float(uint16_t h) {
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
        uint32_t x;
        float f;
        if (e == 0x1f) {
            x = sign | 0x7f800000u | (m << 13);
        } else if (e == 0) {
            if (m == 0) {
                x = sign;
            } else {  /* subnormal: normalise */
                e = 113;
                while (!(m & 0x400u)) {
                    m <<= 1;
                    e--;
                }
                x = sign | (e << 23) | ((m & 0x3ffu) << 13);
            }
        } else {
            x = sign | ((e + 112) << 23) | (m << 13);
        }
        memcpy(&f, &x, 4);
        return f;
    }

    /* Round mant >> shift to nearest even (shift >= 1). */
    static uint32_t ib_round_shift(uint64_t mant, int shift) {
        uint64_t kept = mant >> shift, rest = mant & ((1ull << shift) - 1);
        uint64_t halfway = 1ull << (shift - 1);
        if (rest > halfway || (rest == halfway && (kept & 1)))
            kept++;
        return (uint32_t)kept;
    }

    /* The binary16 nearest to a value with sign, unbiased exponent e and a mantissa of
       `bits` fraction bits (implicit bit not included); inf/nan handled by the callers. */
    static uint16_t ib_to_half(uint16_t sign, int e, uint64_t frac, int bits) {
        if (e >= 16)
            return sign | 0x7c00u;
        if (e >= -14)  /* normal: a carry out of the mantissa bumps the exponent, as it must */
            return sign | (uint16_t)(((uint32_t)(e + 15) << 10) + ib_round_shift(frac, bits - 10));
        if (e < -25)
            return sign;
        /* subnormal: units of 2^-24 */
        return sign | (uint16_t)ib_round_shift(frac | (1ull << bits), bits - 24 - e);
    }

    static uint16_t ib_float_to_half(float f) {
        uint32_t x, a;
        uint16_t sign, h;
        memcpy(&x, &f, 4);
        sign = (uint16_t)((x >> 16) & 0x8000u);
        a = x & 0x7fffffffu;
        if (a >= 0x7f800000u) {
            if (a == 0x7f800000u)
                return sign | 0x7c00u;
            h = (uint16_t)(0x7c00u + ((a & 0x7fffffu) >> 13));  /* nan: keep the top bits */
            return sign | (h == 0x7c00u ? 0x7c01u : h);
        }
        if (a < 0x00800000u)
            return sign;  /* zero or a float subnormal: far below binary16's smallest */
        return ib_to_half(sign, (int)(a >> 23) - 127, a & 0x7fffffu, 23);
    }

    static uint16_t ib_double_to_half(double v) {
        uint64_t x, a;
        uint16_t sign, h;
        memcpy(&x, &v, 8);
        sign = (uint16_t)((x >> 48) & 0x8000u);
        a = x & 0x7fffffffffffffffull;
        if (a >= 0x7ff0000000000000ull) {
            if (a == 0x7ff0000000000000ull)
                return sign | 0x7c00u;
            h = (uint16_t)(0x7c00u + ((a & 0xfffffffffffffull) >> 42));
            return sign | (h == 0x7c00u ? 0x7c01u : h);
        }
        if (a < 0x0010000000000000ull)
            return sign;
        return ib_to_half(sign, (int)(a >> 52) - 1023, a & 0xfffffffffffffull, 52);
    }

    /* -- the loops: one function per (source, destination) pair ------------------------- */

    typedef void (*ib_conv_fn)(char *d, Py_ssize_t ds, const char *s, Py_ssize_t ss,
                               Py_ssize_t n);

    /* Storage type, and value read from storage, of each type. */
    #define IB_ST_BOOL uint8_t
    #define IB_ST_I8 int8_t
    #define IB_ST_U8 uint8_t
    #define IB_ST_I16 int16_t
    #define IB_ST_U16 uint16_t
    #define IB_ST_I32 int32_t
    #define IB_ST_U32 uint32_t
    #define IB_ST_I64 int64_t
    #define IB_ST_U64 uint64_t
    #define IB_ST_F16 uint16_t
    #define IB_ST_F32 float
    #define IB_ST_F64 double
    #define IB_LOAD_BOOL(x) ((x) != 0)
    #define IB_LOAD_F16(x) ib_half_to_float(x)
    #define IB_LOAD_INT(x) (x)
    #define IB_LOAD_I8 IB_LOAD_INT
    #define IB_LOAD_U8 IB_LOAD_INT
    #define IB_LOAD_I16 IB_LOAD_INT
    #define IB_LOAD_U16 IB_LOAD_INT
    #define IB_LOAD_I32 IB_LOAD_INT
    #define IB_LOAD_U32 IB_LOAD_INT
    #define IB_LOAD_I64 IB_LOAD_INT
    #define IB_LOAD_U64 IB_LOAD_INT
    #define IB_LOAD_F32 IB_LOAD_INT
    #define IB_LOAD_F64 IB_LOAD_INT
    /* Whether a source type is a float (its values saturate into integers). */
    #define IB_ISF_BOOL 0
    #define IB_ISF_I8 0
    #define IB_ISF_U8 0
    #define IB_ISF_I16 0
    #define IB_ISF_U16 0
    #define IB_ISF_I32 0
    #define IB_ISF_U32 0
    #define IB_ISF_I64 0
    #define IB_ISF_U64 0
    #define IB_ISF_F16 1
    #define IB_ISF_F32 1
    #define IB_ISF_F64 1
    /* Whether a source type is double (it rounds to binary16 directly). */
    #define IB_ISD_BOOL 0
    #define IB_ISD_I8 0
    #define IB_ISD_U8 0
    #define IB_ISD_I16 0
    #define IB_ISD_U16 0
    #define IB_ISD_I32 0
    #define IB_ISD_U32 0
    #define IB_ISD_I64 0
    #define IB_ISD_U64 0
    #define IB_ISD_F16 0
    #define IB_ISD_F32 0
    #define IB_ISD_F64 1
    /* Limits of the integer types, for saturating floats. */
    #define IB_LIM_I8 INT8_MIN, INT8_MAX
    #define IB_LIM_U8 0, UINT8_MAX
    #define IB_LIM_I16 INT16_MIN, INT16_MAX
    #define IB_LIM_U16 0, UINT16_MAX
    #define IB_LIM_I32 INT32_MIN, INT32_MAX
    #define IB_LIM_U32 0, UINT32_MAX
    #define IB_LIM_I64 INT64_MIN, INT64_MAX
    #define IB_LIM_U64 0, UINT64_MAX

    /* A float value as integer type T: truncated when in range; nan is 0 and values out of
       range saturate (where C leaves them undefined and NumPy platform-dependent). */
    #define IB_SATURATE(T, v, lo, hi) \\
        ((v) != (v) ? (T)0 : (double)(v) <= (double)(lo) ? (T)(lo) \\
         : (double)(v) >= (double)(hi) ? (T)(hi) : (T)(v))
    #define IB_SAT2(T, v, lims) IB_SATURATE(T, v, lims)
    #define IB_TO_INT(T, D, S, v) (IB_ISF_##S ? IB_SAT2(T, v, IB_LIM_##D) : (T)(v))

    /* The stored value of type D for a value v read from type S. */
    #define IB_STORE_BOOL(S, v) ((uint8_t)((v) != 0))
    #define IB_STORE_I8(S, v) IB_TO_INT(int8_t, I8, S, v)
    #define IB_STORE_U8(S, v) IB_TO_INT(uint8_t, U8, S, v)
    #define IB_STORE_I16(S, v) IB_TO_INT(int16_t, I16, S, v)
    #define IB_STORE_U16(S, v) IB_TO_INT(uint16_t, U16, S, v)
    #define IB_STORE_I32(S, v) IB_TO_INT(int32_t, I32, S, v)
    #define IB_STORE_U32(S, v) IB_TO_INT(uint32_t, U32, S, v)
    #define IB_STORE_I64(S, v) IB_TO_INT(int64_t, I64, S, v)
    #define IB_STORE_U64(S, v) IB_TO_INT(uint64_t, U64, S, v)
    #define IB_STORE_F32(S, v) ((float)(v))
    #define IB_STORE_F64(S, v) ((double)(v))
    /* A double rounds to binary16 once; everything else exactly through float (integers
       too big for float are far beyond binary16's range either way). */
    #define IB_STORE_F16(S, v) \\
        (IB_ISD_##S ? ib_double_to_half((double)(v)) : ib_float_to_half((float)(v)))

    /* Unaligned loads and stores (memcpy of a constant size compiles to one move); the
       contiguous case is a separate loop so that the compiler vectorises it, for AVX2 too
       where GCC can pick the loop by the CPU at load time (as NumPy's dispatch does). */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \\
        defined(__linux__) && __GNUC__ >= 8
    #define IB_DISPATCH __attribute__((target_clones("avx2", "default")))
    #else
    #define IB_DISPATCH
    #endif
    #define IB_CONV(S, D) \\
    IB_DISPATCH static void ib_conv_##S##_##D(char *d, Py_ssize_t ds, const char *s, Py_ssize_t ss, \\
                                  Py_ssize_t n) { \\
        Py_ssize_t j; \\
        IB_ST_##S x; \\
        IB_ST_##D y; \\
        if (ss == (Py_ssize_t)sizeof(x) && ds == (Py_ssize_t)sizeof(y)) { \\
            for (j = 0; j < n; j++) { \\
                memcpy(&x, s + j * (Py_ssize_t)sizeof(x), sizeof(x)); \\
                y = IB_STORE_##D(S, IB_LOAD_##S(x)); \\
                memcpy(d + j * (Py_ssize_t)sizeof(y), &y, sizeof(y)); \\
            } \\
        } else { \\
            for (j = 0; j < n; j++) { \\
                memcpy(&x, s + j * ss, sizeof(x)); \\
                y = IB_STORE_##D(S, IB_LOAD_##S(x)); \\
                memcpy(d + j * ds, &y, sizeof(y)); \\
            } \\
        } \\
    }
    #define IB_CONV_FROM(S) \\
        IB_CONV(S, BOOL) IB_CONV(S, I8) IB_CONV(S, U8) IB_CONV(S, I16) IB_CONV(S, U16) \\
        IB_CONV(S, I32) IB_CONV(S, U32) IB_CONV(S, I64) IB_CONV(S, U64) IB_CONV(S, F16) \\
        IB_CONV(S, F32) IB_CONV(S, F64)
    IB_CONV_FROM(BOOL) IB_CONV_FROM(I8) IB_CONV_FROM(U8) IB_CONV_FROM(I16) IB_CONV_FROM(U16)
    IB_CONV_FROM(I32) IB_CONV_FROM(U32) IB_CONV_FROM(I64) IB_CONV_FROM(U64) IB_CONV_FROM(F16)
    IB_CONV_FROM(F32) IB_CONV_FROM(F64)

    #define IB_ROW(S) { NULL, ib_conv_##S##_BOOL, ib_conv_##S##_I8, ib_conv_##S##_U8, \\
        ib_conv_##S##_I16, ib_conv_##S##_U16, ib_conv_##S##_I32, ib_conv_##S##_U32, \\
        ib_conv_##S##_I64, ib_conv_##S##_U64, ib_conv_##S##_F16, ib_conv_##S##_F32, \\
        ib_conv_##S##_F64 }
    static const ib_conv_fn ib_conv_table[IB_T_COUNT][IB_T_COUNT] = {
        { NULL }, IB_ROW(BOOL), IB_ROW(I8), IB_ROW(U8), IB_ROW(I16), IB_ROW(U16), IB_ROW(I32),
        IB_ROW(U32), IB_ROW(I64), IB_ROW(U64), IB_ROW(F16), IB_ROW(F32), IB_ROW(F64) };

    /* -- one planned conversion ---------------------------------------------------------- */

    typedef struct {
        ib_conv_fn fn;
        int src_swap, dst_swap;        /* that side is in the other byte order */
        Py_ssize_t src_size, dst_size;
    } ib_cast;

    static void ib_cast_plan(ib_cast *c, int s, int s_swapped, int d, int d_swapped) {
        c->fn = ib_conv_table[s][d];
        c->src_swap = s_swapped;
        c->dst_swap = d_swapped;
        c->src_size = ib_type_size[s];
        c->dst_size = ib_type_size[d];
    }

    /* Copy n elements of k bytes, reversing the bytes of each. */
    static void ib_swap_copy(char *d, Py_ssize_t ds, const char *s, Py_ssize_t ss,
                             Py_ssize_t n, Py_ssize_t k) {
        Py_ssize_t j, b;
        for (j = 0; j < n; j++)
            for (b = 0; b < k; b++)
                d[j * ds + b] = s[j * ss + k - 1 - b];
    }

    #define IB_CHUNK 256

    /* Convert a run of n elements (strides in bytes). A side in the other byte order goes
       through a small native buffer, a chunk at a time. */
    static void ib_cast_run(const ib_cast *c, char *d, Py_ssize_t ds, const char *s,
                            Py_ssize_t ss, Py_ssize_t n) {
        char sbuf[IB_CHUNK * 8], dbuf[IB_CHUNK * 8];
        Py_ssize_t m;
        if (!c->src_swap && !c->dst_swap) {
            c->fn(d, ds, s, ss, n);
            return;
        }
        while (n > 0) {
            const char *from = s;
            Py_ssize_t from_step = ss;
            m = n < IB_CHUNK ? n : IB_CHUNK;
            if (c->src_swap) {
                ib_swap_copy(sbuf, c->src_size, s, ss, m, c->src_size);
                from = sbuf;
                from_step = c->src_size;
            }
            if (c->dst_swap) {
                c->fn(dbuf, c->dst_size, from, from_step, m);
                ib_swap_copy(d, ds, dbuf, c->dst_size, m, c->dst_size);
            } else {
                c->fn(d, ds, from, from_step, m);
            }
            s += m * ss;
            d += m * ds;
            n -= m;
        }
    }
    """
    enum:
        IB_T_NONE
        IB_CASTING_NO
        IB_CASTING_EQUIV
        IB_CASTING_SAFE
        IB_CASTING_SAME_KIND
        IB_CASTING_UNSAFE
    ctypedef void (*ib_conv_fn)(char* d, Py_ssize_t ds, const char* s, Py_ssize_t ss,
                                Py_ssize_t n) noexcept nogil
    ctypedef struct ib_cast:
        ib_conv_fn fn
        int src_swap
        int dst_swap
        Py_ssize_t src_size
        Py_ssize_t dst_size
    const char* const* ib_type_name
    int ib_elem_type(const char* f, Py_ssize_t itemsize, int* swapped) noexcept nogil
    int ib_can_cast(int s, int s_swapped, int d, int d_swapped, int casting) noexcept nogil
    void ib_cast_plan(ib_cast* c, int s, int s_swapped, int d, int d_swapped) noexcept nogil
    void ib_cast_run(const ib_cast* c, char* d, Py_ssize_t ds, const char* s, Py_ssize_t ss,
                     Py_ssize_t n) noexcept nogil


# copy_from(cast=True): the bytes as they are (equal itemsizes), whatever the formats say.
cdef enum:
    _CAST_BYTES = 5

cdef tuple _CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")


cdef int _casting_code(object cast, object casting) except -1:
    """The copy mode of copy_from/copy_to(cast=, casting=): a NumPy casting name (default
    'same_kind', as numpy.copyto), or _CAST_BYTES for cast=True."""
    if casting is None:
        return _CAST_BYTES if cast else IB_CASTING_SAME_KIND
    if not isinstance(casting, str):
        raise TypeError(f"casting must be one of {', '.join(map(repr, _CASTINGS))}, not "
                        f"{type(casting).__name__}")
    casting = str.__str__(casting)  # an exact str: a subclass's __eq__ never runs
    if cast:
        raise ValueError(f"cast=True copies the bytes unchanged and takes no casting rule; "
                         f"got casting={casting!r}")
    try:
        return _CASTINGS.index(casting)
    except ValueError:
        raise ValueError(f"casting must be one of {', '.join(map(repr, _CASTINGS))}, got "
                         f"{casting!r}") from None


cdef str _type_text(int t, int swapped):
    order = " (other byte order)" if swapped else ""
    return f"{(<bytes>ib_type_name[t]).decode('ascii')}{order}"


cdef int _plan_conversion(Py_buffer* src, Py_buffer* dst, int casting,
                          ib_cast* plan) except -1:
    """1 and plan filled if casting allows converting elements of sfmt into dfmt, 2 if they
    are the same type in the same byte order (a copy of the bytes); 0 if either is not a
    convertible type (the caller decides); BufferError naming both formats and the casting
    that would allow it if the rule refuses."""
    cdef int s_swap = 0, d_swap = 0, c
    cdef int s = ib_elem_type(_format_of(src), src.itemsize, &s_swap)
    cdef int d = ib_elem_type(_format_of(dst), dst.itemsize, &d_swap)
    if s == IB_T_NONE or d == IB_T_NONE:
        return 0
    if not ib_can_cast(s, s_swap, d, d_swap, casting):
        for c in range(casting + 1, IB_CASTING_UNSAFE + 1):
            if ib_can_cast(s, s_swap, d, d_swap, c):
                break
        raise BufferError(
            f"format mismatch: cannot convert source {_describe(src)} "
            f"({_type_text(s, s_swap)}) into destination {_describe(dst)} "
            f"({_type_text(d, d_swap)}) with casting={_CASTINGS[casting]!r}; "
            f"casting={_CASTINGS[c]!r} allows it")
    if s == d and s_swap == d_swap:
        return 2
    ib_cast_plan(plan, s, s_swap, d, d_swap)
    return 1
