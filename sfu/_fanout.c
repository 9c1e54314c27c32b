/* sfu._fanout: the forwarding path's fan-out, compiled.

Why C: at 200 subscribers a forwarded packet cost about three times what the machine's floor allows
(one sendto and one SRTP protect), and the profile put the difference in the interpreter: a Python
call per Consumer, the header rewrite with struct, pylibsrtp's buffer copies, uvloop's address
conversion on every sendto. Nothing in the field does "rewrite, protect, send to N" for Python, so
this does it, and only it: one call per received packet walks the stream's Consumers and, for each,
rewrites the header in a staging buffer, writes the transport-wide number, protects with the
transport's libsrtp session (the one pylibsrtp made; its protect function is handed over as an
address, so there is one libsrtp in the process) and sends on the media port's socket, in batches
of sendmmsg (see "the batch").

Everything else stays in Python (sfu/consumer.py): which Consumers are in a stream, switching,
NACKs, RTX, replays, reports. The per-Consumer numbers this file reads and writes live in the
Forward struct that Consumer subclasses, so Python sees them as ordinary attributes. A Consumer
without a Sender (not keyed, an address this file cannot express, a test's fake transport) goes
through Consumer.send, the reference path, which must produce the same bytes (tests/test_fanout.py).
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "_history.h"

#define STAGING_SIZE 1600
#define MAX_TRAILER (4 + 16 + 128) /* SRTCP index + tag + MKI, as libsrtp reserves (sfu/srtp.py) */

typedef int (*protect_fn)(void *session, void *packet, int *length);

static PyObject *str_send;

/* -- Sender: one transport's way out ------------------------------------------------------------ */

/* What a packet's send reads comes first, in the struct's first two cache lines: at 200 subscribers
   each Sender is touched once per packet among hundreds of others, and perf found the fan-out's time
   in its cache misses, not its instructions. */
typedef struct {
    PyObject_HEAD
    protect_fn protect;   /* NULL: plain RTP (recorder, pipes) */
    void *session;        /* its first argument (a libsrtp srtp_t, or sfu/_srtp.c's), owned by `owner` */
    int fd;
    int ready;            /* keyed (or plain): packets may go out */
    socklen_t addrlen;    /* 0: no address yet */
    int family;           /* the socket's: what an address must be to be sent to from it */
    uint16_t *next_seq;   /* the history's arrays (NULL without transport-cc), from `next`, ... */
    double *sent_times;
    uint32_t *sent_sizes;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    PyObject *owner;      /* keeps the session alive (sfu.srtp.SrtpContext) */
    PyObject *address;    /* the address as Python has it, for `fallback` */
    PyObject *fallback;   /* the loop's sendto: when the socket is full, it queues */
    PyObject *history;    /* sfu.twcc.SendHistory, or NULL without transport-cc */
    Py_buffer next, sent_at, sizes; /* its arrays, held (so never resized) while set */
} Sender;

static void release_history(Sender *self) {
    if (self->history == NULL)
        return;
    self->next_seq = NULL;
    self->sent_times = NULL;
    self->sent_sizes = NULL;
    PyBuffer_Release(&self->next);
    PyBuffer_Release(&self->sent_at);
    PyBuffer_Release(&self->sizes);
    Py_CLEAR(self->history);
}

static int Sender_traverse(Sender *self, visitproc visit, void *arg) {
    Py_VISIT(self->owner);
    Py_VISIT(self->address);
    Py_VISIT(self->fallback);
    Py_VISIT(self->history);
    return 0;
}

static int Sender_clear(Sender *self) {
    self->ready = 0;
    self->protect = NULL;
    self->session = NULL;
    self->addrlen = 0;
    Py_CLEAR(self->owner);
    Py_CLEAR(self->address);
    Py_CLEAR(self->fallback);
    release_history(self);
    return 0;
}

