/* sfu._srtp: SRTP protect for AEAD_AES_128_GCM (RFC 7714), over OpenSSL's AES-GCM.

Why not libsrtp, which kelian uses for everything else of SRTP: with the fan-out compiled
(sfu/_fanout.c), perf on the server under the load tool put 22% of its CPU in libsrtp's protect, and
only about 3% of it was the AES-GCM itself. The rest was libsrtp's bookkeeping around it: finding the
stream of the SSRC in the session, a 1,024-bit replay window shifted on every packet (on the sending
side), the key-usage counter, and re-initialising the cipher through several layers. A protect for a
sender needs none of that but the packet index. Here one OpenSSL context per transport, keyed once,
gets the IV, the header as AAD, the payload and the tag: about a quarter of libsrtp's cost on this
machine (docs/performance.md). libsrtp stays for SRTCP, for unprotect, for AES-CM, and wherever this
module is not built; tests/test_srtp.py checks that both produce the same bytes.

The function `protect` has libsrtp's srtp_protect signature, so the fan-out and sfu/srtp.py call
either through one pointer. Every RTP packet of a transport goes through the same one (sfu/srtp.py
makes sure), so each SSRC's rollover counter is counted in one place.

What it reproduces of libsrtp 2.x, and must keep reproducing (the receiver is libsrtp or a browser):
- session key and salt: the AES-CM PRF of RFC 3711 4.3, with GCM's 12-byte master salt padded with
  zeros to 14 bytes as libsrtp does (srtp_stream_init_keys);
- the packet index: libsrtp's estimate from the highest index sent on the SSRC (srtp_rdbx_estimate_index),
  and its refusal of a packet older than the replay window (retransmissions under the window are
  allowed, as with libsrtp's allow_repeat_tx);
- the IV of RFC 7714 8.1: (00 00 || SSRC || ROC || SEQ) XOR the session salt; the AAD is the header
  through its extension; the 16-byte tag follows the payload.
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define KEY_LEN 16
#define MASTER_SALT_LEN 12
#define TAG_LEN 16

/* libsrtp's srtp_err_status_t values for the refusals this file can make */
#define ERR_BAD_PARAM 2
#define ERR_CIPHER_FAIL 8
#define ERR_REPLAY_OLD 10
#define ERR_ALLOC_FAIL 3

typedef struct {
    uint32_t ssrc; /* as in the header: network order */
    uint64_t index; /* highest packet index sent: ROC << 16 | SEQ */
} Stream;

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx; /* AES-128-GCM with the session key */
    unsigned char salt[12];
    int64_t window; /* libsrtp's replay window: an index this far behind the highest is refused */
    Stream *streams; /* a transport sends a handful of SSRCs: a short array, searched in order, */
    Py_ssize_t count, capacity;
    Stream inline_streams[4]; /* here while they fit: one cache miss fewer per packet */
} GcmProtect;

/* libsrtp's srtp_index_guess and srtp_rdbx_estimate_index, in one: the index of sequence number
   `s` given the highest index sent, and the difference between the two. */
static int64_t estimate(uint64_t local, uint16_t s, uint64_t *guess) {
    if (local <= 0x8000) {
        *guess = s;
        return (int64_t)s - (int64_t)local;
    }
    uint32_t local_roc = (uint32_t)(local >> 16), roc;
    int local_seq = (uint16_t)local, seq = s;
    int64_t difference;
    if (local_seq < 0x8000) {
        if (seq - local_seq > 0x8000) {
            roc = local_roc - 1;
            difference = seq - local_seq - 0x10000;
        } else {
            roc = local_roc;
            difference = seq - local_seq;
        }
    } else if (local_seq - 0x8000 > seq) {
        roc = local_roc + 1;
        difference = seq - local_seq + 0x10000;
    } else {
        roc = local_roc;
        difference = seq - local_seq;
    }
    *guess = ((uint64_t)roc << 16) | s;
    return difference;
}

static Stream *stream_of(GcmProtect *self, uint32_t ssrc) {
    for (Py_ssize_t i = 0; i < self->count; i++)
        if (self->streams[i].ssrc == ssrc)
            return &self->streams[i];
    if (self->count == self->capacity) {
        Py_ssize_t capacity = 2 * self->capacity;
        Stream *grown = PyMem_Malloc((size_t)capacity * sizeof(Stream));
        if (grown == NULL)
            return NULL;
        memcpy(grown, self->streams, (size_t)self->count * sizeof(Stream));
        if (self->streams != self->inline_streams)
            PyMem_Free(self->streams);
        self->streams = grown;
        self->capacity = capacity;
    }
    Stream *stream = &self->streams[self->count++];
    stream->ssrc = ssrc;
    stream->index = 0;
    return stream;
}

