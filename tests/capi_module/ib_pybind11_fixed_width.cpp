// The <cstdint> element types through indirect_buffer_pybind11.h, for tests/test_fixed_width.py:
// ib::table<T> and ib::table<const T> arguments, ib::lent<const T> over a `const T *const *`
// table, ib::wrap of a T** table, for every fixed-width integer type (and plain char, 'c').
#include <indirect_buffer_pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace py = pybind11;

// A const table reads through `const T *const *`, the type C APIs declare for read-only input.
static_assert(std::is_same_v<decltype(std::declval<ib::table<const std::int32_t> &>().data()),
                             const std::int32_t *const *>);
static_assert(std::is_same_v<decltype(std::declval<ib::table<std::uint16_t> &>().data()),
                             std::uint16_t **>);
// Plain char is its own type (neither signed char nor unsigned char): the struct format 'c'.
static_assert(std::string_view(ib::format_v<char>) == "c");
static_assert(std::string_view(ib::format_v<const char>) == "c");

static long frees;

// An element as a Python int (char too: its byte value, whatever char's signedness).
template <class T> py::object to_python(T v)
{
    if constexpr (std::is_same_v<T, char>)
        return py::int_(static_cast<unsigned char>(v));
    else
        return py::int_(v);
}

template <class T> py::list rows_of(const ib::table<T> &t)
{
    py::list out;
    for (auto row : t) {
        py::list r;
        for (Py_ssize_t j = 0; j < t.cols(); j++)
            r.append(to_python(row[j]));
        out.append(r);
    }
    return out;
}

// A read-only C API, as libraries declare it.
template <class T> py::list lib_read(const T *const *table, Py_ssize_t rows, Py_ssize_t cols)
{
    py::list out;
    for (Py_ssize_t i = 0; i < rows; i++) {
        py::list r;
        for (Py_ssize_t j = 0; j < cols; j++)
            r.append(to_python(table[i][j]));
        out.append(r);
    }
    return out;
}

// A C API that writes: every element becomes its bitwise complement.
template <class T> void lib_invert(T **table, Py_ssize_t rows, Py_ssize_t cols)
{
    for (Py_ssize_t i = 0; i < rows; i++)
        for (Py_ssize_t j = 0; j < cols; j++)
            table[i][j] = static_cast<T>(~table[i][j]);
}

// Sample values with the sign bit and the extremes: i * cols + j spread over the type's range.
template <class T> T sample(Py_ssize_t i, Py_ssize_t j, Py_ssize_t cols)
{
    using U = std::make_unsigned_t<T>;
    const Py_ssize_t k = i * cols + j;
    if (k == 0)
        return std::numeric_limits<T>::min();
    if (k == 1)
        return std::numeric_limits<T>::max();
    const U spread = static_cast<U>(0x9E3779B97F4A7C15ull);  // a golden-ratio multiplier
    return static_cast<T>(static_cast<U>(static_cast<U>(k) * spread));
}

template <class T> void def_type(py::module_ &m, const std::string &name)
{
    m.def(("format_" + name).c_str(), [] { return std::string(ib::format_v<T>); });
    m.def(("size_" + name).c_str(), [] { return sizeof(T); });
    m.def(("signed_" + name).c_str(), [] { return std::is_signed_v<T>; });
    // ib::table<const T>: read (through the const API), copying when conversions are allowed.
    m.def(("read_const_" + name).c_str(), [](ib::table<const T> t) {
        const T *const *data = t.data();
        return py::make_tuple(lib_read<T>(data, t.rows(), t.cols()), t.readonly());
    });
    // ib::table<T>: writable, in place.
    m.def(("read_" + name).c_str(), [](ib::table<T> t) { return rows_of(t); });
    m.def(("invert_" + name).c_str(), [](ib::table<T> t) {
        T **data = t.data();
        lib_invert<T>(data, t.rows(), t.cols());
    });
    // ib::lent<const T> over a table C hands out as `const T *const *`: callback(memory).
    m.def(("lend_" + name).c_str(), [](py::function callback, Py_ssize_t rows, Py_ssize_t cols) {
        std::vector<std::vector<T>> data(static_cast<size_t>(rows),
                                         std::vector<T>(static_cast<size_t>(cols)));
        std::vector<const T *> pointers;
        for (Py_ssize_t i = 0; i < rows; i++) {
            for (Py_ssize_t j = 0; j < cols; j++)
                data[size_t(i)][size_t(j)] = sample<T>(i, j, cols);
            pointers.push_back(data[size_t(i)].data());
        }
        const T *const *table = pointers.data();
        py::list seen = lib_read<T>(table, rows, cols);
        {
            ib::lent<const T> block(table, rows, cols);
            callback(block.object());
        }  // revoked: kept views read a snapshot from here on
        // Scribble over the lent data: a view that still read it would see these.
        for (auto &row : data)
            for (auto &v : row)
                v = static_cast<T>(~v);
        return seen;
    });
    // ib::wrap of a C-allocated T** (one malloc per row) with sample values.
    m.def(("wrap_" + name).c_str(), [](Py_ssize_t rows, Py_ssize_t cols) {
        T **table = static_cast<T **>(std::calloc(rows > 0 ? size_t(rows) : 1, sizeof(T *)));
        for (Py_ssize_t i = 0; i < rows; i++) {
            table[i] = static_cast<T *>(std::calloc(cols > 0 ? size_t(cols) : 1, sizeof(T)));
            for (Py_ssize_t j = 0; j < cols; j++)
                table[i][j] = sample<T>(i, j, cols);
        }
        return ib::wrap(table, rows, cols, [counter = &frees](T **t, Py_ssize_t n) noexcept {
            for (Py_ssize_t i = 0; i < n; i++)
                std::free(t[i]);
            std::free(t);
            ++*counter;
        });
    });
}

PYBIND11_MODULE(ib_pybind11_fixed_width, m)
{
    def_type<std::int8_t>(m, "int8");
    def_type<std::int16_t>(m, "int16");
    def_type<std::int32_t>(m, "int32");
    def_type<std::int64_t>(m, "int64");
    def_type<std::uint8_t>(m, "uint8");
    def_type<std::uint16_t>(m, "uint16");
    def_type<std::uint32_t>(m, "uint32");
    def_type<std::uint64_t>(m, "uint64");
    def_type<char>(m, "char");
    m.def("frees", [] { return frees; });
}
