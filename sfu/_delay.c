/* sfu._delay: transport-cc's per-report work compiled: the report paired with what was sent
(twcc.parse_feedback and SendHistory.acknowledge in one pass, `pair`), bwe.DelayDetector, and
bwe.BandwidthEstimator's update from a report (`Estimator`), the same arithmetic in the same order.

Why C: every subscriber with transport-cc reports every 100 ms, and the delay detector runs on each
report (grouping packets by send time, a trendline fit per group, the adaptive threshold). At 200
subscribers that was the largest part of the feedback's cost, and the feedback the largest cost of a
transport-cc subscriber after the send itself (docs/performance.md). The detector is arithmetic on
a few doubles, nothing a library offers. sfu/bwe.py keeps the Python one as the reference (and the
fallback where nothing was compiled); tests/test_bwe.py feeds both the same reports. The pairing came
next in the profile; twcc.py keeps its reference, and anything unusual (a malformed report) is left
to it, so that its errors are the only ones. Then the estimator's update (its loss and delivered-rate
windows, the rate control), and with it the report's way from bytes to estimate without a Python
object per packet (`Estimator.fused`); bwe.BandwidthEstimator stays the reference.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

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
static PyTypeObject DelayDetectorType, EstimatorType;
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

/* DelayDetector.add, for one received packet */
static void add_one(DelayDetector *d, double s, double a) {
    if (d->has_group && s - d->group_sent <= BURST) {
        if (s > d->group_last_sent)
            d->group_last_sent = s;
        if (a > d->group_arrival)
            d->group_arrival = a;
        return;
    }
    if (d->has_group)
        close_group(d, d->group_last_sent, d->group_arrival);
    d->has_group = 1;
    d->group_sent = d->group_last_sent = s;
    d->group_arrival = a;
}

/* A report's packets paired with what was sent: the received ones' send and arrival times (seconds),
   their bytes, and how many were lost; `times` holds sent[] then arrived[], freed by the caller. */
typedef struct {
    double *times;
    Py_ssize_t received;
    long long bytes;
    long lost;
} Paired;

/* Send and arrival times from Python (an Acknowledged's two lists) into `out`: all of them read
   before anything uses them, so a bad item changes nothing. -1 with a Python error set. */
static int read_times(PyObject *sent_times, PyObject *arrival_times, Paired *out) {
    PyObject *sent = PySequence_Fast(sent_times, "sent times must be a sequence");
    PyObject *arrived = sent ? PySequence_Fast(arrival_times, "arrival times must be a sequence") : NULL;
    int rc = -1;
    if (arrived == NULL)
        goto done;
    out->received = PySequence_Fast_GET_SIZE(sent);
    if (out->received != PySequence_Fast_GET_SIZE(arrived)) {
        PyErr_SetString(PyExc_ValueError, "sent and arrival times differ in length");
        goto done;
    }
    out->times = PyMem_Malloc(2 * sizeof(double) * (size_t)(out->received ? out->received : 1));
    if (out->times == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < out->received; i++) {
        out->times[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(sent, i));
        out->times[out->received + i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(arrived, i));
    }
    rc = PyErr_Occurred() ? -1 : 0;
done:
    Py_XDECREF(sent);
    Py_XDECREF(arrived);
    return rc;
}

/* add(sent_times, arrival_times): received packets in send order, from one feedback message */
static PyObject *DelayDetector_add(DelayDetector *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(sent_times, arrival_times)");
        return NULL;
    }
    Paired paired = {0};
    if (read_times(args[0], args[1], &paired) < 0)
        return NULL;
    for (Py_ssize_t i = 0; i < paired.received; i++)
        add_one(self, paired.times[i], paired.times[paired.received + i]);
    PyMem_Free(paired.times);
    Py_RETURN_NONE;
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

/* twcc.parse_feedback and SendHistory.acknowledge in one pass over `fci`: 1 when it parsed, 0 where
   it does not (the reference then says why), -1 with a Python error set. */
