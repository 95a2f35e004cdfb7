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
 * parse_tracks(data, chunks, max_notes, first_track)
 *     -> (notes, tempos, controls, programs, end_ticks, warnings, timesigs)
 *   every chunk of the list of (start, end) in one call (track ids first_track, +1, ...):
 *   the tables of all tracks end to end, a list of end ticks, warnings as "track N: ...";
 *   at most max_notes notes in all. ValueError "more than N notes" or "track N: <reason>".
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

/* Append "[track N: ]msg at byte AT" to warnings unless the track has 8 already. */
static int add_warning(PyObject *warnings, int *count, Py_ssize_t label, const char *msg,
                       Py_ssize_t at) {
    if (*count >= 8) return 0; /* keep the first few of each track */
    PyObject *s = label > 0 ? PyUnicode_FromFormat("track %zd: %s at byte %zd", label, msg, at)
                            : PyUnicode_FromFormat("%s at byte %zd", msg, at);
    if (!s) return -1;
    int r = PyList_Append(warnings, s);
    Py_DECREF(s);
    if (r == 0) (*count)++;
    return r;
}

typedef struct {
    Table notes, tempos, controls, programs, timesigs;
    Py_ssize_t *next, next_cap; /* FIFO links between pending notes */
} Tables;

static void tables_free(Tables *t) {
    free(t->notes.data); free(t->tempos.data); free(t->controls.data);
    free(t->programs.data); free(t->timesigs.data); free(t->next);
}

#define WARN(msg, at) do { if (add_warning(warnings, &nwarn, label, msg, at) < 0) return -1; } \
    while (0)
#define PUSH(table, row) do { if (table_push(&tb->table, row) < 0) { PyErr_NoMemory(); \
    return -1; } } while (0)

/* Parse one MTrk body buf[start:end] into tb (notes beyond max_notes in tb are an error).
 * Returns 0, or -1 with a Python exception set (ValueError: a one-line reason, prefixed
 * with "track LABEL: " when label > 0). */
static int parse_chunk(const uint8_t *buf, Py_ssize_t start, Py_ssize_t end,
                       Py_ssize_t max_notes, Py_ssize_t track, Py_ssize_t label, Tables *tb,
                       PyObject *warnings, int64_t *end_tick) {
    Py_ssize_t head[NKEYS], tail[NKEYS];
    for (int k = 0; k < NKEYS; k++) head[k] = tail[k] = -1;
    Py_ssize_t first_note = tb->notes.len;
    int nwarn = 0;
    char errbuf[160];
    errbuf[0] = 0;
    Py_ssize_t pos = start;
    int64_t tick = 0;
    int running = 0;
    while (pos < end) {
        Py_ssize_t at = pos;
        int64_t delta = read_vlq(buf, &pos, end);
        if (delta == -1) break; /* trailing bytes after the last event */
        if (delta == -2) {
            snprintf(errbuf, sizeof errbuf, "malformed delta time at byte %zd", at);
            goto error;
        }
        tick += delta;
        if (tick > MAX_TICK) {
            snprintf(errbuf, sizeof errbuf, "tick count over 2^40 at byte %zd", at);
            goto error;
        }
        if (pos >= end) {
            WARN("track ends inside an event", at);
            break;
        }
        int status = buf[pos];
        if (status == 0xFF) { /* meta event */
            pos++;
            if (pos >= end) {
                WARN("meta event runs past the end of its track", at);
                break;
            }
            int type = buf[pos++];
            int64_t len = read_vlq(buf, &pos, end);
            if (len < 0 || len > end - pos) {
                WARN("meta event runs past the end of its track", at);
                break;
            }
            if (type == 0x2F) { pos += len; break; } /* end of track */
            if (type == 0x51) {
                if (len == 3) {
                    int64_t us = ((int64_t)buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
                    if (us > 0) {
                        int64_t row[2] = {tick, us};
                        PUSH(tempos, row);
                    } else {
                        WARN("tempo 0 ignored", at);
                    }
                } else {
                    WARN("malformed tempo ignored", at);
                }
            } else if (type == 0x58) {
                if (len == 4 && buf[pos] > 0 && buf[pos + 1] <= 6) {
                    int64_t row[3] = {tick, buf[pos], (int64_t)1 << buf[pos + 1]};
                    PUSH(timesigs, row);
                } else {
                    WARN("malformed time signature ignored", at);
                }
            }
            pos += len;
            continue;
        }
        if (status == 0xF0 || status == 0xF7) { /* sysex */
            pos++;
            int64_t len = read_vlq(buf, &pos, end);
            if (len < 0 || len > end - pos) {
                WARN("sysex runs past the end of its track", at);
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
            goto error;
        }
        int kind = running & 0xF0, channel = running & 0x0F;
        int ndata = (kind == 0xC0 || kind == 0xD0) ? 1 : 2;
        if (ndata > end - pos) {
            WARN("track ends inside an event", at);
            break;
        }
        int d1 = buf[pos], d2 = ndata == 2 ? buf[pos + 1] : 0;
        if (d1 > 127 || d2 > 127) {
            snprintf(errbuf, sizeof errbuf, "data byte over 127 at byte %zd", pos);
            goto error;
        }
        pos += ndata;
        int key = channel * 128 + d1;
        if (kind == 0x90 && d2 > 0) { /* note on */
            if (tb->notes.len >= max_notes) {
                PyErr_Format(PyExc_ValueError, "more than %zd notes", max_notes);
                return -1;
            }
            int64_t row[7] = {track, channel, d1, d2, tick, -1, 0};
            PUSH(notes, row);
            if (tb->notes.len > tb->next_cap) {
                Py_ssize_t cap = tb->next_cap ? tb->next_cap * 2 : 256;
                Py_ssize_t *p = (Py_ssize_t *)realloc(tb->next, (size_t)cap * sizeof(Py_ssize_t));
                if (!p) { PyErr_NoMemory(); return -1; }
                tb->next = p;
                tb->next_cap = cap;
            }
            Py_ssize_t idx = tb->notes.len - 1;
            tb->next[idx] = -1;
            if (tail[key] >= 0) tb->next[tail[key]] = idx; else head[key] = idx;
            tail[key] = idx;
        } else if (kind == 0x80 || kind == 0x90) { /* note off */
            Py_ssize_t idx = head[key];
            if (idx >= 0) {
                tb->notes.data[idx * 7 + 5] = tick;
                head[key] = tb->next[idx];
                if (head[key] < 0) tail[key] = -1;
            }
        } else if (kind == 0xB0 && d1 == 64) {
            int64_t row[4] = {track, channel, tick, d2};
            PUSH(controls, row);
        } else if (kind == 0xC0) {
            int64_t row[4] = {track, channel, tick, d1};
            PUSH(programs, row);
        }
    }
    /* close notes still sounding at the end of the track */
    for (Py_ssize_t i = first_note; i < tb->notes.len; i++) {
        if (tb->notes.data[i * 7 + 5] < 0) {
            tb->notes.data[i * 7 + 5] = tick;
            tb->notes.data[i * 7 + 6] = 1;
        }
    }
    *end_tick = tick;
    return 0;

error:
    if (label > 0) PyErr_Format(PyExc_ValueError, "track %zd: %s", label, errbuf);
    else PyErr_SetString(PyExc_ValueError, errbuf);
    return -1;
}

static PyObject *tables_result(Tables *tb, PyObject *end_ticks, PyObject *warnings) {
    return Py_BuildValue("(NNNNOON)", table_bytes(&tb->notes), table_bytes(&tb->tempos),
                         table_bytes(&tb->controls), table_bytes(&tb->programs), end_ticks,
                         warnings, table_bytes(&tb->timesigs));
}

static PyObject *parse_track(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end, max_notes, track = 0;
    if (!PyArg_ParseTuple(args, "y*nnn|n", &view, &start, &end, &max_notes, &track)) return NULL;
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "track bounds outside the file");
        return NULL;
    }
    Tables tb = {{NULL, 0, 0, 7}, {NULL, 0, 0, 2}, {NULL, 0, 0, 4}, {NULL, 0, 0, 4},
                 {NULL, 0, 0, 3}, NULL, 0};
    PyObject *warnings = PyList_New(0), *result = NULL, *tick = NULL;
    int64_t end_tick = 0;
    if (warnings && parse_chunk((const uint8_t *)view.buf, start, end, max_notes, track, 0,
                                &tb, warnings, &end_tick) == 0
        && (tick = PyLong_FromLongLong((long long)end_tick)))
        result = tables_result(&tb, tick, warnings);
    PyBuffer_Release(&view);
    tables_free(&tb);
    Py_XDECREF(tick);
    Py_XDECREF(warnings);
    return result;
}

