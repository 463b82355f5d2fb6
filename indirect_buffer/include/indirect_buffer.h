/*
 * indirect_buffer C API: T** (tables of row pointers) from and to Python objects, from C or C++.
 *
 * Find this header with `python -c "import indirect_buffer; print(indirect_buffer.get_include())"`
 * and call ib_import() once, in your module's init function, before any other ib_* function:
 *
 *     PyMODINIT_FUNC PyInit_mymod(void) {
 *         if (ib_import() < 0) return NULL;
 *         return PyModule_Create(&mymod_def);
 *     }
 *
 * Nothing is linked: the functions live in indirect_buffer's extension module and are reached
 * through a table of function pointers that ib_import() fetches from its capsule. The pointer
 * to that table is static, one per translation unit: every .c/.cpp file that calls ib_*
 * functions calls ib_import() first (after the first import it is cheap).
 *
 * Versions: IB_CAPI_VERSION_MAJOR.IB_CAPI_VERSION_MINOR is the API this header describes. A
 * new major version may change anything; rebuild against it. Within one major version the
 * function table only grows at its end, each addition bumping the minor version, so a module
 * built against minor m runs on every installed minor >= m. ib_import() refuses (ImportError
 * naming both versions) an installed API of another major version or of a lower minor one.
 *
 * Conventions:
 *   - Every function needs the GIL. Only the fields of an acquired ib_table may be read
 *     without it, until ib_table_release() (which needs it again).
 *   - Errors: functions returning int return 0 on success and -1 with a Python exception set;
 *     functions returning PyObject* return a new reference, or NULL with an exception set.
 *     The exceptions are those of the Python API: TypeError (wrong element format, an object
 *     without a buffer), ValueError (negative sizes, unknown format, NULL arguments, released
 *     memory, a row offset other than the table's), BufferError (writable request on
 *     read-only memory, rows that cannot be viewed without a copy, changes while pinned),
 *     MemoryError (allocation failure, size overflow).
 *   - format is a struct format string for one element ("d", "i", "B", "<q", "2f", ...).
 *
 * C99 and C++ (any standard); includes Python.h.
 */
#ifndef INDIRECT_BUFFER_H
#define INDIRECT_BUFFER_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stddef.h>
#include <string.h>

/* Overridable only so that tests can pose as a module built against another version. */
#ifndef IB_CAPI_VERSION_MAJOR
#define IB_CAPI_VERSION_MAJOR 1
#endif
#ifndef IB_CAPI_VERSION_MINOR
#define IB_CAPI_VERSION_MINOR 1
#endif

/* The capsule ib_import() looks for: the attribute _C_API of indirect_buffer.buffer_impl. */
#define IB_CAPI_MODULE "indirect_buffer.buffer_impl"
#define IB_CAPI_CAPSULE_NAME "indirect_buffer.buffer_impl._C_API"

/* ib_table_acquire flags. IB_COPY: if obj cannot be viewed without a copy (rows that are not
 * contiguous, a sequence that is no buffer), acquire an owned read-only copy. Only for
 * read-only requests: writes to a copy would never reach obj, so a writable request that
 * would need one is refused (BufferError, or TypeError for an object without a buffer). */
#define IB_COPY 1