static int pair(const unsigned char *fci, Py_ssize_t size, PyObject *history, Paired *out) {
    memset(out, 0, sizeof *out);
    if (size < 10)
        return 0;
    long base = (fci[0] << 8) | fci[1];
    Py_ssize_t count = (fci[2] << 8) | fci[3];
    long reference = (long)((fci[4] << 16) | (fci[5] << 8) | fci[6]);
    if (reference & 0x800000)
        reference -= 0x1000000;
    reference *= TICKS_PER_REFERENCE;
    /* the status symbols, one per reported packet, then the times of the received ones */
    unsigned char *symbols = PyMem_Malloc((size_t)count + 14);
    out->times = PyMem_Malloc(2 * sizeof(double) * (size_t)(count ? count : 1));
    if (symbols == NULL || out->times == NULL) {
        PyMem_Free(symbols);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t have = 0, pos = 8;
    while (have < count) {
        if (pos + 2 > size) {
            PyMem_Free(symbols);
            return 0;
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
    if (history_array(history, "_next", "H", 2, 1, 0, &next) < 0) {
        PyMem_Free(symbols);
        return -1;
    }
    if (history_array(history, "sent_at", "d", 8, HISTORY, 0, &sent_at) < 0) {
        PyBuffer_Release(&next);
        PyMem_Free(symbols);
        return -1;
    }
    if (history_array(history, "sizes", "I", 4, HISTORY, 0, &sizes) < 0) {
        PyBuffer_Release(&next);
        PyBuffer_Release(&sent_at);
        PyMem_Free(symbols);
        return -1;
    }
    long newest = (((const uint16_t *)next.buf)[0] - 1) & 0xFFFF;
    const double *times = (const double *)sent_at.buf;
    const uint32_t *lengths = (const uint32_t *)sizes.buf;
    double *sent = out->times, *arrived = out->times + count;
    long seq = base, arrival = reference;
    int parsed = 1;
    for (Py_ssize_t i = 0; i < count; i++, seq = (seq + 1) & 0xFFFF) {
        int received = 1;
        if (symbols[i] == 1) { /* small delta */
            if (pos + 1 > size) {
                parsed = 0;
                break;
            }
            arrival += fci[pos];
            pos += 1;
        } else if (symbols[i] == 2) { /* large delta, signed */
            if (pos + 2 > size) {
                parsed = 0;
                break;
            }
            arrival += (int16_t)((fci[pos] << 8) | fci[pos + 1]);
            pos += 2;
        } else if (symbols[i] == 3) {
            parsed = 0; /* the reserved symbol */
            break;
        } else {
            received = 0;
        }
        if (((newest - seq) & 0xFFFF) >= HISTORY)
            continue; /* too old, or not sent yet */
        double at = times[seq & (HISTORY - 1)];
        if (at == 0.0)
            continue;
        if (!received) {
            out->lost++;
            continue;
        }
        sent[out->received] = at;
        arrived[out->received++] = (double)arrival * TICK;
        out->bytes += lengths[seq & (HISTORY - 1)];
    }
    if (count) /* the arrivals next to the send times, where the callers read them */
        memmove(sent + out->received, arrived, sizeof(double) * (size_t)out->received);
    PyBuffer_Release(&next);
    PyBuffer_Release(&sent_at);
    PyBuffer_Release(&sizes);
    PyMem_Free(symbols);
    return parsed;
}

/* pair() for a report's FCI as Python holds it */
static int pair_report(PyObject *fci, PyObject *history, Paired *out) {
    if (!PyBytes_Check(fci)) {
        memset(out, 0, sizeof *out);
        PyErr_SetString(PyExc_TypeError, "a report's FCI must be bytes");
        return -1;
    }
    return pair((const unsigned char *)PyBytes_AS_STRING(fci), PyBytes_GET_SIZE(fci), history, out);
}

static PyObject *list_of(const double *values, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *value = PyFloat_FromDouble(values[i]);
        if (value == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, value);
    }
    return list;
}

/* acknowledge(fci, history) -> (sent, arrived, bytes, lost), or None where the report does not parse:
   what `pair` (the pass Estimator.fused reads reports with) found, as Python objects, so that
   tests/test_bwe.py can compare it with twcc.parse_feedback + SendHistory.acknowledge. */
static PyObject *acknowledge(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "acknowledge(fci: bytes, history: SendHistory)");
        return NULL;
    }
    Paired paired;
    int parsed = pair_report(args[0], args[1], &paired);
    PyObject *result = parsed == 0 ? Py_NewRef(Py_None) : NULL;
    if (parsed == 1) {
        PyObject *sent = list_of(paired.times, paired.received);
        PyObject *arrived = list_of(paired.times + paired.received, paired.received);
        if (sent != NULL && arrived != NULL)
            result = Py_BuildValue("(OOLl)", sent, arrived, paired.bytes, paired.lost);
        Py_XDECREF(sent);
        Py_XDECREF(arrived);
    }
    PyMem_Free(paired.times);
    return result;
}

