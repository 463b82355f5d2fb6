/* A plain C extension module that drives every function of indirect_buffer's C API
 * (include/indirect_buffer.h), error paths included, for tests/test_capi.py.
 *
 * Counters that the test reads (counters()) prove that C-allocated tables are freed exactly
 * once: live_blocks counts this module's malloc'd blocks, dealloc_calls the deallocator's
 * runs, bad_context the runs that got a context other than the one given to ib_wrap.
 */
#include <indirect_buffer.h>

#include <stdint.h>
#include <stdlib.h>

/* ib_capi_noimport.c: the wrappers of a translation unit that never called ib_import(). */
PyObject *ib_capi_test_noimport(void);

static long live_blocks;
static long dealloc_calls;
static long bad_context;
static long owner_frees;
static int context_tag; /* its address is the context every ib_wrap here passes */

static void *counted_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p != NULL)
        live_blocks++;
    return p;
}

static void counted_free(void *p)
{
    if (p != NULL) {
        live_blocks--;
        free(p);
    }
}

/* Rows of cols doubles each, starting row_offset bytes into their block; element (i, j) is
 * i * cols + j. n_rows < 0 allocates an empty table, cols < 0 rows that are NULL. */
static void **new_table(Py_ssize_t n_rows, Py_ssize_t cols, Py_ssize_t row_offset)
{
    Py_ssize_t i, j, n = n_rows > 0 ? n_rows : 0;
    void **table = (void **)counted_malloc((size_t)n * sizeof(void *));
    if (table == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        char *row = cols < 0 ? NULL : (char *)counted_malloc(
            (size_t)(row_offset + cols * (Py_ssize_t)sizeof(double)));
        table[i] = row;
        if (row == NULL)
            continue; /* the caller checks (free_table frees what there is) */
        for (j = 0; j < cols; j++)
            ((double *)(row + row_offset))[j] = (double)(i * cols + j);
    }
    return table;
}

static void free_table(void **table, Py_ssize_t rows)
{
    Py_ssize_t i;
    if (table == NULL)
        return;
    for (i = 0; i < rows; i++)
        counted_free(table[i]);
    counted_free(table);
}

/* The ib_table_dealloc handed to ib_wrap: no Python here. */
static void test_dealloc(void **table, Py_ssize_t rows, void *context)
{
    dealloc_calls++;
    if (context != &context_tag)
        bad_context++;
    free_table(table, rows);
}

/* -- acquired tables, held by a capsule ------------------------------------------------------ */

#define HANDLE "ib_capi_test.handle"

static void handle_destructor(PyObject *capsule)
{
    ib_table *t = (ib_table *)PyCapsule_GetPointer(capsule, HANDLE);
    ib_table_release(t); /* a no-op if release() ran already */
    free(t);
}

static ib_table *handle_table(PyObject *capsule)
{
    return (ib_table *)PyCapsule_GetPointer(capsule, HANDLE);
}

