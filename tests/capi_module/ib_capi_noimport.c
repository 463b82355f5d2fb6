/* A second translation unit of ib_capi_test that never calls ib_import(): the header's table
 * pointer is one per unit, so every wrapper here must refuse to run (RuntimeError), and
 * ib_table_release must do nothing. */
#include <indirect_buffer.h>

PyObject *ib_capi_test_noimport(void);

/* (value returned, exception type name, message) of the call just made; clears the error.
 * value is a new reference or NULL (None), or, if obj_result is 0, the int result. */
static PyObject *outcome(PyObject *value, int int_result, int obj_result)
{
    PyObject *type, *exc, *tb, *message, *result;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    message = exc ? PyObject_Str(exc) : NULL;
    if (!obj_result)
        value = PyLong_FromLong(int_result);
    else if (value == NULL) {
        Py_INCREF(Py_None);
        value = Py_None;
    }
    result = Py_BuildValue("(Nss)", value, type ? ((PyTypeObject *)type)->tp_name : "",
                           message ? PyUnicode_AsUTF8(message) : "");
    Py_XDECREF(message);
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
    return result;
}

static void no_dealloc(void **table, Py_ssize_t rows, void *context)
{
    (void)table;
    (void)rows;
    *(int *)context = 1;
}

PyObject *ib_capi_test_noimport(void)
{
    static double data[1] = {1.0};
    void *table[1] = {data};
    int dealloc_ran = 0, zeroed;
    size_t i;
    ib_table t;
    PyObject *acquire, *release, *create, *wrap, *borrowed, *check;

    memset(&t, 0xAB, sizeof(t));
    acquire = outcome(NULL, ib_table_acquire(Py_None, "d", 0, 0, 0, &t), 0);
    for (zeroed = 1, i = 0; i < sizeof(t); i++)
        zeroed &= ((unsigned char *)&t)[i] == 0;
    ib_table_release(&t);
    ib_table_release(NULL);
    release = outcome(NULL, zeroed, 0); /* nothing raised, nothing crashed */
    create = outcome(ib_create(1, 1, "d", 0), 0, 1);
    wrap = outcome(ib_wrap(table, 1, 1, "d", 0, 0, no_dealloc, &dealloc_ran), 0, 1);
    borrowed = outcome(ib_wrap_borrowed(table, 1, 1, "d", 0, 0, NULL), 0, 1);
    check = outcome(NULL, ib_check(Py_None), 0);
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:N,s:i}", "acquire", acquire, "release", release,
                         "create", create, "wrap", wrap, "wrap_borrowed", borrowed, "check",
                         check, "wrap_dealloc_ran", dealloc_ran);
}
