/*
 * indirect_buffer for pybind11 (C++17, header-only): T** arguments and return values.
 *
 *     #include <indirect_buffer_pybind11.h>
 *
 *     m.def("total", [](ib::table<const double> t) { ... t[i][j] ... });   // read-only
 *     m.def("scale", [](ib::table<double> t, double f) { ... });           // written in place
 *     return ib::wrap(c_table, rows, cols, [](double **p, Py_ssize_t r) noexcept { lib_free(p, r); });
 *
 * ib::table<T> is a move-only owner of an ib_table (see indirect_buffer.h): a checked table of
 * rows of T, pinned (its memory cannot be released or reshaped) until the ib::table is
 * destroyed. As an argument:
 *   - ib::table<T> (T not const) asks for writable memory with elements of T, viewed in place:
 *     an IndirectMemory2D, or a buffer whose rows are C-contiguous (a NumPy array: rows are
 *     a[i], later dimensions flattened). Writes reach the caller's object. A read-only object
 *     is a BufferError, another element type a TypeError, non-contiguous rows a BufferError.
 *   - ib::table<const T> asks for read-only access; when pybind11 allows conversions (the
 *     default, unless py::arg().noconvert()), objects that cannot be viewed in place (non-
 *     contiguous rows, nested lists) are copied (IB_COPY). Element types are never converted
 *     for buffers: an int array is a TypeError for ib::table<const double>.
 * Errors reach Python with the C API's own exception and message. With overloads, pybind11
 * first tries every overload without conversions (here: in place, no copy), so the one whose
 * element type matches wins; in its second pass a failing ib::table argument raises its error
 * instead of letting later overloads try a copy.
 *
 * T and its struct format: double "d", float "f", signed char "b", unsigned char "B", short
 * "h", unsigned short "H", int "i", unsigned int "I", long "l", unsigned long "L", long long
 * "q", unsigned long long "Q", bool "?", char "c" (plain char: a byte of text, as ctypes'
 * c_char; for small integers use int8_t or uint8_t). The <cstdint> types (int8_t ... uint64_t)
 * are aliases of these, and an element passes by its kind and size however its format is
 * spelt: ib::table<const int32_t> takes 'i', '=i', '<i' on a little-endian machine, and 'l'
 * where long has 32 bits, and refuses 'I' (unsigned) or 'q' (8 bytes) with a TypeError naming
 * both formats. Tables always have row offset 0.
 *
 * The GIL: acquiring and destroying a table needs it (a destructor that runs without it takes
 * it); the data may be used without it (py::gil_scoped_release) while the table lives.
 *
 * The C API is imported at the first conversion (once per translation unit); call
 * ib::import() in PYBIND11_MODULE to get an incompatible installation's ImportError at import.
 */
#ifndef INDIRECT_BUFFER_PYBIND11_H
#define INDIRECT_BUFFER_PYBIND11_H

#include <pybind11/pybind11.h>

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "indirect_buffer.h"