/* -- the estimator: bwe.BandwidthEstimator's per-report step ------------------------------------ */

#define BETA 0.85
#define INCREASE_PER_SECOND 1.08
#define LOSS_HIGH 0.10
#define LOSS_LOW 0.02
#define MIN_BITRATE 100000LL
#define MAX_BITRATE 20000000LL
#define RATE_WINDOW 1.0

typedef struct {
    PyObject_HEAD
    long long estimate, acked_bytes, delivered, feedbacks;
    double loss, capacity, last_change, last_loss_cut, last_trouble, last_cut;
    int has_capacity, has_change;
    DelayDetector *delay;
    /* (last arrival, bytes) of each report in the last RATE_WINDOW: a ring that grows when full */
    double *window_arrival;
    long long *window_bytes;
    Py_ssize_t window_head, window_count, window_size;
} Estimator;

static int Estimator_init(Estimator *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"start", NULL};
    long long start = 1000000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L", names, &start))
        return -1;
    DelayDetector *delay = (DelayDetector *)PyObject_CallNoArgs((PyObject *)&DelayDetectorType);
    if (delay == NULL)
        return -1;
    Py_XSETREF(self->delay, delay);
    self->estimate = start;
    self->acked_bytes = self->delivered = self->feedbacks = 0;
    self->loss = self->capacity = self->last_change = self->last_loss_cut = 0.0;
    self->last_trouble = self->last_cut = -INFINITY;
    self->has_capacity = self->has_change = 0;
    self->window_head = self->window_count = 0;
    return 0;
}

