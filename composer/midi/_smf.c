/*
 * composer._smf: a small, defensive parser for one MTrk chunk of a Standard MIDI File.
 *
 * It is the fast path of composer.midi (pure-Python twin: composer/_smf_ref.py, same rules,
 * tested for identical output). It never reads outside the buffer it is given; every malformed
 * input either raises ValueError with a one-line reason or is skipped with a warning.
 *
 * parse_track(data, start, end, max_notes, track=0)
 *     -> (notes, tempos, controls, programs, end_tick, warnings, timesigs)
 *   notes:    bytes of int64 rows (track, channel, pitch, velocity, start_tick, end_tick, hanging)
 *   tempos:   bytes of int64 rows (tick, microseconds_per_quarter)  -- tempo 0 is dropped
 *   controls: bytes of int64 rows (track, channel, tick, value)       -- CC64 (sustain) only
 *   programs: bytes of int64 rows (track, channel, tick, program)
 *   end_tick: tick of the last event read
 *   warnings: list of str (non-fatal defects in data that carries no notes)
 *   timesigs: bytes of int64 rows (tick, numerator, denominator)   -- denominator = 2^dd;
 *             a time signature that is not 4 bytes, has numerator 0 or dd > 6 is dropped
 *
 * Rules: note-on with velocity 0 is a note-off; notes of the same channel and pitch pair
 * first-in-first-out; a note-off with nothing sounding is ignored; a note still sounding at
 * the end of the track is closed there with hanging=1. Meta and sysex events do not change
 * running status. An event that runs past the end of the track ends the track (warning).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TICK ((int64_t)1 << 40)
#define NKEYS (16 * 128)

typedef struct {
    int64_t *data;
    Py_ssize_t len; /* rows */
    Py_ssize_t cap; /* rows */
    int width;
} Table;

static int table_push(Table *t, const int64_t *row) {
    if (t->len == t->cap) {
        Py_ssize_t cap = t->cap ? t->cap * 2 : 256;
        int64_t *p = (int64_t *)realloc(t->data, (size_t)cap * t->width * sizeof(int64_t));
        if (!p) return -1;
        t->data = p;
        t->cap = cap;
    }
    memcpy(t->data + t->len * t->width, row, t->width * sizeof(int64_t));
    t->len++;
    return 0;
}

static PyObject *table_bytes(Table *t) {
    return PyBytes_FromStringAndSize((const char *)t->data,
                                     (Py_ssize_t)(t->len * t->width * sizeof(int64_t)));
}

/* Read a variable-length quantity (at most 4 bytes). Returns -1 past the end, -2 if too long. */
static int64_t read_vlq(const uint8_t *buf, Py_ssize_t *pos, Py_ssize_t end) {
    int64_t value = 0;
    for (int i = 0; i < 4; i++) {
        if (*pos >= end) return -1;
        uint8_t b = buf[(*pos)++];
        value = (value << 7) | (b & 0x7F);
        if (!(b & 0x80)) return value;
    }
    return -2;
}

static int add_warning(PyObject *warnings, const char *msg, Py_ssize_t at) {
    if (PyList_GET_SIZE(warnings) >= 8) return 0; /* keep the first few */
    PyObject *s = PyUnicode_FromFormat("%s at byte %zd", msg, at);
    if (!s) return -1;
    int r = PyList_Append(warnings, s);
    Py_DECREF(s);
    return r;
}

