/*
 * composer.corpus._walk: the stat walk of a warm prepare, in C.
 *
 * A prepare of an unchanged folder reads no file: it stats every MIDI file below the folder
 * and compares the stat keys with the last prepare's (composer/corpus/prepare.py). In Python
 * that costs about twice the system calls themselves (a DirEntry and a stat_result a file);
 * this walk makes the same calls and builds no object a file.
 *
 * stat_keys(root, suffixes, edge_ns) -> (count, keys) | None
 *   Walks root the way composer.corpus.scan.scan_stat does: recursively, skipping names that
 *   start with "."; into folders, never through a symbolic link to one; taking the files
 *   whose name ends, ASCII case aside, with one of suffixes (lowercase bytes). Each file is
 *   stat'ed by name in its open folder (fstatat, following links). keys: one record a file,
 *   sorted by relative path (bytes, "/" between folders): the path, a NUL byte, then five
 *   native int64s (device, inode, size, mtime ns, ctime ns).
 *   None whenever the keys might not stand for the folder, so that the caller scans it in
 *   Python: root or a folder below it that cannot be opened or listed, a file that cannot
 *   be stat'ed or is not a regular file, a file whose mtime or ctime is not before edge_ns
 *   (it may change again within the file system's time resolution), a name whose ending
 *   holds the Kelvin sign (Python's str.lower() makes it a "k": ".KAR" would match there
 *   and not here), a tree deeper than MAX_DEPTH, no file at all, or no memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define MAX_SUFFIXES 16
#define KEY_BYTES (5 * sizeof(int64_t))

#ifdef __APPLE__
#define MTIME_NS(st) ((int64_t)(st).st_mtimespec.tv_sec * 1000000000 + (st).st_mtimespec.tv_nsec)
#define CTIME_NS(st) ((int64_t)(st).st_ctimespec.tv_sec * 1000000000 + (st).st_ctimespec.tv_nsec)
#else
#define MTIME_NS(st) ((int64_t)(st).st_mtim.tv_sec * 1000000000 + (st).st_mtim.tv_nsec)
#define CTIME_NS(st) ((int64_t)(st).st_ctim.tv_sec * 1000000000 + (st).st_ctim.tv_nsec)
#endif

typedef struct {
    char *path;  /* relative path, NUL-terminated (owned) */
    int64_t key[5];
} Record;

typedef struct {
    Record *rows;
    size_t n, cap;
    const char *suffix[MAX_SUFFIXES];
    size_t suffix_len[MAX_SUFFIXES];
    int suffixes;
    int64_t edge;
} Walk;

/* Whether name ends with one of the suffixes, ASCII case aside; -1: the Kelvin sign
 * (E2 84 AA) is in its last bytes, where str.lower() could make a suffix of it. */
static int wanted(const Walk *w, const char *name, size_t len)
{
    size_t from = len > 8 ? len - 8 : 0;
    for (size_t i = from; i + 2 < len; i++)
        if ((unsigned char)name[i] == 0xE2 && (unsigned char)name[i + 1] == 0x84
                && (unsigned char)name[i + 2] == 0xAA)
            return -1;
    for (int s = 0; s < w->suffixes; s++) {
        size_t k = w->suffix_len[s];
        if (k > len)
            continue;
        const char *tail = name + len - k;
        size_t j = 0;
        while (j < k) {
            char c = tail[j];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (c != w->suffix[s][j])
                break;
            j++;
        }
        if (j == k)
            return 1;
    }
    return 0;
}

static int add(Walk *w, const char *prefix, size_t plen, const char *name, size_t nlen,
               const struct stat *st)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        Record *rows = realloc(w->rows, cap * sizeof(Record));
        if (!rows)
            return -1;
        w->rows = rows;
        w->cap = cap;
    }
    char *path = malloc(plen + nlen + 1);
    if (!path)
        return -1;
    memcpy(path, prefix, plen);
    memcpy(path + plen, name, nlen + 1);
    Record *r = &w->rows[w->n++];
    r->path = path;
    r->key[0] = (int64_t)st->st_dev;
    r->key[1] = (int64_t)st->st_ino;
    r->key[2] = (int64_t)st->st_size;
    r->key[3] = MTIME_NS(*st);
    r->key[4] = CTIME_NS(*st);
    return 0;
}