static void Estimator_dealloc(Estimator *self) {
    Py_XDECREF(self->delay);
    PyMem_Free(self->window_arrival);
    PyMem_Free(self->window_bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int window_push(Estimator *e, double arrival, long long bytes) {
    if (e->window_count == e->window_size) {
        Py_ssize_t size = e->window_size ? 2 * e->window_size : 16;
        double *arrivals = PyMem_Malloc(sizeof(double) * (size_t)size);
        long long *sizes = PyMem_Malloc(sizeof(long long) * (size_t)size);
        if (arrivals == NULL || sizes == NULL) {
            PyMem_Free(arrivals);
            PyMem_Free(sizes);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < e->window_count; i++) {
            Py_ssize_t at = (e->window_head + i) % e->window_size;
            arrivals[i] = e->window_arrival[at];
            sizes[i] = e->window_bytes[at];
        }
        PyMem_Free(e->window_arrival);
        PyMem_Free(e->window_bytes);
        e->window_arrival = arrivals;
        e->window_bytes = sizes;
        e->window_head = 0;
        e->window_size = size;
    }
    Py_ssize_t at = (e->window_head + e->window_count++) % e->window_size;
    e->window_arrival[at] = arrival;
    e->window_bytes[at] = bytes;
    return 0;
}

/* BandwidthEstimator._control */
static void control(Estimator *e, double now) {
    double elapsed = 0.0;
    if (e->has_change)
        elapsed = now - e->last_change < 1.0 ? now - e->last_change : 1.0;
    e->last_change = now;
    e->has_change = 1;
    int state = e->delay->state;
    if (state != NORMAL || e->loss >= LOSS_LOW)
        e->last_trouble = now;
    if (state == OVERUSE) {
        long long basis = e->delivered ? e->delivered : e->estimate;
        long long target = (long long)(BETA * (double)basis);
        if (target < e->estimate) {
            e->estimate = target;
            e->capacity = (double)basis;
            e->has_capacity = 1;
            e->last_cut = now;
        }
        e->delay->state = NORMAL;
    } else if (state == NORMAL && e->loss < LOSS_LOW) {
        if (e->delivered > e->estimate)
            e->estimate = e->delivered;
        if (e->has_capacity && (double)e->estimate > 0.9 * e->capacity)
            e->estimate += (long long)(elapsed * 1200 * 8 / 0.2);
        else
            e->estimate = (long long)((double)e->estimate * pow(INCREASE_PER_SECOND, elapsed));
    }
    if (e->loss > LOSS_HIGH && now - e->last_loss_cut > 0.3) {
        e->estimate = (long long)((double)e->estimate * (1 - 0.5 * e->loss));
        e->last_loss_cut = e->last_cut = now;
    }
    if (e->estimate < MIN_BITRATE)
        e->estimate = MIN_BITRATE;
    if (e->estimate > MAX_BITRATE)
        e->estimate = MAX_BITRATE;
}

/* BandwidthEstimator.on_feedback, on paired C arrays */
static int update(Estimator *e, const Paired *p, double now) {
    long long reported = (long long)p->received + p->lost;
    if (!reported)
        return 0;
    e->feedbacks++;
    e->loss = 0.7 * e->loss + 0.3 * ((double)p->lost / (double)reported);
    if (p->received) {
        const double *sent = p->times, *arrived = p->times + p->received;
        for (Py_ssize_t i = 0; i < p->received; i++)
            add_one(e->delay, sent[i], arrived[i]);
        double newest = arrived[p->received - 1];
        if (window_push(e, newest, p->bytes) < 0)
            return -1;
        e->acked_bytes += p->bytes;
        while (newest - e->window_arrival[e->window_head] > RATE_WINDOW) {
            e->acked_bytes -= e->window_bytes[e->window_head];
            e->window_head = (e->window_head + 1) % e->window_size;
            e->window_count--;
        }
        double span = newest - e->window_arrival[e->window_head];
        if (span >= 0.1)
            e->delivered = (long long)((double)((e->acked_bytes - e->window_bytes[e->window_head]) * 8) / span);
    }
    control(e, now);
    return 0;
}

/* on_feedback(acked, now): BandwidthEstimator.on_feedback, for an Acknowledged from the reference */
static PyObject *Estimator_on_feedback(Estimator *self, PyObject *const *args, Py_ssize_t nargs) {
    double now;
    if (nargs != 2 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 4) {
        PyErr_SetString(PyExc_TypeError, "on_feedback(acked: Acknowledged, now: float)");
        return NULL;
    }
    if ((now = PyFloat_AsDouble(args[1])) == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *acked = args[0], *result = NULL;
    Paired paired = {0};
    paired.bytes = PyLong_AsLongLong(PyTuple_GET_ITEM(acked, 2));
    paired.lost = PyLong_AsLong(PyTuple_GET_ITEM(acked, 3));
    if (!PyErr_Occurred() && read_times(PyTuple_GET_ITEM(acked, 0), PyTuple_GET_ITEM(acked, 1), &paired) == 0 &&
        update(self, &paired, now) == 0)
        result = PyLong_FromLongLong(self->estimate);
    PyMem_Free(paired.times);
    return result;
}

/* fused(fci, history, now) -> the estimate, or None where the report does not parse (the caller
   then goes through twcc.acknowledged, the reference, which says why): a transport-cc report from its bytes to the
   new estimate without a Python object per packet. */
static PyObject *Estimator_fused(Estimator *self, PyObject *const *args, Py_ssize_t nargs) {
    double now;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fused(fci: bytes, history: SendHistory, now: float)");
        return NULL;
    }
    if ((now = PyFloat_AsDouble(args[2])) == -1.0 && PyErr_Occurred())
        return NULL;
    Paired paired;
    int parsed = pair_report(args[0], args[1], &paired);
    PyObject *result = parsed == 0 ? Py_NewRef(Py_None) : NULL;
    if (parsed == 1 && update(self, &paired, now) == 0)
        result = PyLong_FromLongLong(self->estimate);
    PyMem_Free(paired.times);
    return result;
}

static PyObject *Estimator_get_capacity(Estimator *self, void *closure) {
    (void)closure;
    if (!self->has_capacity)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->capacity);
}

/* -- read_feedback: the feedback socket's batch read, for the usual report ------------------------ */

/* Why: media_port.py steers transport-cc feedback to a socket read in batches (node.py). Each report
   then still went through a recvfrom, the node's and the transport's dispatch, libsrtp's unprotect
   through cffi, the compound's split and the estimator's call, about ten Python frames over objects
   of a different subscriber each time, cold in the cache: under the load tool, 7-9 us a report, more
   than the forwarding of the ten packets it reports on costs above the floor (perf, 200 subscribers,
   docs/performance.md). Here one recvmmsg reads a batch, and a report that is what a browser sends
   (only transport-cc feedback, from a known address, that libsrtp takes) goes from the datagram to
   the estimate in C, on the transport's own libsrtp session and estimator. Everything else goes
   back to Python exactly as it came, before the next datagram, in order: the datagram to the
   node's `datagram_received` (anything libsrtp refuses included: refusing changes no libsrtp state,
   so Python's second try is refused the same way and counted), or the plaintext to the node's
   `on_rtcp` callback where the compound holds more than feedback, or feedback the pass cannot read,
   so that the reference says why. */

#define BATCH 32
#define FEEDBACK_MTU 4096 /* node.py FEEDBACK_MTU */
#define MAX_PARTS 4       /* transport-cc packets in one compound taken here; more go to Python */

typedef int (*srtp_function)(void *, void *, int *); /* libsrtp's srtp_unprotect_rtcp */

static PyTypeObject FeedbackRouteType;

/* What a transport's feedback needs: its inbound libsrtp session (and the SrtpContext that owns it),
   its estimator and its send history. The transport holds it as `feedback`. */
typedef struct {
    PyObject_HEAD
    srtp_function unprotect;
    void *session;
    PyObject *owner, *history;
    Estimator *estimator;
} FeedbackRoute;

static int FeedbackRoute_init(FeedbackRoute *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"unprotect", "session", "owner", "estimator", "history", NULL};
    unsigned long long function, session;
    PyObject *owner, *estimator, *history;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKOO!O", names, &function, &session, &owner, &EstimatorType,
                                     &estimator, &history))
        return -1;
    if (!function || !session) {
        PyErr_SetString(PyExc_ValueError, "a FeedbackRoute needs libsrtp's function and session");
        return -1;
    }
    self->unprotect = (srtp_function)(uintptr_t)function;
    self->session = (void *)(uintptr_t)session;
    Py_XSETREF(self->owner, Py_NewRef(owner));
    Py_XSETREF(self->estimator, (Estimator *)Py_NewRef(estimator));
    Py_XSETREF(self->history, Py_NewRef(history));
    return 0;
}

