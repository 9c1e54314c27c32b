/* sfu._delay: transport-cc's per-report work compiled: the report paired with what was sent
(twcc.parse_feedback and SendHistory.acknowledge in one pass, `acknowledge`), and bwe.DelayDetector,
the same arithmetic in the same order.

Why C: every subscriber with transport-cc reports every 100 ms, and the delay detector runs on each
report (grouping packets by send time, a trendline fit per group, the adaptive threshold). At 200
subscribers that was the largest part of the feedback's cost, and the feedback the largest cost of a
transport-cc subscriber after the send itself (docs/performance.md). The detector is arithmetic on
a few doubles, nothing a library offers. sfu/bwe.py keeps the Python one as the reference (and the
fallback where nothing was compiled); tests/test_bwe.py feeds both the same reports. The pairing came
next in the profile; twcc.py keeps its reference, and anything unusual (a malformed report) is left
to it, so that its errors are the only ones.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_history.h"

/* sfu/bwe.py's constants */
#define BURST 0.005
#define TRENDLINE_WINDOW 20
#define SMOOTHING 0.9
#define THRESHOLD_GAIN 4.0
#define K_UP 0.0087
#define K_DOWN 0.039
#define OVERUSE_TIME 0.010

enum { NORMAL, OVERUSE, UNDERUSE };
static PyObject *state_names[3];

typedef struct {
    PyObject_HEAD
    int has_group, has_prev, has_update;
    double group_sent, group_last_sent, group_arrival;
    double prev_sent, prev_arrival, first_arrival;
    double accumulated, smoothed, threshold, last_update, over_time, prev_trend;
    long deltas, over_count;
    int state;
    /* the trendline: bwe.Regression over the last TRENDLINE_WINDOW points */
    double xs[TRENDLINE_WINDOW], ys[TRENDLINE_WINDOW];
    int count, head; /* points held; where the oldest is */
    double sx, sy, sxx, sxy;
    long long updates;
} DelayDetector;

static int DelayDetector_init(DelayDetector *self, PyObject *args, PyObject *kwds) {
    if (!PyArg_ParseTuple(args, ":DelayDetector"))
        return -1;
    memset((char *)self + sizeof(PyObject), 0, sizeof(DelayDetector) - sizeof(PyObject));
    self->threshold = 12.5;
    self->state = NORMAL;
    return 0;
}

/* Regression.add: the slope once the window is full; 0 with *full = 0 before */
static double fit(DelayDetector *d, double x, double y, int *full) {
    if (d->count == TRENDLINE_WINDOW) {
        double ox = d->xs[d->head], oy = d->ys[d->head];
        d->sx -= ox;
        d->sy -= oy;
        d->sxx -= ox * ox;
        d->sxy -= ox * oy;
        d->xs[d->head] = x;
        d->ys[d->head] = y;
        d->head = (d->head + 1) % TRENDLINE_WINDOW;
    } else {
        int at = (d->head + d->count) % TRENDLINE_WINDOW;
        d->xs[at] = x;
        d->ys[at] = y;
        d->count++;
    }
    d->sx += x;
    d->sy += y;
    d->sxx += x * x;
    d->sxy += x * y;
    d->updates++;
    if (d->updates % 256 == 0) { /* rebuilt now and then so that the sums do not drift */
        double sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0;
        for (int i = 0; i < d->count; i++) {
            int k = (d->head + i) % TRENDLINE_WINDOW;
            sx += d->xs[k];
            sy += d->ys[k];
            sxx += d->xs[k] * d->xs[k];
            sxy += d->xs[k] * d->ys[k];
        }
        d->sx = sx;
        d->sy = sy;
        d->sxx = sxx;
        d->sxy = sxy;
    }
    if (d->count < TRENDLINE_WINDOW) {
        *full = 0;
        return 0.0;
    }
    *full = 1;
    double n = (double)d->count;
    double den = n * d->sxx - d->sx * d->sx;
    return den != 0.0 ? (n * d->sxy - d->sx * d->sy) / den : 0.0;
}