static void Sender_dealloc(Sender *self) {
    PyObject_GC_UnTrack(self);
    Sender_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Sender_init(Sender *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"fd", "fallback", NULL};
    int fd;
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO", names, &fd, &fallback))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    struct sockaddr_storage local;
    socklen_t length = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &length) != 0) {
        PyErr_SetFromErrno(PyExc_OSError); /* not a socket: nothing this could send on */
        return -1;
    }
    Sender_clear(self);
    self->fd = fd;
    self->family = local.ss_family;
    Py_INCREF(fallback);
    self->fallback = fallback;
    return 0;
}

/* key(protect=0, session=0, owner=None): packets may go out, protected by libsrtp's protect function
   at address `protect` with the srtp_t at `session` (owned by `owner`, which is kept alive), or as
   plain RTP when both are 0. The addresses come from cffi (sfu/srtp.py), never from outside. */
static PyObject *Sender_key(Sender *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"protect", "session", "owner", NULL};
    unsigned long long protect = 0, session = 0;
    PyObject *owner = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|KKO", names, &protect, &session, &owner))
        return NULL;
    if ((protect == 0) != (session == 0)) {
        PyErr_SetString(PyExc_ValueError, "protect and session go together");
        return NULL;
    }
    self->protect = (protect_fn)(uintptr_t)protect;
    self->session = (void *)(uintptr_t)session;
    Py_INCREF(owner);
    Py_XSETREF(self->owner, owner);
    self->ready = 1;
    Py_RETURN_NONE;
}

/* point((host, port[, flowinfo, scope])): where to send; False (and no address) if it cannot be
   expressed for this socket's family, so that the transport sends through Python instead. */
static PyObject *Sender_point(Sender *self, PyObject *address) {
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope = 0;
    self->addrlen = 0;
    Py_CLEAR(self->address);
    if (!PyTuple_Check(address) || !PyArg_ParseTuple(address, "si|II", &host, &port, &flowinfo, &scope)) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    if (port < 0 || port > 65535)
        Py_RETURN_FALSE;
    memset(&self->addr, 0, sizeof self->addr);
    if (self->family == AF_INET) {
        struct sockaddr_in *in = &self->addr.in;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            Py_RETURN_FALSE;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        self->addrlen = sizeof *in;
    } else if (self->family == AF_INET6) {
        struct sockaddr_in6 *in6 = &self->addr.in6;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
            Py_RETURN_FALSE;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope;
        self->addrlen = sizeof *in6;
    } else {
        Py_RETURN_FALSE;
    }
    Py_INCREF(address);
    self->address = address;
    Py_RETURN_TRUE;
}

static PyObject *Sender_get_history(Sender *self, void *closure) {
    PyObject *h = self->history ? self->history : Py_None;
    Py_INCREF(h);
    return h;
}

/* history = SendHistory or None: its arrays are written in place, one slot of each per packet */
static int Sender_set_history(Sender *self, PyObject *value, void *closure) {
    release_history(self);
    if (value == NULL || value == Py_None)
        return 0;
    if (history_array(value, "_next", "H", 2, 1, PyBUF_WRITABLE, &self->next) < 0)
        return -1;
    if (history_array(value, "sent_at", "d", 8, HISTORY, PyBUF_WRITABLE, &self->sent_at) < 0) {
        PyBuffer_Release(&self->next);
        return -1;
    }
    if (history_array(value, "sizes", "I", 4, HISTORY, PyBUF_WRITABLE, &self->sizes) < 0) {
        PyBuffer_Release(&self->next);
        PyBuffer_Release(&self->sent_at);
        return -1;
    }
    Py_INCREF(value);
    self->history = value;
    self->next_seq = self->next.buf;
    self->sent_times = self->sent_at.buf;
    self->sent_sizes = self->sizes.buf;
    return 0;
}

static PyMethodDef Sender_methods[] = {
    {"key", (PyCFunction)(void (*)(void))Sender_key, METH_VARARGS | METH_KEYWORDS,
     "Ready to send: with this libsrtp session, or plain."},
    {"point", (PyCFunction)Sender_point, METH_O, "Send to this (host, port); False if it cannot."},
    {NULL}};