/* srtp_protect's contract: `packet` holds *length bytes of RTP and room for the tag after them. */
static int protect(void *session, void *packet, int *length) {
    GcmProtect *self = session;
    unsigned char *p = packet;
    int n = *length;
    if (n < 12)
        return ERR_BAD_PARAM;
    int header = 12 + 4 * (p[0] & 0x0F);
    if (n < header)
        return ERR_BAD_PARAM;
    if (p[0] & 0x10) {
        if (n < header + 4)
            return ERR_BAD_PARAM;
        header += 4 + 4 * ((p[header + 2] << 8) | p[header + 3]);
        if (n < header)
            return ERR_BAD_PARAM;
    }
    uint32_t ssrc;
    memcpy(&ssrc, p + 8, 4);
    Stream *stream = stream_of(self, ssrc);
    if (stream == NULL)
        return ERR_ALLOC_FAIL;
    uint64_t index;
    int64_t delta = estimate(stream->index, (uint16_t)((p[2] << 8) | p[3]), &index);
    if (delta > 0)
        stream->index += (uint64_t)delta;
    else if (delta <= -self->window)
        return ERR_REPLAY_OLD;

    unsigned char iv[12] = {0};
    uint32_t roc = (uint32_t)(index >> 16);
    memcpy(iv + 2, p + 8, 4);
    iv[6] = roc >> 24, iv[7] = roc >> 16, iv[8] = roc >> 8, iv[9] = roc;
    iv[10] = p[2], iv[11] = p[3];
    for (int i = 0; i < 12; i++)
        iv[i] ^= self->salt[i];
    int out, last;
    EVP_CIPHER_CTX *ctx = self->ctx;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &out, p, header) != 1 ||
        EVP_EncryptUpdate(ctx, p + header, &out, p + header, n - header) != 1 ||
        EVP_EncryptFinal_ex(ctx, p + header + out, &last) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, p + n) != 1)
        return ERR_CIPHER_FAIL;
    *length = n + TAG_LEN;
    return 0;
}

/* RFC 3711 4.3.3 (the AES-CM PRF), as libsrtp keys GCM: keystream of AES-128-CTR under the master
   key, from the block (master salt, zero-padded to 14 bytes, with `label` XORed into byte 7) || 00 00. */
static int derive(const unsigned char *master, unsigned char label, unsigned char *out, int length) {
    unsigned char block[16] = {0}, zeros[16] = {0};
    memcpy(block, master + KEY_LEN, MASTER_SALT_LEN);
    block[7] ^= label;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int written, ok = ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, master, block) == 1 &&
                      EVP_EncryptUpdate(ctx, out, &written, zeros, length) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static int GcmProtect_init(GcmProtect *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"key_and_salt", "window", NULL};
    Py_buffer master;
    Py_ssize_t window;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*n", names, &master, &window))
        return -1;
    if (master.len != KEY_LEN + MASTER_SALT_LEN || window < 1) {
        PyBuffer_Release(&master);
        PyErr_SetString(PyExc_ValueError, "GcmProtect takes a 16-byte key and 12-byte salt, and a window");
        return -1;
    }
    unsigned char key[KEY_LEN];
    int ok = derive(master.buf, 0x00, key, KEY_LEN) && derive(master.buf, 0x02, self->salt, 12);
    PyBuffer_Release(&master);
    if (ok && self->ctx == NULL)
        self->ctx = EVP_CIPHER_CTX_new();
    ok = ok && self->ctx != NULL && EVP_EncryptInit_ex(self->ctx, EVP_aes_128_gcm(), NULL, key, NULL) == 1;
    memset(key, 0, sizeof key);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not make an AES-128-GCM context");
        return -1;
    }
    self->window = window;
    if (self->streams != self->inline_streams)
        PyMem_Free(self->streams);
    self->streams = self->inline_streams;
    self->capacity = sizeof self->inline_streams / sizeof(Stream);
    self->count = 0;
    return 0;
}

static void GcmProtect_dealloc(GcmProtect *self) {
    EVP_CIPHER_CTX_free(self->ctx); /* clears the key schedule */
    if (self->streams != self->inline_streams)
        PyMem_Free(self->streams);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *GcmProtect_pointers(GcmProtect *self, PyObject *unused) {
    return Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)&protect,
                         (unsigned long long)(uintptr_t)self);
}

static PyMethodDef GcmProtect_methods[] = {
    {"pointers", (PyCFunction)GcmProtect_pointers, METH_NOARGS,
     "(protect, session): srtp_protect's signature and its first argument, as addresses, valid while "
     "this object lives."},
    {NULL},
};

static PyTypeObject GcmProtectType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu._srtp.GcmProtect",
    .tp_basicsize = sizeof(GcmProtect),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GcmProtect(key_and_salt, window): the sending side of one AEAD_AES_128_GCM SRTP session.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)GcmProtect_init,
    .tp_dealloc = (destructor)GcmProtect_dealloc,
    .tp_methods = GcmProtect_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "sfu._srtp",
    .m_doc = "SRTP protect for AEAD_AES_128_GCM over OpenSSL (see sfu/srtp.py).", .m_size = -1,
};

PyMODINIT_FUNC PyInit__srtp(void) {
    if (PyType_Ready(&GcmProtectType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&GcmProtectType);
    if (PyModule_AddObject(m, "GcmProtect", (PyObject *)&GcmProtectType) < 0) {
        Py_DECREF(&GcmProtectType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
