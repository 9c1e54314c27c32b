/* SendHistory's arrays (sfu/twcc.py) as C buffers: written by the fan-out (_fanout.c), read back when
   a transport-cc report is paired with them (_delay.c). */

#define HISTORY 4096 /* sfu/twcc.py HISTORY */
#define HISTORY_MASK (HISTORY - 1)

/* One of `history`'s arrays, as a buffer of `count` or more items of `format` (`flags` adds
   PyBUF_WRITABLE for a writer); a TypeError if it is anything else. */
static int history_array(PyObject *history, const char *name, const char *format, Py_ssize_t itemsize,
                         Py_ssize_t count, int flags, Py_buffer *view) {
    PyObject *array = PyObject_GetAttrString(history, name);
    if (array == NULL)
        return -1;
    int rc = PyObject_GetBuffer(array, view, flags | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS);
    Py_DECREF(array);
    if (rc < 0)
        return -1;
    if (view->itemsize != itemsize || strcmp(view->format, format) != 0 || view->len / itemsize < count) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "SendHistory.%s must be an array('%s') of %zd or more", name, format,
                     count);
        return -1;
    }
    return 0;
}
