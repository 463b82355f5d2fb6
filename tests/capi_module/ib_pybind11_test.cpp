// Drives indirect_buffer_pybind11.h beyond examples/cpp, for tests/test_cpp_example.py: every
// element type, const tables, overloads, noconvert, moves, returning a table, ib::wrap.
#include <indirect_buffer_pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace py = pybind11;

// data() of a const table cannot write; of a writable one it can.
static_assert(std::is_same_v<decltype(std::declval<ib::table<const double> &>().data()),
                             const double *const *>);
static_assert(std::is_same_v<decltype(std::declval<ib::table<double> &>().data()), double **>);
static_assert(!std::is_copy_constructible_v<ib::table<double>>);
static_assert(std::is_nothrow_move_constructible_v<ib::table<double>>);
// Fixed-width aliases map through the C types.
static_assert(std::string_view(ib::format_v<std::int32_t>) == "i");
static_assert(std::string_view(ib::format_v<const std::uint8_t>) == "B");

static long frees;

// (rows, cols, format, readonly, sum of the elements as double)
template <class T> py::tuple describe(ib::table<T> t)
{
    double sum = 0.0;
    for (auto row : t)
        for (Py_ssize_t j = 0; j < t.cols(); j++)
            sum += static_cast<double>(row[j]);
    return py::make_tuple(t.rows(), t.cols(), std::string(t.raw().format), t.readonly(), sum);
}

template <class T> void def_type(py::module_ &m, const char *name)
{
    m.def((std::string("describe_") + name).c_str(), &describe<T>);
    m.def((std::string("describe_const_") + name).c_str(), &describe<const T>);
}

PYBIND11_MODULE(ib_pybind11_test, m)
{
    def_type<double>(m, "double");
    def_type<float>(m, "float");
    def_type<signed char>(m, "schar");
    def_type<unsigned char>(m, "uchar");
    def_type<short>(m, "short");
    def_type<unsigned short>(m, "ushort");
    def_type<int>(m, "int");
    def_type<unsigned int>(m, "uint");
    def_type<long>(m, "long");
    def_type<unsigned long>(m, "ulong");
    def_type<long long>(m, "longlong");
    def_type<unsigned long long>(m, "ulonglong");
    def_type<std::int64_t>(m, "int64");
    def_type<bool>(m, "bool");

    // Overloads: the no-convert pass picks the one whose element type matches in place; the
    // convert pass (copies) stops at the first overload's error.
    m.def("kind", [](ib::table<const double>) { return "double"; });
    m.def("kind", [](ib::table<const int>) { return "int"; });

    // noconvert: no copy, and a mismatch is "incompatible function arguments".
    m.def("strict_rows", [](ib::table<const double> t) { return t.rows(); },
          py::arg("t").noconvert());

    // The pin moves with the table; the moved-from table is empty.
    m.def("move_and_count", [](ib::table<double> t) {
        ib::table<double> other(std::move(t));
        ib::table<double> third;
        third = std::move(other);
        return py::make_tuple(static_cast<bool>(t), static_cast<bool>(other),
                              static_cast<bool>(third), third.rows());
    });
    // Returned to Python, a table is its memory.
    m.def("identity", [](ib::table<const double> t) { return t; });
    m.def("reset_then_export_count", [](ib::table<double> t) {
        py::object mem = py::reinterpret_borrow<py::object>(t.memory());
        t.reset();
        return mem.attr("export_count");
    });
    m.def("acquire", [](py::handle obj, bool copy) {
        auto t = ib::table<const double>::acquire(obj, copy ? IB_COPY : 0);
        return py::make_tuple(t.rows(), t.cols());
    });
    m.def("sum_without_gil", [](ib::table<const double> t) {
        double s = 0.0;
        {
            py::gil_scoped_release nogil;
            for (const double *row : t)
                for (Py_ssize_t j = 0; j < t.cols(); j++)
                    s += row[j];
        }
        return s;
    });

    // ib::wrap with a capturing deallocator; frees() counts its runs.
    m.def("wrap", [](Py_ssize_t rows, Py_ssize_t cols, bool readonly, bool null_row) {
        double **table = static_cast<double **>(std::calloc(rows > 0 ? size_t(rows) : 1,
                                                            sizeof(double *)));
        for (Py_ssize_t i = 0; i < rows; i++) {
            table[i] = static_cast<double *>(std::calloc(size_t(cols), sizeof(double)));
            for (Py_ssize_t j = 0; j < cols; j++)
                table[i][j] = double(i * cols + j);
        }
        if (null_row && rows > 0) {
            std::free(table[rows - 1]);
            table[rows - 1] = nullptr;
        }
        auto dealloc = [counter = &frees](double **t, Py_ssize_t n) noexcept {
            for (Py_ssize_t i = 0; i < n; i++)
                std::free(t[i]);
            std::free(t);
            ++*counter;
        };
        if (readonly)
            return ib::wrap(const_cast<const double **>(table), rows, cols,
                            [dealloc](const double **t, Py_ssize_t n) noexcept {
                                dealloc(const_cast<double **>(t), n);
                            });
        return ib::wrap(table, rows, cols, dealloc);
    });
    m.def("frees", [] { return frees; });
}