namespace ib {

namespace detail {

template <class T> struct format_of {
    static_assert(sizeof(T) == 0, "ib::table<T>: no struct format for this T (use double, "
                                  "float, the integer types, bool or char)");
};
template <> struct format_of<double> { static constexpr const char *value = "d"; };
template <> struct format_of<float> { static constexpr const char *value = "f"; };
template <> struct format_of<signed char> { static constexpr const char *value = "b"; };
template <> struct format_of<unsigned char> { static constexpr const char *value = "B"; };
template <> struct format_of<short> { static constexpr const char *value = "h"; };
template <> struct format_of<unsigned short> { static constexpr const char *value = "H"; };
template <> struct format_of<int> { static constexpr const char *value = "i"; };
template <> struct format_of<unsigned int> { static constexpr const char *value = "I"; };
template <> struct format_of<long> { static constexpr const char *value = "l"; };
template <> struct format_of<unsigned long> { static constexpr const char *value = "L"; };
template <> struct format_of<long long> { static constexpr const char *value = "q"; };
template <> struct format_of<unsigned long long> { static constexpr const char *value = "Q"; };
template <> struct format_of<bool> { static constexpr const char *value = "?"; };
template <> struct format_of<char> { static constexpr const char *value = "c"; };

/* The C API for this translation unit: imports it on first use. false with a Python
 * exception set if that fails. */
inline bool ensure_imported() { return ib_priv_capi != nullptr || ib_import() == 0; }

}  // namespace detail

/* The struct format of T (const ignored), e.g. ib::format_v<const double> is "d". */
template <class T>
inline constexpr const char *format_v = detail::format_of<std::remove_cv_t<T>>::value;

/* Import the C API now (in PYBIND11_MODULE); throws pybind11::error_already_set (ImportError). */
inline void import()
{
    if (ib_import() < 0)
        throw pybind11::error_already_set();
}

template <class T> class table {
    static_assert(!std::is_volatile_v<T>, "ib::table<T>: T must not be volatile");

public:
    using element_type = T;
    /* T ** for writable tables; for ib::table<const U>, const U *const *. */
    using pointer = std::conditional_t<std::is_const_v<T>, T *const *, T **>;
    using iterator = pointer;

    table() noexcept : t_() {}
    table(table &&other) noexcept : t_(other.t_) { other.t_ = ib_table(); }
    table &operator=(table &&other) noexcept
    {
        if (this != &other) {
            reset();
            t_ = other.t_;
            other.t_ = ib_table();
        }
        return *this;
    }
    table(const table &) = delete;
    table &operator=(const table &) = delete;
    ~table() { reset(); }

    /* obj's table, as the argument caster makes it (flags: 0 or IB_COPY, which const T
     * needs). Throws pybind11::error_already_set. */
    static table acquire(pybind11::handle obj, int flags = 0)
    {
        table result;
        if (!detail::ensure_imported() ||
            ib_table_acquire(obj.ptr(), format_v<T>, std::is_const_v<T> ? 0 : 1, 0, flags,
                             &result.t_) < 0)
            throw pybind11::error_already_set();
        return result;
    }

    /* Takes over an ib_table that ib_table_acquire() filled (for format_v<T>, writable unless
     * T is const, row offset 0): it is released with the returned table. */
    static table adopt(const ib_table &acquired) noexcept
    {
        table result;
        result.t_ = acquired;
        return result;
    }

    /* Unpin now (the table becomes empty). Takes the GIL if the caller does not hold it. */
    void reset() noexcept
    {
        if (t_.memory == nullptr)
            return;
        if (PyGILState_Check()) {
            ib_table_release(&t_);
        } else {
            PyGILState_STATE state = PyGILState_Ensure();
            ib_table_release(&t_);
            PyGILState_Release(state);
        }
    }

    explicit operator bool() const noexcept { return t_.memory != nullptr; }
    pointer data() const noexcept { return reinterpret_cast<pointer>(t_.table); }
    Py_ssize_t rows() const noexcept { return t_.rows; }
    Py_ssize_t cols() const noexcept { return t_.cols; }
    /* Row i (no bounds check). */
    T *operator[](Py_ssize_t i) const noexcept { return data()[i]; }
    iterator begin() const noexcept { return data(); }
    iterator end() const noexcept { return data() + t_.rows; }
    bool readonly() const noexcept { return t_.readonly != 0; }
    /* The pinned IndirectMemory2D (a view or copy of the argument, or the argument itself). */
    pybind11::handle memory() const noexcept { return t_.memory; }
    const ib_table &raw() const noexcept { return t_; }

private:
    ib_table t_;
};

namespace detail {

template <class T, class D>
void call_deallocator(void **table, Py_ssize_t rows, void *context) noexcept
{
    D *dealloc = static_cast<D *>(context);
    (*dealloc)(const_cast<T **>(reinterpret_cast<std::remove_const_t<T> **>(table)), rows);
    delete dealloc;
}

}  // namespace detail

/* A new IndirectMemory2D over a C-allocated rows x cols table of T (read-only if T is const)
 * that owns it: dealloc(table, rows) runs exactly once, after the wrapper and every view of it
 * are gone. dealloc is any callable, e.g. a lambda around a library's free function; it must be
 * noexcept and must not call Python. Ownership passes in every case: if wrap throws
 * (pybind11::error_already_set, e.g. ValueError for a NULL row), dealloc has already run. */
template <class T, class Dealloc>
pybind11::object wrap(T **table, Py_ssize_t rows, Py_ssize_t cols, Dealloc &&dealloc)
{
    using D = std::decay_t<Dealloc>;
    static_assert(std::is_nothrow_invocable_v<D &, T **, Py_ssize_t>,
                  "ib::wrap: dealloc must be callable as dealloc(T **table, Py_ssize_t rows) "
                  "and noexcept (it runs while Python frees an object)");
    void **untyped = reinterpret_cast<void **>(const_cast<std::remove_const_t<T> **>(table));
    D *context = new (std::nothrow) D(std::forward<Dealloc>(dealloc));
    if (context == nullptr) {
        if (table != nullptr)
            dealloc(table, rows);
        throw std::bad_alloc();
    }
    if (!detail::ensure_imported()) {
        if (table != nullptr)
            (*context)(table, rows);
        delete context;
        throw pybind11::error_already_set();
    }
    PyObject *mem = ib_wrap(untyped, rows, cols, format_v<T>, std::is_const_v<T> ? 1 : 0, 0,
                            &detail::call_deallocator<T, D>, context);
    if (mem == nullptr) {
        if (table == nullptr)
            delete context;  // nothing was called: the context is ours to free
        throw pybind11::error_already_set();
    }
    return pybind11::reinterpret_steal<pybind11::object>(mem);
}

/* Memory C lends to Python for a scope: a callback's buffer, a buffer valid "until the next
 * call". Wraps rows x cols of T (read-only if T is const) without copying the data and without
 * an owner; the destructor revokes the loan (ib_release): views Python code kept read a
 * private snapshot from then on, never the lent memory. Needs the GIL to be made and
 * destroyed. If a C call still pins the memory, the loan is revoked all the same and
 * BufferError says that call may still use the lent memory: the destructor reports it
 * through sys.unraisablehook, as it cannot throw.
 *
 *     void on_block(const int32_t *const *channels, int n, int samples, void *ctx) {
 *         pybind11::gil_scoped_acquire gil;
 *         ib::lent<const int32_t> block(channels, n, samples);
 *         callback(block.object());
 *     }  // revoked here */
template <class T> class lent {
public:
    lent(T *const *table, Py_ssize_t rows, Py_ssize_t cols)
    {
        if (!detail::ensure_imported())
            throw pybind11::error_already_set();
        void **untyped = reinterpret_cast<void **>(
            const_cast<std::remove_const_t<T> **>(table));
        memory_ = ib_wrap_borrowed(untyped, rows, cols, format_v<T>,
                                   std::is_const_v<T> ? 1 : 0, 0, nullptr);
        if (memory_ == nullptr)
            throw pybind11::error_already_set();
    }
    lent(const lent &) = delete;
    lent &operator=(const lent &) = delete;
    ~lent()
    {
        if (memory_ == nullptr)
            return;
        /* An exception may be on its way out (a callback that raised): keep it as it is. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (ib_release(memory_) < 0)
            PyErr_WriteUnraisable(memory_);
        PyErr_Restore(type, value, traceback);
        Py_DECREF(memory_);
    }

    /* The lent IndirectMemory2D to hand to Python code (a new reference each call). */
    pybind11::object object() const
    {
        return pybind11::reinterpret_borrow<pybind11::object>(memory_);
    }

    /* Revoke now (idempotent); throws pybind11::error_already_set if pinned. */
    void revoke()
    {
        if (ib_release(memory_) < 0)
            throw pybind11::error_already_set();
    }

private:
    PyObject *memory_ = nullptr;  // not a pybind11::object: those have hidden visibility
};

}  // namespace ib

namespace pybind11 {
namespace detail {

template <class T> struct type_caster<ib::table<T>> {
    PYBIND11_TYPE_CASTER(ib::table<T>, const_name("collections.abc.Buffer"));

    bool load(handle src, bool convert)
    {
        if (!ib::detail::ensure_imported())
            throw error_already_set();  // not a mismatch: say why
        int flags = (std::is_const_v<T> && convert) ? IB_COPY : 0;
        ib_table t;
        if (ib_table_acquire(src.ptr(), ib::format_v<T>, std::is_const_v<T> ? 0 : 1, 0, flags,
                             &t) < 0) {
            if (!convert) {
                PyErr_Clear();  // another overload may take it
                return false;
            }
            throw error_already_set();  // the precise reason, not "incompatible arguments"
        }
        value = ib::table<T>::adopt(t);
        return true;
    }

    /* Returned to Python, a table is its pinned memory (the pin ends with the ib::table). */
    static handle cast(const ib::table<T> &src, return_value_policy, handle)
    {
        handle memory = src.memory();
        return memory ? memory.inc_ref() : none().release();
    }
};

}  // namespace detail
}  // namespace pybind11

#endif /* INDIRECT_BUFFER_PYBIND11_H */