static PyGetSetDef Sender_getset[] = {
    {"history", (getter)Sender_get_history, (setter)Sender_set_history, "transport-cc send history", NULL},
    {NULL}};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._fanout.Sender",
    .tp_doc = "One transport's way out: its SRTP session (or none), socket and address.",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sender_init,
    .tp_dealloc = (destructor)Sender_dealloc,
    .tp_traverse = (traverseproc)Sender_traverse,
    .tp_clear = (inquiry)Sender_clear,
    .tp_methods = Sender_methods,
    .tp_getset = Sender_getset,
};

/* -- Forward: the numbers of one Consumer (its base class) -------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *sender;    /* Sender, or NULL/None: the Consumer sends through Python */
    PyObject *ext_table; /* bytes of 256, or NULL/None */
    long long ssrc, payload_type, sync_seq, seq_delta, ts_delta, last_seq, last_ts;
    long long packets, bytes, errors;
    int has_vp8;
    long long pid_delta, tl0_delta;
} Forward;

static int Forward_traverse(Forward *self, visitproc visit, void *arg) {
    Py_VISIT(self->sender);
    Py_VISIT(self->ext_table);
    return 0;
}

static int Forward_clear(Forward *self) {
    Py_CLEAR(self->sender);
    Py_CLEAR(self->ext_table);
    return 0;
}

static void Forward_dealloc(Forward *self) {
    PyObject_GC_UnTrack(self);
    Forward_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Forward_get_vp8(Forward *self, void *closure) {
    if (!self->has_vp8)
        Py_RETURN_NONE;
    return Py_BuildValue("(LL)", self->pid_delta, self->tl0_delta);
}

static int Forward_set_vp8(Forward *self, PyObject *value, void *closure) {
    if (value == NULL || value == Py_None) {
        self->has_vp8 = 0;
        return 0;
    }
    long long pid, tl0;
    if (!PyTuple_Check(value) || !PyArg_ParseTuple(value, "LL", &pid, &tl0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "vp8_deltas is None or (picture id delta, tl0 delta)");
        return -1;
    }
    self->pid_delta = pid;
    self->tl0_delta = tl0;
    self->has_vp8 = 1;
    return 0;
}

static PyMemberDef Forward_members[] = {
    {"sender", T_OBJECT, offsetof(Forward, sender), 0, "the transport's Sender, or None"},
    {"ext_table", T_OBJECT, offsetof(Forward, ext_table), 0, "router -> subscriber extension ids"},
    {"ssrc", T_LONGLONG, offsetof(Forward, ssrc), 0, NULL},
    {"payload_type", T_LONGLONG, offsetof(Forward, payload_type), 0, NULL},
    {"sync_seq", T_LONGLONG, offsetof(Forward, sync_seq), 0, NULL},
    {"seq_delta", T_LONGLONG, offsetof(Forward, seq_delta), 0, NULL},
    {"ts_delta", T_LONGLONG, offsetof(Forward, ts_delta), 0, NULL},
    {"last_seq", T_LONGLONG, offsetof(Forward, last_seq), 0, NULL},
    {"last_ts", T_LONGLONG, offsetof(Forward, last_ts), 0, NULL},
    {"packets", T_LONGLONG, offsetof(Forward, packets), 0, NULL},
    {"bytes", T_LONGLONG, offsetof(Forward, bytes), 0, NULL},
    {"errors", T_LONGLONG, offsetof(Forward, errors), 0, NULL},
    {NULL}};

static PyGetSetDef Forward_getset[] = {
    {"vp8_deltas", (getter)Forward_get_vp8, (setter)Forward_set_vp8,
     "VP8 PictureID and TL0PICIDX offsets after a layer switch, or None", NULL},
    {NULL}};

static PyTypeObject ForwardType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._fanout.Forward",
    .tp_doc = "The per-packet numbers of a Consumer, where the compiled fan-out reads them.",
    .tp_basicsize = sizeof(Forward),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Forward_dealloc,
    .tp_traverse = (traverseproc)Forward_traverse,
    .tp_clear = (inquiry)Forward_clear,
    .tp_members = Forward_members,
    .tp_getset = Forward_getset,
};