#ifdef __cplusplus
extern "C" {
#endif

/* A checked, pinned T**: row i starts at (char *)table[i] + row_offset and holds cols
 * elements of itemsize bytes each, of the struct format `format`. memory is a strong
 * reference to the pinned IndirectMemory2D behind the table (for a buffer that was viewed or
 * copied, a new one that holds it). While acquired, the memory cannot be released,
 * reinterpreted or made read-only (BufferError), so every field stays valid and may be read
 * without the GIL until ib_table_release(). Never writable if readonly is set. */
typedef struct ib_table {
    void **table;
    Py_ssize_t rows, cols, itemsize, row_offset;
    int readonly;
    const char *format;
    PyObject *memory;
} ib_table;

/* Frees a C-allocated table handed to ib_wrap(); runs once, must not call Python (it may
 * run while the interpreter is tearing down an object). */
typedef void (*ib_table_dealloc)(void **table, Py_ssize_t rows, void *context);

/* The function table in the capsule. Fields are only ever appended (see Versions above). */
typedef struct ib_capi {
    int version_major;
    int version_minor;
    size_t struct_size; /* sizeof the installed table: grows with the minor version */
    /* 1.0 */
    PyTypeObject *IndirectMemory2D_Type;
    int (*table_acquire)(PyObject *obj, const char *format, int writable, Py_ssize_t row_offset,
                         int flags, ib_table *out);
    void (*table_release)(ib_table *t);
    PyObject *(*create)(Py_ssize_t rows, Py_ssize_t cols, const char *format, int readonly);
    PyObject *(*wrap)(void **table, Py_ssize_t rows, Py_ssize_t cols, const char *format,
                      int readonly, Py_ssize_t row_offset, ib_table_dealloc dealloc,
                      void *context);
    PyObject *(*wrap_borrowed)(void **table, Py_ssize_t rows, Py_ssize_t cols,
                               const char *format, int readonly, Py_ssize_t row_offset,
                               PyObject *owner);
    int (*check)(PyObject *obj);
    /* 1.1 */
    int (*release)(PyObject *memory);
} ib_capi;

/* What every 1.x API has (its struct_size is at least this). */
#define IB_PRIV_CAPI_SIZE_1_0 (offsetof(ib_capi, check) + sizeof(int (*)(PyObject *)))
#define IB_PRIV_CAPI_SIZE_1_1 (offsetof(ib_capi, release) + sizeof(int (*)(PyObject *)))

/* This translation unit's pointer to the installed table; NULL until ib_import() succeeds. */
static const ib_capi *ib_priv_capi = NULL;

/* Import indirect_buffer and fetch its C API. 0 on success; -1 with an exception set
 * (ImportError if indirect_buffer or its C API is missing or of an incompatible version). */
static inline int ib_import(void)
{
    PyObject *module, *capsule;
    const ib_capi *api;
    ib_priv_capi = NULL;
    module = PyImport_ImportModule(IB_CAPI_MODULE);
    if (module == NULL)
        return -1;
    capsule = PyObject_GetAttrString(module, "_C_API");
    Py_DECREF(module);
    if (capsule == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ImportError,
                         "the installed indirect_buffer has no C API (" IB_CAPI_MODULE
                         "._C_API is missing); this module was built against C API %d.%d",
                         IB_CAPI_VERSION_MAJOR, IB_CAPI_VERSION_MINOR);
        }
        return -1;
    }
    /* The table is a static of indirect_buffer's extension module, which is never unloaded:
     * the pointer outlives the capsule. */
    api = (const ib_capi *)PyCapsule_GetPointer(capsule, IB_CAPI_CAPSULE_NAME);
    Py_DECREF(capsule);
    if (api == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ImportError,
                        IB_CAPI_MODULE "._C_API is not a capsule named " IB_CAPI_CAPSULE_NAME);
        return -1;
    }
    if (api->version_major != IB_CAPI_VERSION_MAJOR) {
        PyErr_Format(PyExc_ImportError,
                     "indirect_buffer C API %d.%d is installed, but this module was built "
                     "against C API %d.%d: the major versions differ, rebuild the module "
                     "against the installed indirect_buffer",
                     api->version_major, api->version_minor, IB_CAPI_VERSION_MAJOR,
                     IB_CAPI_VERSION_MINOR);
        return -1;
    }
    if (api->version_minor < IB_CAPI_VERSION_MINOR || api->struct_size < IB_PRIV_CAPI_SIZE_1_0) {
        PyErr_Format(PyExc_ImportError,
                     "indirect_buffer C API %d.%d is installed, but this module was built "
                     "against C API %d.%d and needs %d.%d or a later %d.x: upgrade "
                     "indirect_buffer",
                     api->version_major, api->version_minor, IB_CAPI_VERSION_MAJOR,
                     IB_CAPI_VERSION_MINOR, IB_CAPI_VERSION_MAJOR, IB_CAPI_VERSION_MINOR,
                     IB_CAPI_VERSION_MAJOR);
        return -1;
    }
    ib_priv_capi = api;
    return 0;
}

static inline void ib_priv_not_imported(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "indirect_buffer C API not imported in this translation unit: call "
                    "ib_import() first");
}

/* A checked, pinned table of obj's elements, in *out; 0 on success, -1 with an exception set
 * (and *out zeroed) on failure. Release it with ib_table_release(out).
 *
 * obj: an IndirectMemory2D, or any buffer exporter (a NumPy array of 1 to N dimensions whose
 * rows are C-contiguous, a PIL-style buffer, a bytearray...), viewed without a copy: row i is
 * obj[i] (all later dimensions flattened; a 1-D buffer is one row). With IB_COPY in flags and
 * writable 0, anything that cannot be viewed so (non-contiguous rows, a nested sequence:
 * needs NumPy) is copied instead (a sequence's values are converted to format; a buffer keeps
 * its element type).
 * The same checks as the Cython typed accessors: format, if not NULL, must describe the
 * element type (TypeError; NULL accepts any); writable 1 needs writable memory (BufferError);
 * row_offset must be the table's (ValueError; 0 unless the memory was wrapped with one);
 * released memory is a ValueError. NULL obj or out, or unknown flags, is a ValueError. */