static void FeedbackRoute_dealloc(FeedbackRoute *self) {
    Py_XDECREF(self->owner);
    Py_XDECREF(self->estimator);
    Py_XDECREF(self->history);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *name_feedback, *name_rtcp_in, *name_twcc_feedbacks;

/* obj.name += by, for the transport's counters, which stay Python ints */
static int bump(PyObject *obj, PyObject *name, long by) {
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return -1;
    PyObject *more = PyLong_FromLongLong(PyLong_AsLongLong(value) + by);
    Py_DECREF(value);
    int rc = more == NULL || PyErr_Occurred() ? -1 : PyObject_SetAttr(obj, name, more);
    Py_XDECREF(more);
    return rc;
}

/* A decrypted compound, taken whole when every packet in it is transport-cc feedback that `pair`
   reads: 1 with the estimator updated and `parts` set, 0 where Python must have it (nothing changed). */
static int take(FeedbackRoute *route, const unsigned char *plain, Py_ssize_t size, double now, long *parts) {
    Paired paired[MAX_PARTS];
    int count = 0, taken = 1;
    Py_ssize_t pos = 0;
    while (taken && pos + 4 <= size) { /* split_compound's walk */
        Py_ssize_t end = pos + 4 * (((plain[pos + 2] << 8) | plain[pos + 3]) + 1);
        if (end > size || plain[pos + 1] != 205 || (plain[pos] & 0x1F) != 15 || end - pos < 12 ||
            count == MAX_PARTS) {
            taken = 0;
            break;
        }
        int parsed = pair(plain + pos + 12, end - pos - 12, route->history, &paired[count++]);
        taken = parsed == 1;
        pos = end;
    }
    for (int i = 0; i < count; i++) {
        if (taken && update(route->estimator, &paired[i], now) < 0)
            taken = 0; /* out of memory: Python's way meets it too, and reports it */
        PyMem_Free(paired[i].times);
    }
    PyErr_Clear(); /* what `pair` or `update` raised, Python's way raises again where it counts it */
    *parts = count;
    return taken;
}

/* The address as Python's socket module gives it: (host, port), or (host, port, flowinfo, scope) */
static PyObject *address(const struct sockaddr_storage *from) {
    char host[INET6_ADDRSTRLEN];
    if (from->ss_family == AF_INET) { /* by hand: glibc's inet_ntop formats with sprintf */
        const struct sockaddr_in *a = (const struct sockaddr_in *)from;
        const unsigned char *octet = (const unsigned char *)&a->sin_addr;
        char *at = host;
        for (int i = 0; i < 4; i++) {
            unsigned v = octet[i];
            if (v >= 100)
                *at++ = (char)('0' + v / 100);
            if (v >= 10)
                *at++ = (char)('0' + v / 10 % 10);
            *at++ = (char)('0' + v % 10);
            *at++ = '.';
        }
        return Py_BuildValue("(s#i)", host, (Py_ssize_t)(at - host - 1), ntohs(a->sin_port));
    }
    if (from->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)from;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host) == NULL)
            Py_RETURN_NONE;
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