/* -- the rewrite: sfu/rtp.py's rules, on the staging buffer ------------------------------------- */

/* rtp.vp8_picture_fields + rewrite_vp8_picture: read from the packet, written to its copy `buf`; a
   malformed descriptor is left as it is */
static void rewrite_vp8(unsigned char *buf, const unsigned char *packet, Py_ssize_t n, long long pid_delta,
                        long long tl0_delta) {
    if (n < 12 || packet[0] >> 6 != 2)
        return;
    Py_ssize_t offset = 12 + 4 * (packet[0] & 0x0F);
    if (packet[0] & 0x10) {
        if (offset + 4 > n)
            return;
        offset += 4 + 4 * ((packet[offset + 2] << 8) | packet[offset + 3]);
    }
    if (offset > n)
        return;
    Py_ssize_t end = (packet[0] & 0x20) ? n - packet[n - 1] : n;
    if (offset >= end || !(packet[offset] & 0x80))
        return;
    Py_ssize_t pos = offset + 2;
    if (pos > end)
        return;
    unsigned char x = packet[offset + 1];
    Py_ssize_t pid_at = 0, pid_len = 0, tl0_at = -1;
    if (x & 0x80) {
        if (pos >= end)
            return;
        pid_at = pos;
        pid_len = (packet[pos] & 0x80) ? 2 : 1;
        pos += pid_len;
    }
    if (x & 0x40) {
        if (pos >= end)
            return;
        tl0_at = pos;
    }
    if (pid_at + pid_len > end)
        return;
    if (pid_len == 2) {
        unsigned pid = ((((packet[pid_at] & 0x7F) << 8) | packet[pid_at + 1]) + (unsigned)pid_delta) & 0x7FFF;
        buf[pid_at] = 0x80 | (pid >> 8);
        buf[pid_at + 1] = pid & 0xFF;
    } else if (pid_len == 1) {
        buf[pid_at] = (packet[pid_at] + (unsigned)pid_delta) & 0x7F;
    }
    if (tl0_at >= 0)
        buf[tl0_at] = (packet[tl0_at] + (unsigned)tl0_delta) & 0xFF;
}

/* rtp.remap_extension_ids; -1 where that raises RtpError */
static int remap_extensions(unsigned char *buf, Py_ssize_t n, const unsigned char *table) {
    if (!(buf[0] & 0x10))
        return 0;
    Py_ssize_t start = 12 + 4 * (buf[0] & 0x0F);
    if (start + 4 > n)
        return -1;
    unsigned profile = (buf[start] << 8) | buf[start + 1];
    unsigned words = (buf[start + 2] << 8) | buf[start + 3];
    Py_ssize_t pos = start + 4;
    Py_ssize_t end = pos + 4 * (Py_ssize_t)words;
    if (end > n)
        end = n;
    if (profile == 0xBEDE) {
        while (pos < end) {
            unsigned char b = buf[pos];
            if (b == 0) {
                pos += 1;
                continue;
            }
            unsigned id = b >> 4;
            if (id == 15)
                return 0;
            unsigned new_id = table[id];
            if (new_id > 14)
                new_id = table[0];
            buf[pos] = (unsigned char)((new_id << 4) | (b & 0x0F));
            pos += 2 + (b & 0x0F);
        }
    } else if ((profile & 0xFFF0) == 0x1000) {
        while (pos + 1 < end) {
            unsigned id = buf[pos];
            if (id == 0) {
                pos += 1;
                continue;
            }
            buf[pos] = table[id] ? table[id] : table[0];
            pos += 2 + buf[pos + 1];
        }
    }
    return 0;
}