/* DelayDetector._close_groups, for one group */
static void close_group(DelayDetector *d, double sent, double arrival) {
    if (!d->has_prev) {
        d->has_prev = 1;
        d->prev_sent = sent;
        d->prev_arrival = arrival;
        d->first_arrival = arrival;
        return;
    }
    double send_delta = sent - d->prev_sent;
    d->deltas = d->deltas + 1 < 60 ? d->deltas + 1 : 60;
    d->accumulated += (arrival - d->prev_arrival - send_delta) * 1000.0;
    d->prev_sent = sent;
    d->prev_arrival = arrival;
    d->smoothed = SMOOTHING * d->smoothed + (1 - SMOOTHING) * d->accumulated;
    int full;
    double slope = fit(d, (arrival - d->first_arrival) * 1000.0, d->smoothed, &full);
    double trend = full ? slope * (double)d->deltas * THRESHOLD_GAIN : d->prev_trend;
    if (trend > d->threshold) {
        d->over_time += send_delta;
        d->over_count += 1;
        if (d->over_time > OVERUSE_TIME && d->over_count > 1 && trend >= d->prev_trend) {
            d->over_time = 0.0;
            d->over_count = 0;
            d->state = OVERUSE;
        }
    } else {
        d->over_time = 0.0;
        d->over_count = 0;
        d->state = trend < -d->threshold ? UNDERUSE : NORMAL;
    }
    d->prev_trend = trend;
    double elapsed_ms = 0.0;
    if (d->has_update) {
        elapsed_ms = (arrival - d->last_update) * 1000.0;
        if (elapsed_ms > 100.0)
            elapsed_ms = 100.0;
    }
    d->has_update = 1;
    d->last_update = arrival;
    double size = fabs(trend);
    if (size <= d->threshold + 15.0) {
        double k_gain = size < d->threshold ? K_DOWN : K_UP;
        double t = d->threshold + k_gain * (size - d->threshold) * elapsed_ms;
        if (t < 6.0)
            t = 6.0;
        if (t > 600.0)
            t = 600.0;
        d->threshold = t;
    }
}

/* add(sent_times, arrival_times): received packets in send order, from one feedback message */
static PyObject *DelayDetector_add(DelayDetector *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(sent_times, arrival_times)");
        return NULL;
    }
    PyObject *sent = PySequence_Fast(args[0], "sent_times must be a sequence");
    if (sent == NULL)
        return NULL;
    PyObject *arrived = PySequence_Fast(args[1], "arrival_times must be a sequence");
    if (arrived == NULL) {
        Py_DECREF(sent);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sent);
    if (n != PySequence_Fast_GET_SIZE(arrived)) {
        PyErr_SetString(PyExc_ValueError, "sent_times and arrival_times differ in length");
        goto fail;
    }
    PyObject **s_items = PySequence_Fast_ITEMS(sent), **a_items = PySequence_Fast_ITEMS(arrived);
    for (Py_ssize_t i = 0; i < n; i++) {
        double s = PyFloat_AsDouble(s_items[i]), a = PyFloat_AsDouble(a_items[i]);
        if ((s == -1.0 || a == -1.0) && PyErr_Occurred())
            goto fail;
        if (self->has_group && s - self->group_sent <= BURST) {
            if (s > self->group_last_sent)
                self->group_last_sent = s;
            if (a > self->group_arrival)
                self->group_arrival = a;
            continue;
        }
        if (self->has_group)
            close_group(self, self->group_last_sent, self->group_arrival);
        self->has_group = 1;
        self->group_sent = self->group_last_sent = s;
        self->group_arrival = a;
    }
    Py_DECREF(sent);
    Py_DECREF(arrived);
    Py_RETURN_NONE;
fail:
    Py_DECREF(sent);
    Py_DECREF(arrived);
    return NULL;
}

static PyObject *DelayDetector_get_state(DelayDetector *self, void *closure) {
    (void)closure;
    Py_INCREF(state_names[self->state]);
    return state_names[self->state];
}

static int DelayDetector_set_state(DelayDetector *self, PyObject *value, void *closure) {
    (void)closure;
    for (int i = 0; value != NULL && i < 3; i++) {
        int eq = PyObject_RichCompareBool(value, state_names[i], Py_EQ);
        if (eq < 0)
            return -1;
        if (eq) {
            self->state = i;
            return 0;
        }
    }
    PyErr_SetString(PyExc_ValueError, "state is 'normal', 'overuse' or 'underuse'");
    return -1;
}

static PyObject *DelayDetector_get_threshold(DelayDetector *self, void *closure) {
    (void)closure;
    return PyFloat_FromDouble(self->threshold);
}

/* -- acknowledge: twcc.parse_feedback + SendHistory.acknowledge ------------------------------- */

#define TICK (250 / 1e6)
#define TICKS_PER_REFERENCE 256

/* acknowledge(fci, history) -> (sent, arrived, bytes, lost), or None where the report does not parse
   (twcc.parse_feedback then says why). The packets the report covers, paired with `history`'s send
   times and sizes as SendHistory.acknowledge pairs them. */
