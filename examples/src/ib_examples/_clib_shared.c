/* An empty CPython extension module whose only purpose is to carry a compiled copy of clib.
 *
 * setup.py compiles this file together with clib (ib_matrix.c, ib_stream.c), so the package
 * installs a shared object (ib_examples/_clib_shared.<abi>.so) that exports every ib_* symbol. ctypes_only.py
 * loads that file with ctypes.CDLL: users without a C toolchain of their own get the library
 * through the normal wheel/pip machinery, with no separate .so to build or ship. It is also
 * importable as a normal (empty) module, which is how ctypes_only.py finds its path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static struct PyModuleDef clib_shared_module = {
    PyModuleDef_HEAD_INIT,
    "_clib_shared",
    "A compiled copy of clib (ib_matrix), loaded with ctypes by ib_examples.ctypes_only.",
    0,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__clib_shared(void)
{
    return PyModule_Create(&clib_shared_module);
}