/* -- the batch: a fan-out's datagrams go out together ---------------------------------------------

   Why: one sendmmsg for up to BATCH datagrams instead of a sendto each. On this kind of machine (a
   VM with the kernel's syscall mitigations) entering the kernel is a large part of a loopback send:
   the floor's C sender spends 3.0-3.6 us a datagram with sendto and 2.5-3.3 us with sendmmsg of 8 or
   32 to 200 receivers (benchmarks.floor prints both; 16 and 32 measured alike in the server). The datagrams of one received packet's
   fan-out leave within the same call as before, so nothing is held back: the batch is sent before
   forward() returns, and before any Python runs in between (a Consumer without a Sender), so that
   Python never finds a batch half made. Each datagram is written in its own staging slot, and what
   a send would have counted is counted when the batch is sent. */

#define BATCH 16

typedef struct {
    Forward *consumer;
    Sender *sender;
    Py_ssize_t size;       /* the packet's size before protection: Consumer.bytes counts that */
    long seq;              /* the rewritten sequence number and timestamp, for last_seq/last_ts */
    unsigned long timestamp;
} Pending;

/* the event loop's thread only, like the GIL holder */
static unsigned char staging[BATCH][STAGING_SIZE];
static Pending pending[BATCH];
static struct mmsghdr messages[BATCH];
static struct iovec vectors[BATCH];
static int batched, batch_fd = -1;

static void sent_one(const Pending *p) {
    Forward *c = p->consumer;
    c->packets++;
    c->bytes += p->size;
    if (((p->seq - (long)c->last_seq) & 0xFFFF) < 0x8000) {
        c->last_seq = p->seq;
        c->last_ts = (long long)p->timestamp;
    }
}

/* Send the batch: 0, or -1 with a Python error (from a fallback). A datagram the socket has no room
   for goes to its Sender's fallback (the event loop's sendto queues it until writable) and counts as
   sent; one the kernel refuses (an unreachable peer and the like) is gone, as any loss on UDP, and
   counts as an error of its Consumer (kelian_forwarding_errors). */