static inline int ib_table_acquire(PyObject *obj, const char *format, int writable,
                                   Py_ssize_t row_offset, int flags, ib_table *out)
{
    if (ib_priv_capi == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        ib_priv_not_imported();
        return -1;
    }
    return ib_priv_capi->table_acquire(obj, format, writable, row_offset, flags, out);
}

/* Unpin the memory and drop the reference; zeroes *t. Safe on a zeroed or already released
 * ib_table, and on NULL; never raises (an exception already set stays as it was). */
static inline void ib_table_release(ib_table *t)
{
    if (ib_priv_capi != NULL)
        ib_priv_capi->table_release(t);
}

/* A new owned, zero-initialised rows x cols IndirectMemory2D (as create_memory()), or NULL. */
static inline PyObject *ib_create(Py_ssize_t rows, Py_ssize_t cols, const char *format,
                                  int readonly)
{
    if (ib_priv_capi == NULL) {
        ib_priv_not_imported();
        return NULL;
    }
    return ib_priv_capi->create(rows, cols, format, readonly);
}

/* A new IndirectMemory2D over a C-allocated table, which it owns: dealloc(table, rows,
 * context) runs exactly once, after the wrapper and every view exported from it are gone (or
 * at its release()). Ownership of table passes to this call in every case: if it fails
 * (NULL with an exception set) it has already called dealloc, unless table is NULL (nothing
 * to free) or dealloc is NULL (a ValueError: use ib_wrap_borrowed for memory that something
 * else frees). Rows start row_offset bytes after table[i]; a NULL row is refused when
 * cols > 0. */
static inline PyObject *ib_wrap(void **table, Py_ssize_t rows, Py_ssize_t cols,
                                const char *format, int readonly, Py_ssize_t row_offset,
                                ib_table_dealloc dealloc, void *context)
{
    if (ib_priv_capi == NULL) {
        if (table != NULL && dealloc != NULL)
            dealloc(table, rows, context); /* ownership passes in every case, this one too */
        ib_priv_not_imported();
        return NULL;
    }
    return ib_priv_capi->wrap(table, rows, cols, format, readonly, row_offset, dealloc, context);
}

/* Like ib_wrap, but frees nothing: owner (NULL or None for nothing) is kept alive as long as
 * the wrapper and its views live; whatever keeps the table valid must be owner or outlive
 * them. Without an owner the memory is lent (1.1): it is valid until ib_release(), which
 * the caller makes before the table stops being valid (views Python code kept then read a
 * snapshot); the wrapper exports its own copy of the row pointers. On failure
 * nothing is freed. */
static inline PyObject *ib_wrap_borrowed(void **table, Py_ssize_t rows, Py_ssize_t cols,
                                         const char *format, int readonly,
                                         Py_ssize_t row_offset, PyObject *owner)
{
    if (ib_priv_capi == NULL) {
        ib_priv_not_imported();
        return NULL;
    }
    return ib_priv_capi->wrap_borrowed(table, rows, cols, format, readonly, row_offset, owner);
}

/* 1 if obj is an IndirectMemory2D (or a subclass, e.g. BufferCollection2D), 0 otherwise
 * (also for NULL); -1 with an exception set only before ib_import(). */
static inline int ib_check(PyObject *obj)
{
    if (ib_priv_capi == NULL) {
        ib_priv_not_imported();
        return -1;
    }
    return ib_priv_capi->check(obj);
}

/* 1.1: release memory (an IndirectMemory, IndirectMemory2D or subclass), as its release()
 * does. For lent memory -- wrapped by ib_wrap_borrowed with a NULL (or None) owner -- this
 * revokes the loan: call it before the table stops being valid (at the end of a callback,
 * before the next call of an API whose buffer is valid "until the next call"). Views still
 * out then read a private snapshot of the data as it was, never the lent memory. 0 on
 * success (also if already released); -1 with an exception set: BufferError if a C call
 * pinned the memory (the loan is revoked all the same, but that call may still use the lent
 * memory: do not free it before the call returns) or, for memory that is not lent, while
 * exported (nothing changed); TypeError for anything else. An exception already set when it
 * is called (a callback that raised) is kept: the memory is released all the same, and if
 * that fails too, its error goes to sys.unraisablehook (and -1 is returned). */
static inline int ib_release(PyObject *memory)
{
    if (ib_priv_capi == NULL) {
        ib_priv_not_imported();
        return -1;
    }
    return ib_priv_capi->release(memory);
}

#ifdef __cplusplus
}
#endif

#endif /* INDIRECT_BUFFER_H */