static PyObject *parse_track(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_notes, track = 0;
    if (!PyArg_ParseTuple(args, "y*nnn|n", &view, &start, &end, &max_notes, &track)) return NULL;
    const uint8_t *buf = (const uint8_t *)view.buf;
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "track bounds outside the file");
        return NULL;
    }
    Table notes = {NULL, 0, 0, 7}, tempos = {NULL, 0, 0, 2};
    Table controls = {NULL, 0, 0, 4}, programs = {NULL, 0, 0, 4}, timesigs = {NULL, 0, 0, 3};
    Py_ssize_t *next = NULL, next_cap = 0; /* FIFO links between pending notes */
    Py_ssize_t head[NKEYS], tail[NKEYS];
    for (int k = 0; k < NKEYS; k++) head[k] = tail[k] = -1;
    PyObject *warnings = PyList_New(0);
    const char *error = NULL;
    char errbuf[160];
    int nomem = 0;
    if (!warnings) goto fail;

    Py_ssize_t pos = start;
    int64_t tick = 0;
    int running = 0;
    while (pos < end) {
        Py_ssize_t at = pos;
        int64_t delta = read_vlq(buf, &pos, end);
        if (delta == -1) break; /* trailing bytes after the last event */
        if (delta == -2) {
            snprintf(errbuf, sizeof errbuf, "malformed delta time at byte %zd", at);
            error = errbuf;
            goto fail;
        }
        tick += delta;
        if (tick > MAX_TICK) {
            snprintf(errbuf, sizeof errbuf, "tick count over 2^40 at byte %zd", at);
            error = errbuf;
            goto fail;
        }
        if (pos >= end) {
            if (add_warning(warnings, "track ends inside an event", at) < 0) goto fail;
            break;
        }
        int status = buf[pos];
        if (status == 0xFF) { /* meta event */
            pos++;
            if (pos >= end) {
                if (add_warning(warnings, "meta event runs past the end of its track", at) < 0)
                    goto fail;
                break;
            }
            int type = buf[pos++];
            int64_t len = read_vlq(buf, &pos, end);
            if (len < 0 || len > end - pos) {
                if (add_warning(warnings, "meta event runs past the end of its track", at) < 0)
                    goto fail;
                break;
            }
            if (type == 0x2F) { pos += len; break; } /* end of track */
            if (type == 0x51) {
                if (len == 3) {
                    int64_t us = ((int64_t)buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
                    if (us > 0) {
                        int64_t row[2] = {tick, us};
                        if (table_push(&tempos, row) < 0) { nomem = 1; goto fail; }
                    } else if (add_warning(warnings, "tempo 0 ignored", at) < 0) {
                        goto fail;
                    }
                } else if (add_warning(warnings, "malformed tempo ignored", at) < 0) {
                    goto fail;
                }
            } else if (type == 0x58) {
                if (len == 4 && buf[pos] > 0 && buf[pos + 1] <= 6) {
                    int64_t row[3] = {tick, buf[pos], (int64_t)1 << buf[pos + 1]};
                    if (table_push(&timesigs, row) < 0) { nomem = 1; goto fail; }
                } else if (add_warning(warnings, "malformed time signature ignored", at) < 0) {
                    goto fail;
                }
            }
            pos += len;
            continue;
        }
        if (status == 0xF0 || status == 0xF7) { /* sysex */
            pos++;
            int64_t len = read_vlq(buf, &pos, end);
            if (len < 0 || len > end - pos) {
                if (add_warning(warnings, "sysex runs past the end of its track", at) < 0)
                    goto fail;
                break;
            }
            pos += len;
            continue;
        }
        if (status > 0xF0) { /* system common / real-time bytes: not valid in a file; skip */
            pos++;
            int skip = (status == 0xF2) ? 2 : (status == 0xF1 || status == 0xF3) ? 1 : 0;
            if (skip > end - pos) break;
            pos += skip;
            continue;
        }
        if (status & 0x80) {
            running = status;
            pos++;
        } else if (!running) {
            snprintf(errbuf, sizeof errbuf, "data byte without a status byte at byte %zd", at);
            error = errbuf;
            goto fail;
        }
        int kind = running & 0xF0, channel = running & 0x0F;
        int ndata = (kind == 0xC0 || kind == 0xD0) ? 1 : 2;
        if (ndata > end - pos) {
            if (add_warning(warnings, "track ends inside an event", at) < 0) goto fail;
            break;
        }
        int d1 = buf[pos], d2 = ndata == 2 ? buf[pos + 1] : 0;
        if (d1 > 127 || d2 > 127) {
            snprintf(errbuf, sizeof errbuf, "data byte over 127 at byte %zd", pos);
            error = errbuf;
            goto fail;
        }
        pos += ndata;
        int key = channel * 128 + d1;
        if (kind == 0x90 && d2 > 0) { /* note on */
            if (notes.len >= max_notes) {
                snprintf(errbuf, sizeof errbuf, "more than %zd notes", max_notes);
                error = errbuf;
                goto fail;
            }
            int64_t row[7] = {track, channel, d1, d2, tick, -1, 0};
            if (table_push(&notes, row) < 0) { nomem = 1; goto fail; }
            if (notes.len > next_cap) {
                Py_ssize_t cap = next_cap ? next_cap * 2 : 256;
                Py_ssize_t *p = (Py_ssize_t *)realloc(next, (size_t)cap * sizeof(Py_ssize_t));
                if (!p) { nomem = 1; goto fail; }
                next = p;
                next_cap = cap;
            }
            Py_ssize_t idx = notes.len - 1;
            next[idx] = -1;
            if (tail[key] >= 0) next[tail[key]] = idx; else head[key] = idx;
            tail[key] = idx;
        } else if (kind == 0x80 || kind == 0x90) { /* note off */
            Py_ssize_t idx = head[key];
            if (idx >= 0) {
                notes.data[idx * 7 + 5] = tick;
                head[key] = next[idx];
                if (head[key] < 0) tail[key] = -1;
            }
        } else if (kind == 0xB0 && d1 == 64) {
            int64_t row[4] = {track, channel, tick, d2};
            if (table_push(&controls, row) < 0) { nomem = 1; goto fail; }
        } else if (kind == 0xC0) {
            int64_t row[4] = {track, channel, tick, d1};
            if (table_push(&programs, row) < 0) { nomem = 1; goto fail; }
        }
    }
    /* close notes still sounding at the end of the track */
    for (Py_ssize_t i = 0; i < notes.len; i++) {
        if (notes.data[i * 7 + 5] < 0) {
            notes.data[i * 7 + 5] = tick;
            notes.data[i * 7 + 6] = 1;
        }
    }
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("(NNNNLNN)", table_bytes(&notes), table_bytes(&tempos),
                                     table_bytes(&controls), table_bytes(&programs),
                                     (long long)tick, warnings, table_bytes(&timesigs));
    free(notes.data); free(tempos.data); free(controls.data); free(programs.data);
    free(timesigs.data); free(next);
    return result;

fail:
    PyBuffer_Release(&view);
    free(notes.data); free(tempos.data); free(controls.data); free(programs.data);
    free(timesigs.data); free(next);
    Py_XDECREF(warnings);
    if (nomem) return PyErr_NoMemory();
    if (error) PyErr_SetString(PyExc_ValueError, error);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_track", parse_track, METH_VARARGS,
     "parse_track(data, start, end, max_notes, track=0) -> (notes, tempos, controls, "
     "programs, end_tick, warnings, timesigs)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smf",
                                    "Fast, defensive MTrk chunk parser.", -1, methods};

PyMODINIT_FUNC PyInit__smf(void) { return PyModule_Create(&module); }