static int flush(void) {
    int count = batched, done = 0;
    char queue[BATCH] = {0};
    while (done < count) {
        int n = sendmmsg(batch_fd, messages + done, (unsigned)(count - done), 0);
        if (n > 0) {
            done += n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            queue[done] = 1;
        else
            queue[done] = -1;
        done++;
    }
    /* counted, and the queued ones copied, before any Python runs: then the batch is free again */
    PyObject *data[BATCH] = {NULL}, *fallback[BATCH] = {NULL}, *address[BATCH] = {NULL};
    int failed = 0;
    for (int i = 0; i < count; i++) {
        Pending *p = &pending[i];
        if (queue[i] < 0) {
            p->consumer->errors++;
        } else {
            sent_one(p);
            if (queue[i] > 0) {
                data[i] = PyBytes_FromStringAndSize((const char *)staging[i], (Py_ssize_t)vectors[i].iov_len);
                failed |= data[i] == NULL;
                fallback[i] = Py_NewRef(p->sender->fallback);
                address[i] = Py_NewRef(p->sender->address);
            }
        }
        Py_DECREF(p->consumer);
        Py_DECREF(p->sender);
    }
    batched = 0;
    for (int i = 0; i < count; i++) {
        if (fallback[i] == NULL)
            continue;
        if (!failed) {
            PyObject *r = PyObject_CallFunctionObjArgs(fallback[i], data[i], address[i], NULL);
            failed = r == NULL;
            Py_XDECREF(r);
        }
        Py_XDECREF(data[i]);
        Py_DECREF(fallback[i]);
        Py_DECREF(address[i]);
    }
    return failed ? -1 : 0;
}

/* Add the datagram in staging[batched] for `s`; the batch goes when full. 0, or -1 (flush). */
static int add_to_batch(Forward *c, Sender *s, int length, Py_ssize_t size, long seq, unsigned long ts) {
    int i = batched;
    vectors[i] = (struct iovec){.iov_base = staging[i], .iov_len = (size_t)length};
    messages[i].msg_hdr = (struct msghdr){
        .msg_name = &s->addr.sa, .msg_namelen = s->addrlen, .msg_iov = &vectors[i], .msg_iovlen = 1};
    pending[i] = (Pending){(Forward *)Py_NewRef(c), (Sender *)Py_NewRef(s), size, seq, ts};
    batch_fd = s->fd;
    batched++;
    return batched == BATCH ? flush() : 0;
}

/* The transport-wide number for the next packet of `s`, from its SendHistory (the Python
   retransmission path numbers from the same counter). */
static long next_twcc_seq(Sender *s) {
    long seq = *s->next_seq;
    *s->next_seq = (uint16_t)((seq + 1) & 0xFFFF);
    return seq;
}

static void record_twcc(Sender *s, long seq, double sent_at, int size) {
    Py_ssize_t i = seq & HISTORY_MASK;
    s->sent_times[i] = sent_at;
    s->sent_sizes[i] = (uint32_t)size;
}

/* One Consumer, as Consumer.send does it. 0 on success or a counted drop, -1 with an exception. */
static int forward_one(Forward *c, Sender *s, const unsigned char *packet, Py_ssize_t n, long seq, long ts,
                       long twcc_at, double sent_at) {
    long d = (seq - (long)c->sync_seq) & 0xFFFF;
    if (d >= 0x8000)
        return 0; /* from before the switch point */
    if (d > 0x4000)
        c->sync_seq = (seq - 0x1000) & 0xFFFF;
    long out_seq = (seq + (long)c->seq_delta) & 0xFFFF;
    unsigned long out_ts = ((unsigned long)ts + (unsigned long)c->ts_delta) & 0xFFFFFFFFUL;
    long twcc_seq = s->next_seq != NULL ? next_twcc_seq(s) : 0;
    if (n > STAGING_SIZE - MAX_TRAILER || n < 12) {
        c->errors++;
        return 0;
    }
    if (batched && s->fd != batch_fd && flush() < 0) /* a batch goes out on one socket */
        return -1;
    unsigned char *buf = staging[batched];
    memcpy(buf, packet, (size_t)n);
    buf[1] = (packet[1] & 0x80) | (c->payload_type & 0x7F);
    buf[2] = out_seq >> 8;
    buf[3] = out_seq & 0xFF;
    buf[4] = out_ts >> 24;
    buf[5] = (out_ts >> 16) & 0xFF;
    buf[6] = (out_ts >> 8) & 0xFF;
    buf[7] = out_ts & 0xFF;
    unsigned long ssrc = (unsigned long)c->ssrc;
    buf[8] = ssrc >> 24;
    buf[9] = (ssrc >> 16) & 0xFF;
    buf[10] = (ssrc >> 8) & 0xFF;
    buf[11] = ssrc & 0xFF;
    if (c->has_vp8)
        rewrite_vp8(buf, packet, n, c->pid_delta, c->tl0_delta);
    if (twcc_at >= 0 && s->next_seq != NULL && twcc_at + 2 <= n) {
        buf[twcc_at] = twcc_seq >> 8;
        buf[twcc_at + 1] = twcc_seq & 0xFF;
    }
    if (c->ext_table != NULL && c->ext_table != Py_None) {
        if (!PyBytes_Check(c->ext_table) || PyBytes_GET_SIZE(c->ext_table) < 256 ||
            remap_extensions(buf, n, (const unsigned char *)PyBytes_AS_STRING(c->ext_table)) < 0) {
            c->errors++;
            return 0;
        }
    }
    int len = (int)n;
    if (s->protect != NULL && s->protect(s->session, buf, &len) != 0) {
        c->errors++;
        return 0;
    }
    if (s->next_seq != NULL)
        record_twcc(s, twcc_seq, sent_at, len);
    return add_to_batch(c, s, len, n, out_seq, out_ts);
}

/* Each Consumer's object, Sender and protect state are cold when its turn comes (hundreds of others
   were touched since its last packet), and perf put most of the fan-out's own time in waiting for
   them: ask for the next ones' while this one is sent. Two Consumers ahead, the object; one ahead,
   what its object points to (read now that it has arrived). */
static inline void prefetch_ahead(PyObject *consumers, Py_ssize_t i) {
    Py_ssize_t n = PyList_GET_SIZE(consumers);
    if (i + 2 < n) {
        const char *object = (const char *)PyList_GET_ITEM(consumers, i + 2);
        __builtin_prefetch(object);
        __builtin_prefetch(object + 64);
        __builtin_prefetch(object + 128);
    }
    PyObject *next = i + 1 < n ? PyList_GET_ITEM(consumers, i + 1) : NULL;
    if (next != NULL && PyObject_TypeCheck(next, &ForwardType)) {
        PyObject *sender = ((Forward *)next)->sender;
        if (sender != NULL && Py_IS_TYPE(sender, &SenderType)) {
            const Sender *s = (const Sender *)sender;
            __builtin_prefetch(s);
            __builtin_prefetch((const char *)s + 64);
            if (s->session != NULL)
                __builtin_prefetch(s->session);
        }
    }
}

/* forward(consumers, packet, seq, ts, twcc_at, sent_at): RtpStream.receive's fan-out */
static PyObject *forward(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "forward(consumers: list, packet: bytes, seq, ts, twcc_at, sent_at)");
        return NULL;
    }
    PyObject *consumers = args[0], *packet = args[1];
    double sent_at = PyFloat_AsDouble(args[5]);
    long seq = PyLong_AsLong(args[2]);
    long ts = (long)(PyLong_AsUnsignedLongMask(args[3]) & 0xFFFFFFFFUL);
    long twcc_at = PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(packet);
    Py_ssize_t n = PyBytes_GET_SIZE(packet);
    /* by index, reading the size each time: a Python send may change the list (it does not today) */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(consumers); i++) {
        prefetch_ahead(consumers, i);
        PyObject *item = PyList_GET_ITEM(consumers, i);
        Py_INCREF(item);
        int rc;
        Forward *c = (Forward *)item;
        if (PyObject_TypeCheck(item, &ForwardType) && c->sender != NULL &&
            Py_IS_TYPE(c->sender, &SenderType) && ((Sender *)c->sender)->ready &&
            ((Sender *)c->sender)->addrlen) {
            Sender *s = (Sender *)c->sender;
            Py_INCREF(s);
            rc = forward_one(c, s, data, n, seq, ts, twcc_at, sent_at);
            Py_DECREF(s);
        } else if ((rc = batched ? flush() : 0) == 0) { /* Python finds no batch half made */
            PyObject *r = PyObject_CallMethodObjArgs(item, str_send, packet, args[2], args[3], NULL);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
        }
        Py_DECREF(item);
        if (rc < 0)
            break;
    }
    /* the batch goes before the call returns, also after an error (the first error is kept) */
    if (batched) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (flush() < 0 && type != NULL)
            PyErr_Clear();
        if (type != NULL)
            PyErr_Restore(type, value, traceback);
    }
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* unprotect(function, session, packet) -> the plaintext, or libsrtp's error code: libsrtp's
   srtp_unprotect or srtp_unprotect_rtcp (`function`, an address, with its `session`) on a copy of
   `packet`. Why here: through cffi, SrtpContext's way (a staging buffer filled, the call, the result
   sliced out) cost about as much as the AES itself for every packet a publisher sends, and the
   compiled fan-out already calls libsrtp by address. */
