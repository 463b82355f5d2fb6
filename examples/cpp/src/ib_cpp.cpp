// ib_cpp: clib (a T** C library) bound with pybind11 and indirect_buffer_pybind11.h.
//
// Arguments are ib::table<T>: a checked table of rows of T, pinned while the call runs and
// given back when it returns or throws. ib::table<const double> reads anything 2-D (copying
// rows that are not contiguous); ib::table<double> and ib::table<unsigned char> write in place
// and refuse read-only memory. matrix_new returns a table clib allocated, owned by an
// IndirectMemory2D that calls ib_matrix_free once, after its last view.
#include <indirect_buffer_pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "ib_matrix.h"

namespace py = pybind11;

namespace {

size_t size(Py_ssize_t n) { return static_cast<size_t>(n); }

double matrix_sum(ib::table<const double> m)
{
    return ib_matrix_sum(m.data(), size(m.rows()), size(m.cols()));
}

void matrix_scale(ib::table<double> m, double factor)
{
    // Pinned: no other thread can release or reshape the memory while C runs without the GIL.
    py::gil_scoped_release nogil;
    ib_matrix_scale(m.data(), size(m.rows()), size(m.cols()), factor);
}

void image_invert(ib::table<unsigned char> image)
{
    // An H x W x 3 array is H rows of W * 3 bytes: cols() is the row's width in bytes.
    if (ib_image_invert(image.data(), size(image.rows()), size(image.cols())) != IB_OK)
        throw std::invalid_argument("ib_image_invert refused the image");
}

// Scales m so that its elements sum to 1. Throws (ValueError) after the table was acquired
// when the sum is 0 or not finite: the pin is given back all the same.
void matrix_normalize(ib::table<double> m)
{
    double sum = ib_matrix_sum(m.data(), size(m.rows()), size(m.cols()));
    if (sum == 0.0 || !std::isfinite(sum))
        throw std::domain_error("cannot normalize a matrix whose sum is " + std::to_string(sum));
    ib_matrix_scale(m.data(), size(m.rows()), size(m.cols()), 1.0 / sum);
}

py::object matrix_new(Py_ssize_t rows, Py_ssize_t cols)
{
    // clib returns NULL for a zero dimension too: refuse it first, so NULL means no memory.
    if (rows <= 0 || cols <= 0)
        throw std::invalid_argument("matrix shape must be positive, got (" +
                                    std::to_string(rows) + ", " + std::to_string(cols) + ")");
    double **table = ib_matrix_new(size(rows), size(cols));
    if (table == nullptr) {
        PyErr_Format(PyExc_MemoryError, "clib could not allocate a %zdx%zd matrix", rows, cols);
        throw py::error_already_set();
    }
    // From here on the wrapper owns the table, also if ib::wrap throws.
    return ib::wrap(table, rows, cols,
                    [](double **t, Py_ssize_t n) noexcept { ib_matrix_free(t, size(n)); });
}

// A clib-allocated copy of src. Refuses NaN and infinities (ValueError naming the element)
// while copying: the half-filled matrix is freed by its wrapper as the exception leaves.
py::object matrix_copy(ib::table<const double> src)
{
    py::object result = matrix_new(src.rows(), src.cols());
    ib::table<double> dst = ib::table<double>::acquire(result);
    for (Py_ssize_t i = 0; i < src.rows(); i++)
        for (Py_ssize_t j = 0; j < src.cols(); j++) {
            if (!std::isfinite(src[i][j]))
                throw std::domain_error("element (" + std::to_string(i) + ", " +
                                        std::to_string(j) + ") is not finite");
            dst[i][j] = src[i][j];
        }
    return result;
}

}  // namespace

PYBIND11_MODULE(ib_cpp, m)
{
    ib::import();  // an incompatible indirect_buffer fails here, at import
    m.doc() = "clib bound with pybind11 and indirect_buffer's C++ header";
    m.def("matrix_sum", &matrix_sum, "Sum of any 2-D buffer of doubles.");
    m.def("matrix_scale", &matrix_scale, "Multiply a writable 2-D buffer of doubles in place.",
          py::arg("m"), py::arg("factor"));
    m.def("image_invert", &image_invert, "Photographic negative of uint8 image rows, in place.");
    m.def("matrix_normalize", &matrix_normalize, "Scale in place so that the elements sum to 1.");
    m.def("matrix_new", &matrix_new, "A zeroed rows x cols matrix allocated by clib.",
          py::arg("rows"), py::arg("cols"));
    m.def("matrix_copy", &matrix_copy, "A clib-allocated copy of a 2-D buffer of doubles.");
    m.def("live_allocations", &ib_live_allocations, "Live allocations of this module's clib.");
    m.def("fail_allocations_after", &ib_fail_allocations_after,
          "Test hook: the next n clib allocations succeed, later ones fail (n < 0: never).");
}