/* One datagram: 1 decrypted here (taken, or its plaintext handed to on_rtcp), 0 handed to
   on_datagram as it came, -1 with a Python error set (from a callback) */
static int one_datagram(const unsigned char *data, Py_ssize_t size, const struct sockaddr_storage *from,
                        double now, PyObject *by_addr, PyObject *on_datagram, PyObject *on_rtcp) {
    static unsigned char plain[FEEDBACK_MTU];
    PyObject *addr = address(from), *transport = NULL, *route = NULL, *result = NULL;
    int taken = 0;
    if (addr == NULL)
        return -1;
    if (size >= 12 && data[0] >= 128 && data[0] <= 191 && data[1] >= 192 && data[1] <= 223) {
        transport = PyDict_GetItemWithError(by_addr, addr); /* borrowed */
        if (transport != NULL) {
            Py_INCREF(transport);
            route = PyObject_GetAttr(transport, name_feedback);
        }
        PyErr_Clear(); /* an unhashable address or no `feedback`: Python's way */
    }
    if (route != NULL && Py_IS_TYPE(route, &FeedbackRouteType)) {
        FeedbackRoute *r = (FeedbackRoute *)route;
        int length = (int)size;
        memcpy(plain, data, (size_t)size);
        if (r->unprotect(r->session, plain, &length) == 0) {
            long parts = 0;
            if (take(r, plain, length, now, &parts)) {
                taken = bump(transport, name_rtcp_in, 1) == 0 && bump(transport, name_twcc_feedbacks, parts) == 0
                            ? 1
                            : -1;
            } else {
                result = PyObject_CallFunction(on_rtcp, "Oy#", transport, plain, (Py_ssize_t)length);
                taken = result == NULL ? -1 : 1;
            }
        }
    }
    if (taken == 0) {
        result = PyObject_CallFunction(on_datagram, "y#O", data, size, addr);
        taken = result == NULL ? -1 : 0;
    }
    Py_XDECREF(result);
    Py_XDECREF(route);
    Py_XDECREF(transport);
    Py_DECREF(addr);
    return taken;
}

/* read_feedback(fd, by_addr, limit, now, on_datagram, on_rtcp) -> (read, decrypted, decrypted_bytes):
   up to `limit` datagrams from the (non-blocking) socket `fd`, the transport of each found in
   `by_addr` by its address, the reports taken estimated at `now` (time.monotonic()). What is not
   taken goes to on_datagram(data, addr) or, decrypted, to on_rtcp(transport, plaintext); the node
   counts those two kinds it did not see in datagram_received (`decrypted`: taken or handed to
   on_rtcp). Stops early when the socket has nothing more or reports an error (an ICMP error queued
   on it: the next read goes on). */