static PyObject *unprotect(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "unprotect(function: int, session: int, packet: bytes)");
        return NULL;
    }
    protect_fn function = (protect_fn)(uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    void *session = (void *)(uintptr_t)PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (function == NULL || session == NULL) {
        PyErr_SetString(PyExc_ValueError, "unprotect needs libsrtp's function and a session");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[2]);
    if (n > INT_MAX)
        return PyLong_FromLong(-1);
    PyObject *out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(args[2]), n);
    if (out == NULL)
        return NULL;
    int length = (int)n;
    int rc = function(session, PyBytes_AS_STRING(out), &length);
    if (rc != 0) {
        Py_DECREF(out);
        return PyLong_FromLong(rc);
    }
    if (length < n && _PyBytes_Resize(&out, length) < 0)
        return NULL;
    return out;
}

/* router_terms(packet, pt, ext_table, slot) -> (bytes, slot offset or -1): rtp.router_terms */
static PyObject *router_terms(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[3]) ||
        (args[2] != Py_None && (!PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) < 256))) {
        PyErr_SetString(PyExc_TypeError, "router_terms(packet: bytes, pt, ext_table: bytes | None, slot: bytes)");
        return NULL;
    }
    long pt = PyLong_AsLong(args[1]);
    if (pt == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *packet = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *slot = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]), k = PyBytes_GET_SIZE(args[3]);
    if (n < 2) { /* nothing that libsrtp lets through: as the reference, which fails on it */
        PyErr_SetString(PyExc_IndexError, "a packet of fewer than two bytes");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + 4 + k); /* room for a new block and the slot */
    if (out == NULL)
        return NULL;
    unsigned char *buf = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(buf, packet, (size_t)n);
    buf[1] = (unsigned char)((buf[1] & 0x80) | (pt & 0x7F));
    Py_ssize_t size = n, at = -1;
    Py_ssize_t start = 12 + 4 * (buf[0] & 0x0F);
    if (args[2] != Py_None && remap_extensions(buf, n, (const unsigned char *)PyBytes_AS_STRING(args[2])) < 0) {
        at = -1;
    } else if (!(buf[0] & 0x10)) { /* no extensions: a block of its own for the slot */
        if (start <= n) {
            buf[0] |= 0x10;
            memmove(buf + start + 4 + k, buf + start, (size_t)(n - start));
            buf[start] = 0xBE;
            buf[start + 1] = 0xDE;
            buf[start + 2] = (unsigned char)((k >> 2) >> 8);
            buf[start + 3] = (unsigned char)((k >> 2) & 0xFF);
            memcpy(buf + start + 4, slot, (size_t)k);
            size = n + 4 + k;
            at = start + 5;
        }
    } else if (start + 4 <= n) { /* after the existing one-byte elements; two-byte ones are left alone */
        unsigned profile = (buf[start] << 8) | buf[start + 1];
        unsigned words = (buf[start + 2] << 8) | buf[start + 3];
        Py_ssize_t end = start + 4 + 4 * (Py_ssize_t)words;
        if (profile == 0xBEDE && end <= n) {
            memmove(buf + end + k, buf + end, (size_t)(n - end));
            memcpy(buf + end, slot, (size_t)k);
            words += (unsigned)(k >> 2);
            buf[start + 2] = (unsigned char)(words >> 8);
            buf[start + 3] = (unsigned char)(words & 0xFF);
            size = n + k;
            at = end + 1;
        }
    }
    if (size != n + 4 + k && _PyBytes_Resize(&out, size) < 0)
        return NULL;
    return Py_BuildValue("(Nn)", out, at);
}

static PyMethodDef module_methods[] = {
    {"unprotect", (PyCFunction)(void (*)(void))unprotect, METH_FASTCALL,
     "unprotect(function, session, packet): libsrtp's unprotect by address on a copy of packet."},
    {"forward", (PyCFunction)(void (*)(void))forward, METH_FASTCALL,
     "forward(consumers, packet, seq, ts, twcc_at, sent_at): one received packet to every Consumer."},
    {"router_terms", (PyCFunction)(void (*)(void))router_terms, METH_FASTCALL,
     "router_terms(packet, pt, ext_table, slot): a publisher's packet in router terms, and its slot."},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sfu._fanout", "The forwarding path's fan-out, compiled.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (PyType_Ready(&SenderType) < 0 || PyType_Ready(&ForwardType) < 0)
        return NULL;
    str_send = PyUnicode_InternFromString("send");
    if (str_send == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SenderType);
    Py_INCREF(&ForwardType);
    if (PyModule_AddObject(m, "Sender", (PyObject *)&SenderType) < 0 ||
        PyModule_AddObject(m, "Forward", (PyObject *)&ForwardType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