/* Walk the open folder fd (owned: closed here) whose relative path is prefix (empty, or
 * ending with "/"). 0 when done, -1 when the walk declines. */
static int walk(Walk *w, int fd, const char *prefix, size_t plen, int depth)
{
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return -1;
    }
    int status = 0;
    struct dirent *e;
    while (status == 0 && (errno = 0, e = readdir(dir)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.')
            continue;
        size_t nlen = strlen(name);
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat lst;
            if (fstatat(dirfd(dir), name, &lst, AT_SYMLINK_NOFOLLOW) != 0) {
                status = -1;
                break;
            }
            is_dir = S_ISDIR(lst.st_mode);
        }
        if (is_dir) {
            if (depth >= MAX_DEPTH) {
                status = -1;
                break;
            }
            int sub = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            char *next = malloc(plen + nlen + 2);
            if (sub < 0 || !next) {
                if (sub >= 0)
                    close(sub);
                free(next);
                status = -1;
                break;
            }
            memcpy(next, prefix, plen);
            memcpy(next + plen, name, nlen);
            next[plen + nlen] = '/';
            next[plen + nlen + 1] = '\0';
            status = walk(w, sub, next, plen + nlen + 1, depth + 1);
            free(next);
            continue;
        }
        int want = wanted(w, name, nlen);
        if (want == 0)
            continue;
        struct stat st;
        if (want < 0 || fstatat(dirfd(dir), name, &st, 0) != 0 || !S_ISREG(st.st_mode)
                || MTIME_NS(st) >= w->edge || CTIME_NS(st) >= w->edge) {
            status = -1;
            break;
        }
        if (add(w, prefix, plen, name, nlen, &st) != 0)
            status = -1;
    }
    if (status == 0 && errno != 0)
        status = -1;  /* readdir failed part-way */
    closedir(dir);
    return status;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(((const Record *)a)->path, ((const Record *)b)->path);
}

static PyObject *stat_keys(PyObject *self, PyObject *args)
{
    PyObject *root_obj, *suffixes;
    long long edge;
    if (!PyArg_ParseTuple(args, "O&OL", PyUnicode_FSConverter, &root_obj, &suffixes, &edge))
        return NULL;
    Walk w = {0};
    w.edge = (int64_t)edge;
    PyObject *result = NULL;
    if (!PyTuple_Check(suffixes) || PyTuple_GET_SIZE(suffixes) > MAX_SUFFIXES) {
        PyErr_SetString(PyExc_TypeError, "suffixes: a tuple of at most 16 bytes objects");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(suffixes); i++) {
        PyObject *s = PyTuple_GET_ITEM(suffixes, i);
        if (!PyBytes_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "suffixes: a tuple of at most 16 bytes objects");
            goto done;
        }
        w.suffix[i] = PyBytes_AS_STRING(s);
        w.suffix_len[i] = (size_t)PyBytes_GET_SIZE(s);
        w.suffixes++;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(PyBytes_AS_STRING(root_obj), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    status = fd < 0 ? -1 : walk(&w, fd, "", 0, 0);
    if (status == 0 && w.n > 0)
        qsort(w.rows, w.n, sizeof(Record), by_path);
    Py_END_ALLOW_THREADS
    if (status != 0 || w.n == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    size_t total = 0;
    for (size_t i = 0; i < w.n; i++)
        total += strlen(w.rows[i].path) + 1 + KEY_BYTES;
    PyObject *keys = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!keys)
        goto done;
    char *out = PyBytes_AS_STRING(keys);
    for (size_t i = 0; i < w.n; i++) {
        size_t len = strlen(w.rows[i].path) + 1;
        memcpy(out, w.rows[i].path, len);
        memcpy(out + len, w.rows[i].key, KEY_BYTES);
        out += len + KEY_BYTES;
    }
    result = Py_BuildValue("(nN)", (Py_ssize_t)w.n, keys);
done:
    for (size_t i = 0; i < w.n; i++)
        free(w.rows[i].path);
    free(w.rows);
    Py_DECREF(root_obj);
    return result;
}

static PyMethodDef methods[] = {
    {"stat_keys", stat_keys, METH_VARARGS,
     "stat_keys(root, suffixes, edge_ns) -> (count, keys) | None: see _walk.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "The stat walk of a warm prepare (see _walk.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__walk(void)
{
    return PyModule_Create(&module);
}