static PyObject *acknowledge(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "acknowledge(fci: bytes, history: SendHistory)");
        return NULL;
    }
    const unsigned char *fci = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size < 10)
        Py_RETURN_NONE;
    long base = (fci[0] << 8) | fci[1];
    Py_ssize_t count = (fci[2] << 8) | fci[3];
    long reference = (long)((fci[4] << 16) | (fci[5] << 8) | fci[6]);
    if (reference & 0x800000)
        reference -= 0x1000000;
    reference *= TICKS_PER_REFERENCE;
    /* the status symbols, one per reported packet */
    unsigned char *symbols = PyMem_Malloc((size_t)count + 14);
    if (symbols == NULL)
        return PyErr_NoMemory();
    Py_ssize_t have = 0, pos = 8;
    while (have < count) {
        if (pos + 2 > size) {
            PyMem_Free(symbols);
            Py_RETURN_NONE;
        }
        unsigned chunk = (fci[pos] << 8) | fci[pos + 1];
        pos += 2;
        if (!(chunk & 0x8000)) { /* run length */
            unsigned symbol = (chunk >> 13) & 0x3;
            Py_ssize_t run = chunk & 0x1FFF;
            if (run > count - have)
                run = count - have;
            memset(symbols + have, (int)symbol, (size_t)run);
            have += run;
        } else if (!(chunk & 0x4000)) { /* 14 one-bit symbols */
            for (int i = 0; i < 14; i++)
                symbols[have++] = (chunk >> (13 - i)) & 0x1;
        } else { /* 7 two-bit symbols */
            for (int i = 0; i < 7; i++)
                symbols[have++] = (chunk >> (12 - 2 * i)) & 0x3;
        }
    }
    Py_buffer next, sent_at, sizes;
    if (history_array(args[1], "_next", "H", 2, 1, 0, &next) < 0) {
        PyMem_Free(symbols);
        return NULL;
    }
    if (history_array(args[1], "sent_at", "d", 8, HISTORY, 0, &sent_at) < 0) {
        PyBuffer_Release(&next);
        PyMem_Free(symbols);
        return NULL;
    }
    if (history_array(args[1], "sizes", "I", 4, HISTORY, 0, &sizes) < 0) {
        PyBuffer_Release(&next);
        PyBuffer_Release(&sent_at);
        PyMem_Free(symbols);
        return NULL;
    }
    long newest = (((const uint16_t *)next.buf)[0] - 1) & 0xFFFF;
    const double *times = (const double *)sent_at.buf;
    const uint32_t *lengths = (const uint32_t *)sizes.buf;
    PyObject *sent = PyList_New(0), *arrived = PyList_New(0), *result = NULL;
    long long acked = 0;
    long lost = 0, seq = base, arrival = reference;
    if (sent == NULL || arrived == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++, seq = (seq + 1) & 0xFFFF) {
        int received = 1;
        if (symbols[i] == 1) { /* small delta */
            if (pos + 1 > size)
                goto malformed;
            arrival += fci[pos];
            pos += 1;
        } else if (symbols[i] == 2) { /* large delta, signed */
            if (pos + 2 > size)
                goto malformed;
            arrival += (int16_t)((fci[pos] << 8) | fci[pos + 1]);
            pos += 2;
        } else if (symbols[i] == 3) {
            goto malformed; /* the reserved symbol */
        } else {
            received = 0;
        }
        if (((newest - seq) & 0xFFFF) >= HISTORY)
            continue; /* too old, or not sent yet */
        double at = times[seq & (HISTORY - 1)];
        if (at == 0.0)
            continue;
        if (!received) {
            lost++;
            continue;
        }
        PyObject *t = PyFloat_FromDouble(at), *a = PyFloat_FromDouble((double)arrival * TICK);
        int failed = t == NULL || a == NULL || PyList_Append(sent, t) < 0 || PyList_Append(arrived, a) < 0;
        Py_XDECREF(t);
        Py_XDECREF(a);
        if (failed)
            goto done;
        acked += lengths[seq & (HISTORY - 1)];
    }
    result = Py_BuildValue("(OOLl)", sent, arrived, acked, lost);
    goto done;
malformed:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(sent);
    Py_XDECREF(arrived);
    PyBuffer_Release(&next);
    PyBuffer_Release(&sent_at);
    PyBuffer_Release(&sizes);
    PyMem_Free(symbols);
    return result;
}

static PyMethodDef module_methods[] = {
    {"acknowledge", (PyCFunction)(void (*)(void))acknowledge, METH_FASTCALL,
     "acknowledge(fci, history): a transport-cc report paired with what was sent, or None."},
    {NULL}};

static PyMethodDef DelayDetector_methods[] = {
    {"add", (PyCFunction)(void (*)(void))DelayDetector_add, METH_FASTCALL,
     "Received packets in send order, from one feedback message."},
    {NULL}};

static PyGetSetDef DelayDetector_getset[] = {
    {"state", (getter)DelayDetector_get_state, (setter)DelayDetector_set_state, "normal | overuse | underuse",
     NULL},
    {"threshold", (getter)DelayDetector_get_threshold, NULL, "the adaptive threshold, ms", NULL},
    {NULL}};

static PyTypeObject DelayDetectorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._delay.DelayDetector",
    .tp_doc = "Trendline filter and adaptive-threshold overuse detector over packet groups (sfu/bwe.py).",
    .tp_basicsize = sizeof(DelayDetector),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)DelayDetector_init,
    .tp_methods = DelayDetector_methods,
    .tp_getset = DelayDetector_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sfu._delay", "transport-cc's per-report work, compiled.", -1, module_methods, NULL, NULL, NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__delay(void) {
    const char *names[3] = {"normal", "overuse", "underuse"};
    for (int i = 0; i < 3; i++)
        if ((state_names[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return NULL;
    if (PyType_Ready(&DelayDetectorType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DelayDetectorType);
    if (PyModule_AddObject(m, "DelayDetector", (PyObject *)&DelayDetectorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