static int is_zeroed(const ib_table *t)
{
    const unsigned char *p = (const unsigned char *)t;
    size_t i;
    for (i = 0; i < sizeof(*t); i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static const char *format_arg(PyObject *format)
{
    return format == Py_None ? NULL : PyBytes_AsString(format);
}

/* acquire(obj, format: bytes | None, writable, row_offset, flags) -> handle capsule.
 * obj None passes NULL. On failure *out must come back zeroed (it starts as garbage). */
static PyObject *acquire(PyObject *self, PyObject *args)
{
    PyObject *obj, *format, *capsule;
    int writable, flags;
    Py_ssize_t row_offset;
    ib_table *t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOini", &obj, &format, &writable, &row_offset, &flags))
        return NULL;
    if (format != Py_None && !PyBytes_Check(format))
        return PyErr_Format(PyExc_TypeError, "format must be bytes or None");
    t = (ib_table *)malloc(sizeof(*t));
    if (t == NULL)
        return PyErr_NoMemory();
    memset(t, 0xAB, sizeof(*t));
    if (ib_table_acquire(obj == Py_None ? NULL : obj, format_arg(format), writable, row_offset,
                         flags, t) < 0) {
        int zeroed = is_zeroed(t);
        free(t);
        if (!zeroed) {
            PyErr_Clear();
            PyErr_SetString(PyExc_AssertionError, "ib_table_acquire failed without zeroing out");
        }
        return NULL;
    }
    capsule = PyCapsule_New(t, HANDLE, handle_destructor);
    if (capsule == NULL) {
        ib_table_release(t);
        free(t);
    }
    return capsule;
}

/* acquire_null_out(obj): ib_table_acquire(obj, NULL, 0, 0, 0, NULL). */
static PyObject *acquire_null_out(PyObject *self, PyObject *obj)
{
    (void)self;
    if (ib_table_acquire(obj, NULL, 0, 0, 0, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *fields(PyObject *self, PyObject *capsule)
{
    ib_table *t = handle_table(capsule);
    (void)self;
    if (t == NULL)
        return NULL;
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:i,s:y,s:O,s:K}", "rows", t->rows, "cols", t->cols,
                         "itemsize", t->itemsize, "row_offset", t->row_offset, "readonly",
                         t->readonly, "format", t->format ? t->format : "",
                         "memory", t->memory ? t->memory : Py_None, "table",
                         (unsigned long long)(uintptr_t)t->table);
}

/* rows_bytes(handle) -> [bytes of row i]: what C reads through the table. */
static PyObject *rows_bytes(PyObject *self, PyObject *capsule)
{
    ib_table *t = handle_table(capsule);
    PyObject *list, *row;
    Py_ssize_t i;
    (void)self;
    if (t == NULL)
        return NULL;
    if (t->memory == NULL)
        return PyErr_Format(PyExc_ValueError, "the table was released");
    list = PyList_New(t->rows);
    if (list == NULL)
        return NULL;
    for (i = 0; i < t->rows; i++) {
        row = PyBytes_FromStringAndSize((const char *)t->table[i] + t->row_offset,
                                        t->cols * t->itemsize);
        if (row == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, row);
    }
    return list;
}

/* write_double(handle, i, j, value): element (i, j) of a writable 'd' table. */
static PyObject *write_double(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    Py_ssize_t i, j;
    double value;
    ib_table *t;
    (void)self;
    if (!PyArg_ParseTuple(args, "Onnd", &capsule, &i, &j, &value))
        return NULL;
    t = handle_table(capsule);
    if (t == NULL)
        return NULL;
    if (t->memory == NULL || t->readonly || t->itemsize != (Py_ssize_t)sizeof(double) ||
        i < 0 || i >= t->rows || j < 0 || j >= t->cols)
        return PyErr_Format(PyExc_ValueError, "cannot write (%zd, %zd) here", i, j);
    ((double *)((char *)t->table[i] + t->row_offset))[j] = value;
    Py_RETURN_NONE;
}

static PyObject *release(PyObject *self, PyObject *capsule)
{
    ib_table *t = handle_table(capsule);
    (void)self;
    if (t == NULL)
        return NULL;
    ib_table_release(t);
    if (!is_zeroed(t))
        return PyErr_Format(PyExc_AssertionError, "ib_table_release left fields set");
    Py_RETURN_NONE;
}

/* release_edge_cases(): NULL, a zeroed table, a table released twice; with an exception set
 * meanwhile, which must survive. Returns True if all held. */
static PyObject *release_edge_cases(PyObject *self, PyObject *obj)
{
    ib_table t;
    PyObject *type, *value, *tb;
    int ok;
    (void)self;
    memset(&t, 0, sizeof(t));
    ib_table_release(NULL);
    ib_table_release(&t);
    if (ib_table_acquire(obj, NULL, 0, 0, 0, &t) < 0)
        return NULL;
    PyErr_SetString(PyExc_KeyError, "kept");
    ib_table_release(&t);
    ib_table_release(&t);
    ok = is_zeroed(&t) && PyErr_ExceptionMatches(PyExc_KeyError);
    PyErr_Fetch(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return PyBool_FromLong(ok);
}

/* sum_nogil(obj, flags): the sum of a read-only 'd' table, computed without the GIL. */
static PyObject *sum_nogil(PyObject *self, PyObject *args)
{
    PyObject *obj;
    int flags;
    ib_table t;
    double sum = 0.0;
    Py_ssize_t i, j;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oi", &obj, &flags))
        return NULL;
    if (ib_table_acquire(obj, "d", 0, 0, flags, &t) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < t.rows; i++) {
        const double *row = (const double *)((const char *)t.table[i] + t.row_offset);
        for (j = 0; j < t.cols; j++)
            sum += row[j];
    }
    Py_END_ALLOW_THREADS
    ib_table_release(&t);
    return PyFloat_FromDouble(sum);
}

/* -- create, wrap, wrap_borrowed, check ------------------------------------------------------ */

static PyObject *create(PyObject *self, PyObject *args)
{
    Py_ssize_t rows, cols;
    PyObject *format;
    int readonly;
    (void)self;
    if (!PyArg_ParseTuple(args, "nnOi", &rows, &cols, &format, &readonly))
        return NULL;
    if (format != Py_None && !PyBytes_Check(format))
        return PyErr_Format(PyExc_TypeError, "format must be bytes or None");
    return ib_create(rows, cols, format_arg(format), readonly);
}

/* wrap_new(rows, cols, format, readonly, row_offset, mode): a C-allocated table of doubles
 * (element (i, j) = i * cols + j) handed to ib_wrap. mode: "ok"; "null_table"; "null_dealloc"
 * (then this function frees the table itself: ib_wrap could not); "null_row" (the last row
 * is NULL). */
static PyObject *wrap_new(PyObject *self, PyObject *args)
{
    Py_ssize_t rows, cols, row_offset;
    PyObject *format, *result;
    const char *mode;
    int readonly;
    void **table;
    (void)self;
    if (!PyArg_ParseTuple(args, "nnOins", &rows, &cols, &format, &readonly, &row_offset, &mode))
        return NULL;
    if (format != Py_None && !PyBytes_Check(format))
        return PyErr_Format(PyExc_TypeError, "format must be bytes or None");
    if (strcmp(mode, "null_table") == 0)
        return ib_wrap(NULL, rows, cols, format_arg(format), readonly, row_offset, test_dealloc,
                       &context_tag);
    table = new_table(rows, cols, row_offset > 0 ? row_offset : 0); /* < 0 is for ib_wrap to refuse */
    if (table == NULL)
        return PyErr_NoMemory();
    if (strcmp(mode, "null_row") == 0 && rows > 0) {
        counted_free(table[rows - 1]);
        table[rows - 1] = NULL;
    }
    if (strcmp(mode, "null_dealloc") == 0) {
        result = ib_wrap(table, rows, cols, format_arg(format), readonly, row_offset, NULL,
                         &context_tag);
        if (result == NULL)
            free_table(table, rows); /* not freed by ib_wrap: there was nothing to call */
        return result;
    }
    return ib_wrap(table, rows, cols, format_arg(format), readonly, row_offset, test_dealloc,
                   &context_tag);
}

static void owner_destructor(PyObject *capsule)
{
    void **table = (void **)PyCapsule_GetPointer(capsule, NULL);
    Py_ssize_t rows = (Py_ssize_t)(intptr_t)PyCapsule_GetContext(capsule);
    owner_frees++;
    free_table(table, rows);
}

/* wrap_borrowed_owned(rows, cols, format): a C table owned by a capsule (which frees it), handed
 * to ib_wrap_borrowed with the capsule as owner; this function drops its own reference. */
static PyObject *wrap_borrowed_owned(PyObject *self, PyObject *args)
{
    Py_ssize_t rows, cols;
    const char *format;
    PyObject *owner, *result;
    void **table;
    (void)self;
    if (!PyArg_ParseTuple(args, "nny", &rows, &cols, &format))
        return NULL;
    table = new_table(rows, cols, 0);
    if (table == NULL)
        return PyErr_NoMemory();
    owner = PyCapsule_New(table, NULL, owner_destructor);
    if (owner == NULL || PyCapsule_SetContext(owner, (void *)(intptr_t)rows) < 0) {
        if (owner == NULL)
            free_table(table, rows);
        Py_XDECREF(owner);
        return NULL;
    }
    result = ib_wrap_borrowed(table, rows, cols, format, 0, 0, owner);
    Py_DECREF(owner); /* the wrapper holds it now (or, on failure, it frees the table here) */
    return result;
}

static double static_data[2][3] = {{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}};
static void *static_table[2] = {static_data[0], static_data[1]};

/* wrap_borrowed_static(owner, pass_null, table_null, format): the static 2 x 3 table, kept
 * alive by owner (NULL instead if pass_null). */
static PyObject *wrap_borrowed_static(PyObject *self, PyObject *args)
{
    PyObject *owner, *format;
    int pass_null, table_null;
    (void)self;
    if (!PyArg_ParseTuple(args, "OppO", &owner, &pass_null, &table_null, &format))
        return NULL;
    if (format != Py_None && !PyBytes_Check(format))
        return PyErr_Format(PyExc_TypeError, "format must be bytes or None");
    return ib_wrap_borrowed(table_null ? NULL : static_table, 2, 3, format_arg(format), 1, 0,
                            pass_null ? NULL : owner);
}

static PyObject *check(PyObject *self, PyObject *obj)
{
    (void)self;
    return PyLong_FromLong(ib_check(obj == Py_None ? NULL : obj));
}

static PyObject *type_object(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_INCREF(ib_priv_capi->IndirectMemory2D_Type);
    return (PyObject *)ib_priv_capi->IndirectMemory2D_Type;
}

static PyObject *api_version(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("iin", ib_priv_capi->version_major, ib_priv_capi->version_minor,
                         (Py_ssize_t)ib_priv_capi->struct_size);
}

static PyObject *reimport(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (ib_import() < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *counters(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:l,s:l,s:l,s:l}", "live_blocks", live_blocks, "dealloc_calls",
                         dealloc_calls, "bad_context", bad_context, "owner_frees", owner_frees);
}

static PyObject *noimport(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return ib_capi_test_noimport();
}

static PyMethodDef methods[] = {
    {"acquire", acquire, METH_VARARGS, "ib_table_acquire into a handle capsule."},
    {"acquire_null_out", acquire_null_out, METH_O, "ib_table_acquire with out NULL."},
    {"fields", fields, METH_O, "The ib_table fields of a handle."},
    {"rows_bytes", rows_bytes, METH_O, "Each row's bytes, read through the table."},
    {"write_double", write_double, METH_VARARGS, "Write one double through the table."},
    {"release", release, METH_O, "ib_table_release a handle."},
    {"release_edge_cases", release_edge_cases, METH_O, "ib_table_release on NULL, twice..."},
    {"sum_nogil", sum_nogil, METH_VARARGS, "Sum a 'd' table without the GIL."},
    {"create", create, METH_VARARGS, "ib_create."},
    {"wrap_new", wrap_new, METH_VARARGS, "ib_wrap a C-allocated table."},
    {"wrap_borrowed_owned", wrap_borrowed_owned, METH_VARARGS, "ib_wrap_borrowed, capsule owner."},
    {"wrap_borrowed_static", wrap_borrowed_static, METH_VARARGS, "ib_wrap_borrowed, static."},
    {"check", check, METH_O, "ib_check."},
    {"type_object", type_object, METH_NOARGS, "The table's IndirectMemory2D_Type."},
    {"api_version", api_version, METH_NOARGS, "(major, minor, struct_size) installed."},
    {"reimport", reimport, METH_NOARGS, "ib_import() again."},
    {"counters", counters, METH_NOARGS, "Allocation and deallocator counters."},
    {"noimport", noimport, METH_NOARGS, "Every wrapper in a unit without ib_import()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ib_capi_test", "Drives indirect_buffer's C API.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_ib_capi_test(void)
{
    if (ib_import() < 0)
        return NULL;
    return PyModule_Create(&module_def);
}