/* parse_tracks(data, chunks, max_notes, first_track): every chunk in one call (see top). */
static PyObject *parse_tracks(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *chunks;
    Py_ssize_t max_notes, first_track;
    if (!PyArg_ParseTuple(args, "y*O!nn", &view, &PyList_Type, &chunks, &max_notes,
                          &first_track)) return NULL;
    Tables tb = {{NULL, 0, 0, 7}, {NULL, 0, 0, 2}, {NULL, 0, 0, 4}, {NULL, 0, 0, 4},
                 {NULL, 0, 0, 3}, NULL, 0};
    PyObject *warnings = PyList_New(0), *ends = PyList_New(0), *result = NULL;
    if (!warnings || !ends) goto done;
    for (Py_ssize_t t = 0; t < PyList_GET_SIZE(chunks); t++) {
        Py_ssize_t start, end;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(chunks, t), "nn", &start, &end)) goto done;
        if (start < 0 || end > view.len || start > end) {
            PyErr_SetString(PyExc_ValueError, "track bounds outside the file");
            goto done;
        }
        int64_t end_tick = 0;
        if (parse_chunk((const uint8_t *)view.buf, start, end, max_notes, first_track + t,
                        t + 1, &tb, warnings, &end_tick) < 0) goto done;
        PyObject *tick = PyLong_FromLongLong((long long)end_tick);
        if (!tick || PyList_Append(ends, tick) < 0) { Py_XDECREF(tick); goto done; }
        Py_DECREF(tick);
    }
    result = tables_result(&tb, ends, warnings);
done:
    PyBuffer_Release(&view);
    tables_free(&tb);
    Py_XDECREF(ends);
    Py_XDECREF(warnings);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_track", parse_track, METH_VARARGS,
     "parse_track(data, start, end, max_notes, track=0) -> (notes, tempos, controls, "
     "programs, end_tick, warnings, timesigs)"},
    {"parse_tracks", parse_tracks, METH_VARARGS,
     "parse_tracks(data, chunks, max_notes, first_track) -> (notes, tempos, controls, "
     "programs, end_ticks, warnings, timesigs)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smf",
                                    "Fast, defensive MTrk chunk parser.", -1, methods};

PyMODINIT_FUNC PyInit__smf(void) { return PyModule_Create(&module); }