static PyObject *read_feedback(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    static unsigned char buffers[BATCH][FEEDBACK_MTU];
    (void)module;
    if (nargs != 6 || !PyDict_Check(args[1]) || !PyCallable_Check(args[4]) || !PyCallable_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "read_feedback(fd, by_addr: dict, limit, now, on_datagram, on_rtcp)");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    long limit = PyLong_AsLong(args[2]);
    double now = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred())
        return NULL;
    long read = 0, decrypted = 0, decrypted_bytes = 0;
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    struct sockaddr_storage from[BATCH];
    while (read < limit) {
        int want = limit - read < BATCH ? (int)(limit - read) : BATCH;
        for (int i = 0; i < want; i++) {
            vectors[i] = (struct iovec){.iov_base = buffers[i], .iov_len = FEEDBACK_MTU};
            messages[i].msg_hdr = (struct msghdr){
                .msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &vectors[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, messages, (unsigned)want, MSG_DONTWAIT, NULL);
        if (n <= 0)
            break;
        for (int i = 0; i < n; i++) {
            read++;
            int rc = one_datagram(buffers[i], messages[i].msg_len, &from[i], now, args[1], args[4], args[5]);
            if (rc < 0)
                return NULL;
            if (rc == 1) {
                decrypted++;
                decrypted_bytes += messages[i].msg_len;
            }
        }
        if (n < want)
            break;
    }
    return Py_BuildValue("(lll)", read, decrypted, decrypted_bytes);
}

static PyMethodDef module_methods[] = {
    {"acknowledge", (PyCFunction)(void (*)(void))acknowledge, METH_FASTCALL,
     "acknowledge(fci, history): a transport-cc report paired with what was sent, or None."},
    {"read_feedback", (PyCFunction)(void (*)(void))read_feedback, METH_FASTCALL,
     "read_feedback(fd, by_addr, limit, now, on_datagram, on_rtcp): the feedback socket's batch read."},
    {NULL}};

static PyMethodDef Estimator_methods[] = {
    {"on_feedback", (PyCFunction)(void (*)(void))Estimator_on_feedback, METH_FASTCALL,
     "Update from one feedback message; returns the new estimate in bit/s."},
    {"fused", (PyCFunction)(void (*)(void))Estimator_fused, METH_FASTCALL,
     "A report's bytes to the new estimate, or None where it does not parse."},
    {NULL}};

static PyMemberDef Estimator_members[] = {
    {"estimate", T_LONGLONG, offsetof(Estimator, estimate), 0, "bit/s"},
    {"delivered", T_LONGLONG, offsetof(Estimator, delivered), READONLY, "bit/s acknowledged over RATE_WINDOW"},
    {"acked_bytes", T_LONGLONG, offsetof(Estimator, acked_bytes), READONLY, NULL},
    {"feedbacks", T_LONGLONG, offsetof(Estimator, feedbacks), READONLY, NULL},
    {"loss", T_DOUBLE, offsetof(Estimator, loss), READONLY, NULL},
    {"last_cut", T_DOUBLE, offsetof(Estimator, last_cut), 0, NULL},
    {"last_trouble", T_DOUBLE, offsetof(Estimator, last_trouble), 0, NULL},
    {"last_loss_cut", T_DOUBLE, offsetof(Estimator, last_loss_cut), READONLY, NULL},
    {"delay", T_OBJECT, offsetof(Estimator, delay), READONLY, "the DelayDetector"},
    {NULL}};

static PyGetSetDef Estimator_getset[] = {
    {"capacity", (getter)Estimator_get_capacity, NULL, "the delivered rate at the last decrease", NULL},
    {NULL}};

static PyTypeObject EstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._delay.Estimator",
    .tp_doc = "bwe.BandwidthEstimator's per-report step (sfu/bwe.py subclasses it).",
    .tp_basicsize = sizeof(Estimator),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Estimator_init,
    .tp_dealloc = (destructor)Estimator_dealloc,
    .tp_methods = Estimator_methods,
    .tp_members = Estimator_members,
    .tp_getset = Estimator_getset,
};

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

static PyTypeObject FeedbackRouteType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._delay.FeedbackRoute",
    .tp_doc = "FeedbackRoute(unprotect, session, owner, estimator, history): what read_feedback needs of a "
              "transport.",
    .tp_basicsize = sizeof(FeedbackRoute),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FeedbackRoute_init,
    .tp_dealloc = (destructor)FeedbackRoute_dealloc,
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
    if ((name_feedback = PyUnicode_InternFromString("feedback")) == NULL ||
        (name_rtcp_in = PyUnicode_InternFromString("rtcp_in")) == NULL ||
        (name_twcc_feedbacks = PyUnicode_InternFromString("twcc_feedbacks")) == NULL)
        return NULL;
    if (PyType_Ready(&DelayDetectorType) < 0 || PyType_Ready(&EstimatorType) < 0 ||
        PyType_Ready(&FeedbackRouteType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DelayDetectorType);
    if (PyModule_AddObject(m, "DelayDetector", (PyObject *)&DelayDetectorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&EstimatorType);
    if (PyModule_AddObject(m, "Estimator", (PyObject *)&EstimatorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FeedbackRouteType);
    if (PyModule_AddObject(m, "FeedbackRoute", (PyObject *)&FeedbackRouteType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
