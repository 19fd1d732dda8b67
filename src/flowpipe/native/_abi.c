/*
 * flowpipe.native._abi: the host side of flowpipe/stage_abi.h.
 *
 * Why C and not ctypes: a batch is converted to the ABI's structs and back in one pass
 * here (building ctypes structs per record costs microseconds), and every call into the
 * library runs with the GIL released so that N worker threads of a native stage run in
 * parallel. Outputs are copied into a per-instance arena while the GIL is released and
 * turned into Python objects once the call returns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "flowpipe/stage_abi.h"

#define META_INHERIT (-1) /* the source input's metadata object, unchanged */
#define META_NONE (-2)    /* no metadata */

static PyObject* NativeError;  /* every failure reported by a library or this module */
static PyObject* meta_class;   /* flowpipe.sdk.PayloadMeta */
static PyObject* default_log;  /* log(level, message, file, line) outside any instance */
static PyObject* meta_kwnames; /* ("enqueue_ts_ns", ..., "attrs") */
static PyObject *s_enqueue_ts_ns, *s_trace_id, *s_span_id, *s_flags, *s_schema_id, *s_attrs, *s_copy;

/* ------------------------------------------------------------------------------------ */
/* Growable scratch buffers, reused across batches so a steady flow allocates nothing.  */

typedef struct {
  char* ptr;
  size_t len, cap;
} Buf;

/* Room for `extra` more bytes; 0 on success. Never touches Python (runs without GIL). */
static int buf_reserve(Buf* b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  char* p = realloc(b->ptr, cap);
  if (!p) return -1;
  b->ptr = p;
  b->cap = cap;
  return 0;
}

static int buf_append(Buf* b, const void* data, size_t n, size_t* offset) {
  if (buf_reserve(b, n)) return -1;
  *offset = b->len;
  if (n) memcpy(b->ptr + b->len, data, n);
  b->len += n;
  return 0;
}

/* Typed arrays live in Bufs too; these grow them by element count. */
#define BUF_AT(b, type, i) (((type*)(b).ptr)[i])
#define BUF_COUNT(b, type) ((b).len / sizeof(type))

static void* buf_push(Buf* b, size_t size) {
  if (buf_reserve(b, size)) return NULL;
  void* p = b->ptr + b->len;
  b->len += size;
  return p;
}

/* An output record, as emitted; data and strings live in the instance's out_bytes. */
typedef struct {
  size_t offset, size;
  int64_t source;
  Py_ssize_t meta; /* index into out_metas, or META_INHERIT / META_NONE */
  int reuse;       /* the source input's own bytes: forward that object */
} OutRecord;

typedef struct {
  uint64_t enqueue_ts_ns;
  uint8_t trace_id[16], span_id[8];
  uint32_t flags;
  size_t schema_offset, schema_len, attr_first, attr_count;
} OutMeta;

typedef struct {
  size_t key_offset, key_len;
  int32_t type;
  int64_t i;
  double d;
  size_t str_offset, str_len;
} OutAttr;

/* ------------------------------------------------------------------------------------ */
/* Library                                                                               */

typedef struct {
  PyObject_HEAD
  const flowpipe_stage_api* api;
  int kind;
  PyObject* name; /* str */
  PyObject* path; /* str */
} LibraryObject;

/* ------------------------------------------------------------------------------------ */
/* Instance                                                                              */

typedef struct {
  PyObject_HEAD
  LibraryObject* library;
  const flowpipe_stage_api* api;
  void* stage;
  PyObject* log;        /* log(level, message, file, line) */
  int log_level;        /* lowest Python logging level that is emitted */
  int stop;             /* host -> stage, atomic */
  int stop_requested;   /* stage -> host, atomic */
  int busy;             /* a call is in progress (guards against use from two threads) */
  /* inputs of the current call */
  Buf in_payloads, in_metas, in_attrs, in_strings, in_views;
  size_t in_count;
  /* outputs of the current call */
  Buf out_records, out_metas, out_attrs, out_bytes, used;
  const char* emit_error;
} InstanceObject;

static int py_level(int32_t level) {
  if (level <= FLOWPIPE_LOG_DEBUG) return 10;
  if (level >= FLOWPIPE_LOG_FATAL) return 50;
  return 10 * (level + 1);
}

static int interpreter_alive(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

static void host_log(void* host_instance, int32_t level, const char* message, size_t len,
                     const char* file, int32_t line) {
  InstanceObject* self = host_instance;
  if (self && py_level(level) < self->log_level) return;
  if (!interpreter_alive()) { /* e.g. a static destructor at process exit */
    fprintf(stderr, "flowpipe native: %.*s\n", (int)len, message);
    return;
  }
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject* fn = self ? self->log : default_log;
  if (fn) {
    PyObject* args[4] = {PyLong_FromLong(py_level(level)),
                         PyUnicode_DecodeUTF8(message, (Py_ssize_t)len, "replace"),
                         PyUnicode_DecodeFSDefault(file ? file : ""), PyLong_FromLong(line)};
    if (args[0] && args[1] && args[2] && args[3]) {
      PyObject* result = PyObject_Vectorcall(fn, args, 4, NULL);
      Py_XDECREF(result);
    }
    if (PyErr_Occurred()) PyErr_WriteUnraisable(fn); /* a broken handler must not kill the stage */
    for (int i = 0; i < 4; i++) Py_XDECREF(args[i]);
  }
  PyGILState_Release(gil);
}

static int32_t host_log_enabled(void* host_instance, int32_t level) {
  InstanceObject* self = host_instance;
  return !self || py_level(level) >= self->log_level;
}

static int32_t host_stop_requested(void* host_instance) {
  return host_instance && __atomic_load_n(&((InstanceObject*)host_instance)->stop, __ATOMIC_RELAXED);
}

static void host_request_stop(void* host_instance) {
  if (host_instance)
    __atomic_store_n(&((InstanceObject*)host_instance)->stop_requested, 1, __ATOMIC_RELAXED);
}

static const flowpipe_host_api host_api = {
    FLOWPIPE_STAGE_ABI_VERSION, host_log, host_log_enabled, host_stop_requested, host_request_stop,
};

/* ---- emit: runs without the GIL ------------------------------------------------------ */

static int meta_is_empty(const flowpipe_meta* m) {
  static const uint8_t zero[16];
  return m->enqueue_ts_ns == 0 && m->flags == 0 && m->schema_id.len == 0 && m->attr_count == 0 &&
         !memcmp(m->trace_id, zero, 16) && !memcmp(m->span_id, zero, 8);
}

static int emit_meta(InstanceObject* self, const flowpipe_meta* m, Py_ssize_t* index) {
  OutMeta* out = buf_push(&self->out_metas, sizeof(OutMeta));
  if (!out) return -1;
  *index = (Py_ssize_t)BUF_COUNT(self->out_metas, OutMeta) - 1;
  out->enqueue_ts_ns = m->enqueue_ts_ns;
  memcpy(out->trace_id, m->trace_id, 16);
  memcpy(out->span_id, m->span_id, 8);
  out->flags = m->flags;
  out->schema_len = m->schema_id.len;
  out->attr_first = BUF_COUNT(self->out_attrs, OutAttr);
  out->attr_count = m->attr_count;
  if (buf_append(&self->out_bytes, m->schema_id.ptr, m->schema_id.len, &out->schema_offset))
    return -1;
  for (size_t i = 0; i < m->attr_count; i++) {
    const flowpipe_attr* a = &m->attrs[i];
    OutAttr* o = buf_push(&self->out_attrs, sizeof(OutAttr));
    if (!o) return -1;
    memset(o, 0, sizeof *o);
    o->type = a->type;
    o->key_len = a->key.len;
    if (buf_append(&self->out_bytes, a->key.ptr, a->key.len, &o->key_offset)) return -1;
    switch (a->type) {
      case FLOWPIPE_ATTR_INT: o->i = a->value.i; break;
      case FLOWPIPE_ATTR_DOUBLE: o->d = a->value.d; break;
      case FLOWPIPE_ATTR_BOOL: o->i = a->value.b != 0; break;
      case FLOWPIPE_ATTR_STRING:
        o->str_len = a->value.s.len;
        if (buf_append(&self->out_bytes, a->value.s.ptr, a->value.s.len, &o->str_offset)) return -1;
        break;
      default: self->emit_error = "emit: attribute of unknown type"; return -1;
    }
  }
  return 0;
}

static int32_t host_emit(void* ctx, const flowpipe_payload* payload, int64_t source) {
  InstanceObject* self = ctx;
  if (source < -1 || source >= (int64_t)self->in_count) {
    self->emit_error = "emit: source is not the index of an input of this call";
    return FLOWPIPE_ERROR;
  }
  if (!payload->data && payload->size) {
    self->emit_error = "emit: data is NULL but size is not 0";
    return FLOWPIPE_ERROR;
  }
  OutRecord record = {0, payload->size, source, META_INHERIT, 0};
  const flowpipe_payload* input = source >= 0 ? &BUF_AT(self->in_payloads, flowpipe_payload, source) : NULL;
  if (input && payload->data == input->data && payload->size == input->size) {
    record.reuse = 1;
  } else if (buf_append(&self->out_bytes, payload->data, payload->size, &record.offset)) {
    goto oom;
  }
  const flowpipe_meta* m = payload->meta;
  if (m && !(input && m == input->meta)) {
    if (meta_is_empty(m)) {
      record.meta = META_NONE;
    } else if (emit_meta(self, m, &record.meta)) {
      if (self->emit_error) return FLOWPIPE_ERROR;
      goto oom;
    }
  }
  OutRecord* slot = buf_push(&self->out_records, sizeof(OutRecord));
  if (!slot) goto oom;
  *slot = record;
  return FLOWPIPE_OK;
oom:
  self->emit_error = "emit: out of memory";
  return FLOWPIPE_ERROR;
}

/* ---- inputs: Python batch -> ABI structs (GIL held) ---------------------------------- */

/* A one-off huge batch must not pin its memory for the life of the instance. */
#define KEEP_BYTES (16u << 20)

/* After every call: releases the inputs' buffers and trims the arenas. */
static void finish_call(InstanceObject* self) {
  size_t n = BUF_COUNT(self->in_views, Py_buffer);
  for (size_t i = 0; i < n; i++) PyBuffer_Release(&BUF_AT(self->in_views, Py_buffer, i));
  self->in_views.len = 0;
  self->in_count = 0;
  Buf* arenas[] = {&self->in_strings, &self->out_bytes};
  for (size_t i = 0; i < sizeof arenas / sizeof *arenas; i++) {
    if (arenas[i]->cap > KEEP_BYTES) {
      free(arenas[i]->ptr);
      arenas[i]->ptr = NULL;
      arenas[i]->cap = arenas[i]->len = 0;
    }
  }
}

/* Strings are copied (the dicts they come from could change while the GIL is released);
 * offsets are stored first and become pointers once the string arena stops moving. */
static int copy_str(InstanceObject* self, PyObject* s, flowpipe_str* out, const char* what) {
  if (!PyUnicode_Check(s)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(s)->tp_name);
    return -1;
  }
  Py_ssize_t len;
  const char* p = PyUnicode_AsUTF8AndSize(s, &len);
  size_t offset;
  if (!p) return -1;
  if (buf_append(&self->in_strings, p, (size_t)len, &offset)) {
    PyErr_NoMemory();
    return -1;
  }
  out->ptr = (const char*)(uintptr_t)offset;
  out->len = (size_t)len;
  return 0;
}

static int copy_id(PyObject* meta, PyObject* name, uint8_t* out, Py_ssize_t size) {
  PyObject* v = PyObject_GetAttr(meta, name);
  if (!v) return -1;
  int ok = PyBytes_Check(v) && PyBytes_GET_SIZE(v) == size;
  if (ok)
    memcpy(out, PyBytes_AS_STRING(v), (size_t)size);
  else
    PyErr_Format(PyExc_ValueError, "PayloadMeta.%U must be %zd bytes", name, size);
  Py_DECREF(v);
  return ok ? 0 : -1;
}

static int convert_attrs(InstanceObject* self, PyObject* attrs, flowpipe_meta* out) {
  if (!PyDict_Check(attrs)) {
    PyErr_SetString(PyExc_TypeError, "PayloadMeta.attrs must be a dict");
    return -1;
  }
  out->attrs = (const flowpipe_attr*)(uintptr_t)BUF_COUNT(self->in_attrs, flowpipe_attr);
  out->attr_count = (size_t)PyDict_GET_SIZE(attrs);
  Py_ssize_t pos = 0;
  PyObject *key, *value;
  while (PyDict_Next(attrs, &pos, &key, &value)) {
    flowpipe_attr* a = buf_push(&self->in_attrs, sizeof(flowpipe_attr));
    if (!a) {
      PyErr_NoMemory();
      return -1;
    }
    memset(a, 0, sizeof *a);
    if (copy_str(self, key, &a->key, "attribute key")) return -1;
    if (PyBool_Check(value)) {
      a->type = FLOWPIPE_ATTR_BOOL;
      a->value.b = value == Py_True;
    } else if (PyLong_Check(value)) {
      a->type = FLOWPIPE_ATTR_INT;
      a->value.i = PyLong_AsLongLong(value);
      if (a->value.i == -1 && PyErr_Occurred()) return -1;
    } else if (PyFloat_Check(value)) {
      a->type = FLOWPIPE_ATTR_DOUBLE;
      a->value.d = PyFloat_AS_DOUBLE(value);
    } else if (PyUnicode_Check(value)) {
      a->type = FLOWPIPE_ATTR_STRING;
      if (copy_str(self, value, &a->value.s, "attribute value")) return -1;
    } else {
      PyErr_Format(PyExc_TypeError, "attribute %R: value must be int, float, bool or str, not %.100s",
                   key, Py_TYPE(value)->tp_name);
      return -1;
    }
  }
  return 0;
}

static int convert_meta(InstanceObject* self, PyObject* meta, flowpipe_meta* out) {
  memset(out, 0, sizeof *out);
  PyObject* v = PyObject_GetAttr(meta, s_enqueue_ts_ns);
  if (!v) return -1;
  out->enqueue_ts_ns = PyLong_AsUnsignedLongLong(v);
  Py_DECREF(v);
  if (PyErr_Occurred()) return -1;
  if (copy_id(meta, s_trace_id, out->trace_id, 16) || copy_id(meta, s_span_id, out->span_id, 8)) return -1;
  if (!(v = PyObject_GetAttr(meta, s_flags))) return -1;
  unsigned long flags = PyLong_AsUnsignedLong(v);
  Py_DECREF(v);
  if (PyErr_Occurred()) return -1;
  if (flags > UINT32_MAX) {
    PyErr_SetString(PyExc_OverflowError, "PayloadMeta.flags does not fit in 32 bits");
    return -1;
  }
  out->flags = (uint32_t)flags;
  if (!(v = PyObject_GetAttr(meta, s_schema_id))) return -1;
  int rc = copy_str(self, v, &out->schema_id, "PayloadMeta.schema_id");
  Py_DECREF(v);
  if (rc || !(v = PyObject_GetAttr(meta, s_attrs))) return -1;
  rc = convert_attrs(self, v, out);
  Py_DECREF(v);
  return rc;
}

/* Fills in_payloads (and in_metas) from `items` and `metas` (tuples that keep the records
 * and their metadata alive; metas may be NULL). */
static int convert_inputs(InstanceObject* self, PyObject* items, PyObject* metas) {
  Py_ssize_t n = PyTuple_GET_SIZE(items);
  self->in_payloads.len = self->in_metas.len = self->in_attrs.len = self->in_strings.len = 0;
  if (buf_reserve(&self->in_payloads, (size_t)n * sizeof(flowpipe_payload)) ||
      (metas && buf_reserve(&self->in_metas, (size_t)n * sizeof(flowpipe_meta)))) {
    PyErr_NoMemory();
    return -1;
  }
  self->in_payloads.len = (size_t)n * sizeof(flowpipe_payload);
  flowpipe_payload* payloads = (flowpipe_payload*)self->in_payloads.ptr;
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject* item = PyTuple_GET_ITEM(items, i);
    flowpipe_payload* p = &payloads[i];
    p->meta = NULL;
    if (PyBytes_CheckExact(item)) {
      p->data = (const uint8_t*)PyBytes_AS_STRING(item);
      p->size = (size_t)PyBytes_GET_SIZE(item);
    } else if (PyUnicode_Check(item)) {
      Py_ssize_t len;
      p->data = (const uint8_t*)PyUnicode_AsUTF8AndSize(item, &len);
      if (!p->data) return -1;
      p->size = (size_t)len;
    } else if (PyObject_CheckBuffer(item)) {
      Py_buffer* view = buf_push(&self->in_views, sizeof(Py_buffer));
      if (!view) {
        PyErr_NoMemory();
        return -1;
      }
      if (PyObject_GetBuffer(item, view, PyBUF_SIMPLE)) {
        self->in_views.len -= sizeof(Py_buffer);
        return -1;
      }
      p->data = view->buf;
      p->size = (size_t)view->len;
    } else {
      PyErr_Format(PyExc_TypeError, "record %zd is %.100s; native stages take bytes, str or buffer records",
                   i, Py_TYPE(item)->tp_name);
      return -1;
    }
  }
  if (metas) {
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject* meta = PyTuple_GET_ITEM(metas, i);
      if (meta == Py_None) continue;
      flowpipe_meta* m = buf_push(&self->in_metas, sizeof(flowpipe_meta));
      if (convert_meta(self, meta, m)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyErr_Format(type, "metadata of record %zd: %S", i, value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
      }
      payloads[i].meta = (const flowpipe_meta*)(uintptr_t)(BUF_COUNT(self->in_metas, flowpipe_meta));
    }
    /* The arenas are final now: turn stored offsets into pointers (meta index is +1 so
     * that 0 can stay NULL). */
    flowpipe_meta* base = (flowpipe_meta*)self->in_metas.ptr;
    flowpipe_attr* attrs = (flowpipe_attr*)self->in_attrs.ptr;
    const char* strings = self->in_strings.ptr;
    for (Py_ssize_t i = 0; i < n; i++)
      if (payloads[i].meta) payloads[i].meta = &base[(uintptr_t)payloads[i].meta - 1];
    for (size_t i = 0; i < BUF_COUNT(self->in_metas, flowpipe_meta); i++) {
      base[i].schema_id.ptr = strings + (uintptr_t)base[i].schema_id.ptr;
      base[i].attrs = attrs + (uintptr_t)base[i].attrs;
    }
    for (size_t i = 0; i < BUF_COUNT(self->in_attrs, flowpipe_attr); i++) {
      attrs[i].key.ptr = strings + (uintptr_t)attrs[i].key.ptr;
      if (attrs[i].type == FLOWPIPE_ATTR_STRING)
        attrs[i].value.s.ptr = strings + (uintptr_t)attrs[i].value.s.ptr;
    }
  }
  self->in_count = (size_t)n;
  return 0;
}

/* ---- outputs: arena -> Python objects (GIL held) ------------------------------------- */

static PyObject* build_meta(InstanceObject* self, const OutMeta* m) {
  const char* bytes = self->out_bytes.ptr;
  PyObject* attrs = PyDict_New();
  if (!attrs) return NULL;
  for (size_t i = 0; i < m->attr_count; i++) {
    const OutAttr* a = &BUF_AT(self->out_attrs, OutAttr, m->attr_first + i);
    PyObject* key = PyUnicode_DecodeUTF8(bytes + a->key_offset, (Py_ssize_t)a->key_len, "replace");
    PyObject* value = NULL;
    switch (a->type) {
      case FLOWPIPE_ATTR_INT: value = PyLong_FromLongLong(a->i); break;
      case FLOWPIPE_ATTR_DOUBLE: value = PyFloat_FromDouble(a->d); break;
      case FLOWPIPE_ATTR_BOOL: value = PyBool_FromLong((long)a->i); break;
      default: value = PyUnicode_DecodeUTF8(bytes + a->str_offset, (Py_ssize_t)a->str_len, "replace");
    }
    int rc = key && value ? PyDict_SetItem(attrs, key, value) : -1;
    Py_XDECREF(key);
    Py_XDECREF(value);
    if (rc) {
      Py_DECREF(attrs);
      return NULL;
    }
  }
  PyObject* args[6] = {
      PyLong_FromUnsignedLongLong(m->enqueue_ts_ns),
      PyBytes_FromStringAndSize((const char*)m->trace_id, 16),
      PyBytes_FromStringAndSize((const char*)m->span_id, 8),
      PyLong_FromUnsignedLong(m->flags),
      PyUnicode_DecodeUTF8(bytes + m->schema_offset, (Py_ssize_t)m->schema_len, "replace"),
      attrs,
  };
  PyObject* result = NULL;
  if (args[0] && args[1] && args[2] && args[3] && args[4])
    result = PyObject_Vectorcall(meta_class, args, 0, meta_kwnames);
  for (int i = 0; i < 6; i++) Py_XDECREF(args[i]);
  return result;
}

/* (data list, metas list or None) from the records emitted in the last call. */
static PyObject* build_outputs(InstanceObject* self, PyObject* items, PyObject* metas) {
  size_t n = BUF_COUNT(self->out_records, OutRecord);
  const OutRecord* records = (const OutRecord*)self->out_records.ptr;
  PyObject** in_metas = metas ? &PyTuple_GET_ITEM(metas, 0) : NULL;
  PyObject* data = PyList_New((Py_ssize_t)n);
  if (!data) return NULL;
  int any_meta = 0;
  for (size_t i = 0; i < n; i++) {
    const OutRecord* r = &records[i];
    PyObject* obj;
    if (r->reuse) {
      obj = PyTuple_GET_ITEM(items, r->source);
      Py_INCREF(obj);
    } else {
      obj = PyBytes_FromStringAndSize(self->out_bytes.ptr + r->offset, (Py_ssize_t)r->size);
      if (!obj) goto fail;
    }
    PyList_SET_ITEM(data, (Py_ssize_t)i, obj);
    any_meta |= r->meta >= 0 || (r->meta == META_INHERIT && in_metas && r->source >= 0 &&
                                 in_metas[r->source] != Py_None);
  }
  if (!any_meta) return Py_BuildValue("(NO)", data, Py_None);

  PyObject* out_metas = PyList_New((Py_ssize_t)n);
  if (!out_metas) goto fail;
  self->used.len = 0;
  if (buf_reserve(&self->used, self->in_count)) {
    Py_DECREF(out_metas);
    PyErr_NoMemory();
    goto fail;
  }
  if (self->in_count) memset(self->used.ptr, 0, self->in_count);
  for (size_t i = 0; i < n; i++) {
    const OutRecord* r = &records[i];
    PyObject* meta;
    if (r->meta >= 0) {
      meta = build_meta(self, &BUF_AT(self->out_metas, OutMeta, r->meta));
    } else if (r->meta == META_INHERIT && in_metas && r->source >= 0 && in_metas[r->source] != Py_None) {
      /* The first output of an input takes its meta object; siblings get copies so that
       * no two records share one mutable meta. */
      if (self->used.ptr[r->source]) {
        meta = PyObject_CallMethodNoArgs(in_metas[r->source], s_copy);
      } else {
        self->used.ptr[r->source] = 1;
        meta = Py_NewRef(in_metas[r->source]);
      }
    } else {
      meta = Py_NewRef(Py_None);
    }
    if (!meta) {
      Py_DECREF(out_metas);
      goto fail;
    }
    PyList_SET_ITEM(out_metas, (Py_ssize_t)i, meta);
  }
  return Py_BuildValue("(NN)", data, out_metas);
fail:
  Py_DECREF(data);
  return NULL;
}

/* ---- calls ---------------------------------------------------------------------------- */

static int begin_call(InstanceObject* self, int stopping) {
  if (!self->stage) {
    PyErr_SetString(NativeError, "the native stage instance was destroyed");
    return -1;
  }
  if (self->busy) {
    PyErr_SetString(PyExc_RuntimeError, "a native stage instance is used by two threads at once");
    return -1;
  }
  self->busy = 1;
  __atomic_store_n(&self->stop, stopping, __ATOMIC_RELAXED);
  self->out_records.len = self->out_metas.len = self->out_attrs.len = self->out_bytes.len = 0;
  self->emit_error = NULL;
  return 0;
}

/* Raises NativeError for a failed call; returns -1 then, else 0. */
static int check_result(InstanceObject* self, int32_t rc, const flowpipe_error* err, int end_ok,
                        const char* what) {
  if (rc == FLOWPIPE_OK || (end_ok && rc == FLOWPIPE_END)) return 0;
  if (rc != FLOWPIPE_ERROR)
    PyErr_Format(NativeError, "%s returned the unknown status %d", what, (int)rc);
  else if (self->emit_error)
    PyErr_SetString(NativeError, self->emit_error);
  else if (err->message[0])
    PyErr_Format(NativeError, "%s", err->message);
  else
    PyErr_Format(NativeError, "%s failed without a message", what);
  return -1;
}

static void clear_error(flowpipe_error* err) { err->message[0] = '\0'; }

static PyObject* Instance_configure(InstanceObject* self, PyObject* arg) {
  Py_buffer json;
  if (PyObject_GetBuffer(arg, &json, PyBUF_SIMPLE)) return NULL;
  if (begin_call(self, 0)) {
    PyBuffer_Release(&json);
    return NULL;
  }
  flowpipe_error err;
  clear_error(&err);
  int32_t rc;
  Py_BEGIN_ALLOW_THREADS
  rc = self->api->configure(self->stage, json.buf, (size_t)json.len, &err);
  Py_END_ALLOW_THREADS
  self->busy = 0;
  PyBuffer_Release(&json);
  if (check_result(self, rc, &err, 0, "configure")) return NULL;
  Py_RETURN_NONE;
}

static PyObject* Instance_produce(InstanceObject* self, PyObject* const* args, Py_ssize_t nargs) {
  Py_ssize_t limit;
  int stopping;
  if (nargs != 2) return PyErr_Format(PyExc_TypeError, "produce(limit, stopping)");
  if ((limit = PyLong_AsSsize_t(args[0])) < 0) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "limit must be >= 0");
    return NULL;
  }
  if ((stopping = PyObject_IsTrue(args[1])) < 0 || begin_call(self, stopping)) return NULL;
  flowpipe_error err;
  clear_error(&err);
  flowpipe_emitter emitter = {self, host_emit};
  int32_t rc;
  self->in_count = 0;
  Py_BEGIN_ALLOW_THREADS
  rc = self->api->produce_batch(self->stage, (size_t)limit, &emitter, &err);
  Py_END_ALLOW_THREADS
  self->busy = 0;
  PyObject* outputs = NULL;
  if (!check_result(self, rc, &err, 1, "produce")) {
    PyObject* no_inputs = PyTuple_New(0);
    outputs = no_inputs ? build_outputs(self, no_inputs, NULL) : NULL;
    Py_XDECREF(no_inputs);
  }
  finish_call(self);
  if (!outputs) return NULL;
  PyObject* result = Py_BuildValue("(OOO)", PyTuple_GET_ITEM(outputs, 0), PyTuple_GET_ITEM(outputs, 1),
                                   rc == FLOWPIPE_END ? Py_True : Py_False);
  Py_DECREF(outputs);
  return result;
}

/* process(data, metas, stopping) and consume(data, metas, stopping) share this. */
static PyObject* call_with_inputs(InstanceObject* self, PyObject* const* args, Py_ssize_t nargs,
                                  int transform) {
  if (nargs != 3) return PyErr_Format(PyExc_TypeError, "expected (data, metas, stopping)");
  int stopping = PyObject_IsTrue(args[2]);
  if (stopping < 0) return NULL;
  PyObject* items = PySequence_Tuple(args[0]);
  if (!items) return NULL;
  PyObject* metas = NULL;
  PyObject* result = NULL;
  if (args[1] != Py_None) {
    /* Snapshots, like `items`: the lists may change while the GIL is released. */
    metas = PySequence_Tuple(args[1]);
    if (!metas) goto done;
    if (PyTuple_GET_SIZE(metas) != PyTuple_GET_SIZE(items)) {
      PyErr_SetString(PyExc_ValueError, "data and metas differ in length");
      goto done;
    }
  }
  if (begin_call(self, stopping)) goto done;
  if (convert_inputs(self, items, metas)) {
    self->busy = 0;
    finish_call(self);
    goto done;
  }
  flowpipe_error err;
  clear_error(&err);
  flowpipe_emitter emitter = {self, host_emit};
  const flowpipe_payload* inputs = (const flowpipe_payload*)self->in_payloads.ptr;
  size_t count = self->in_count;
  int32_t rc;
  Py_BEGIN_ALLOW_THREADS
  if (transform)
    rc = self->api->process_batch(self->stage, inputs, count, &emitter, &err);
  else
    rc = self->api->consume_batch(self->stage, inputs, count, &err);
  Py_END_ALLOW_THREADS
  self->busy = 0;
  if (!check_result(self, rc, &err, 0, transform ? "process" : "consume"))
    result = transform ? build_outputs(self, items, metas) : Py_NewRef(Py_None);
  finish_call(self);
done:
  Py_DECREF(items);
  Py_XDECREF(metas);
  return result;
}

static PyObject* Instance_process(InstanceObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return call_with_inputs(self, args, nargs, 1);
}

static PyObject* Instance_consume(InstanceObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return call_with_inputs(self, args, nargs, 0);
}

static void destroy_stage(InstanceObject* self) {
  void* stage = self->stage;
  self->stage = NULL;
  Py_BEGIN_ALLOW_THREADS
  self->api->destroy(stage);
  Py_END_ALLOW_THREADS
}

static PyObject* Instance_destroy(InstanceObject* self, PyObject* Py_UNUSED(ignored)) {
  if (self->busy) {
    PyErr_SetString(PyExc_RuntimeError, "cannot destroy a native stage instance during a call");
    return NULL;
  }
  if (self->stage) destroy_stage(self);
  Py_RETURN_NONE;
}

static PyObject* Instance_get_stop_requested(InstanceObject* self, void* Py_UNUSED(closure)) {
  return PyBool_FromLong(__atomic_load_n(&self->stop_requested, __ATOMIC_RELAXED));
}

static void Instance_dealloc(InstanceObject* self) {
  if (self->stage) destroy_stage(self);
  Buf* bufs[] = {&self->in_payloads, &self->in_metas, &self->in_attrs, &self->in_strings, &self->in_views,
                 &self->out_records, &self->out_metas, &self->out_attrs, &self->out_bytes, &self->used};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]->ptr);
  Py_XDECREF(self->log);
  Py_XDECREF(self->library);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyMethodDef Instance_methods[] = {
    {"configure", (PyCFunction)Instance_configure, METH_O, "configure(json: bytes) -> None"},
    {"produce", (PyCFunction)(void (*)(void))Instance_produce, METH_FASTCALL,
     "produce(limit, stopping) -> (data, metas, ended)"},
    {"process", (PyCFunction)(void (*)(void))Instance_process, METH_FASTCALL,
     "process(data, metas, stopping) -> (data, metas)"},
    {"consume", (PyCFunction)(void (*)(void))Instance_consume, METH_FASTCALL,
     "consume(data, metas, stopping) -> None"},
    {"destroy", (PyCFunction)Instance_destroy, METH_NOARGS, "destroy the native instance (idempotent)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Instance_getset[] = {
    {"stop_requested", (getter)Instance_get_stop_requested, NULL, "the stage asked the flow to stop", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InstanceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flowpipe.native._abi.Instance",
    .tp_basicsize = sizeof(InstanceObject),
    .tp_dealloc = (destructor)Instance_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One native stage instance; used from one thread at a time.",
    .tp_methods = Instance_methods,
    .tp_getset = Instance_getset,
};

/* ------------------------------------------------------------------------------------ */
/* Library methods                                                                       */

static PyObject* Library_create(LibraryObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyCallable_Check(args[0]))
    return PyErr_Format(PyExc_TypeError, "create(log, log_level)");
  long log_level = PyLong_AsLong(args[1]);
  if (log_level == -1 && PyErr_Occurred()) return NULL;
  InstanceObject* inst = PyObject_New(InstanceObject, &InstanceType);
  if (!inst) return NULL;
  memset((char*)inst + sizeof(PyObject), 0, sizeof(InstanceObject) - sizeof(PyObject));
  inst->library = (LibraryObject*)Py_NewRef(self);
  inst->api = self->api;
  inst->log = Py_NewRef(args[0]);
  inst->log_level = (int)(log_level < 0 ? 0 : log_level > 100 ? 100 : log_level);
  flowpipe_error err;
  clear_error(&err);
  void* stage;
  Py_BEGIN_ALLOW_THREADS
  stage = self->api->create(inst, &err);
  Py_END_ALLOW_THREADS
  if (!stage) {
    PyErr_Format(NativeError, "%s", err.message[0] ? err.message : "create failed without a message");
    Py_DECREF(inst);
    return NULL;
  }
  inst->stage = stage;
  return (PyObject*)inst;
}

static void Library_dealloc(LibraryObject* self) {
  /* The library stays loaded: code of it may still run (thread_local destructors,
   * threads it started), and unloading C++ libraries is rarely safe. */
  Py_XDECREF(self->name);
  Py_XDECREF(self->path);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyObject* Library_get_kind(LibraryObject* self, void* Py_UNUSED(closure)) {
  return PyLong_FromLong(self->kind);
}

static PyObject* Library_get_name(LibraryObject* self, void* Py_UNUSED(closure)) {
  return Py_NewRef(self->name);
}

static PyObject* Library_get_path(LibraryObject* self, void* Py_UNUSED(closure)) {
  return Py_NewRef(self->path);
}

static PyMethodDef Library_methods[] = {
    {"create", (PyCFunction)(void (*)(void))Library_create, METH_FASTCALL,
     "create(log, log_level) -> Instance"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Library_getset[] = {
    {"kind", (getter)Library_get_kind, NULL, "KIND_SOURCE, KIND_TRANSFORM or KIND_SINK", NULL},
    {"name", (getter)Library_get_name, NULL, "the stage's own name, '' if it gives none", NULL},
    {"path", (getter)Library_get_path, NULL, "the file it was loaded from", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LibraryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flowpipe.native._abi.Library",
    .tp_basicsize = sizeof(LibraryObject),
    .tp_dealloc = (destructor)Library_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A loaded native stage library.",
    .tp_methods = Library_methods,
    .tp_getset = Library_getset,
};

/* ------------------------------------------------------------------------------------ */
/* load()                                                                                */

/* Why a loaded library is refused; checks everything before the library's own code
 * (init) runs, so a wrong ABI never gets called. Empty string = acceptable. */
static void check_table(const flowpipe_stage_api* api, char* why, size_t size) {
  why[0] = '\0';
  if (!api)
    snprintf(why, size, "%s returned no function table (the library refused stage ABI version %u)",
             FLOWPIPE_STAGE_ENTRY_SYMBOL, FLOWPIPE_STAGE_ABI_VERSION);
  else if (api->abi_version != FLOWPIPE_STAGE_ABI_VERSION)
    snprintf(why, size,
             "built for stage ABI version %u, but this flowpipe implements version %u"
             " (fix: rebuild it against this flowpipe's SDK, see `flowpipe sdk --cmake-dir`)",
             api->abi_version, FLOWPIPE_STAGE_ABI_VERSION);
  else if (!api->init || !api->create || !api->destroy || !api->configure)
    snprintf(why, size, "incomplete function table (init, create, destroy and configure are required)");
}

static PyObject* load(PyObject* Py_UNUSED(module), PyObject* arg) {
  PyObject* path_bytes;
  if (!PyUnicode_FSConverter(arg, &path_bytes)) return NULL;
  const char* path = PyBytes_AS_STRING(path_bytes);
  char why[1024] = "";
  const flowpipe_stage_api* api = NULL;
  flowpipe_stage_info info = {0, NULL};
  flowpipe_error err;
  clear_error(&err);
  int32_t rc = FLOWPIPE_ERROR;

  Py_BEGIN_ALLOW_THREADS
  /* RTLD_LOCAL: plugins each carry their own copy of the C++ SDK support code. */
  void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    snprintf(why, sizeof why, "cannot load: %s", e ? e : "unknown dlopen error");
  } else {
    flowpipe_stage_entry_fn entry;
    *(void**)&entry = dlsym(handle, FLOWPIPE_STAGE_ENTRY_SYMBOL);
    if (!entry && dlsym(handle, "flowpipe_create_stage"))
      snprintf(why, sizeof why,
               "exports flowpipe_create_stage but not %s: it was built against flow-pipe's own runtime"
               " (fix: rebuild it with find_package(flowpipe) and link flowpipe::flowpipe_runtime)",
               FLOWPIPE_STAGE_ENTRY_SYMBOL);
    else if (!entry)
      snprintf(why, sizeof why, "not a flowpipe stage library: it does not export %s",
               FLOWPIPE_STAGE_ENTRY_SYMBOL);
    else if (check_table(api = entry(FLOWPIPE_STAGE_ABI_VERSION), why, sizeof why), !why[0])
      rc = api->init(&host_api, &info, &err);
    /* A refused library stays loaded (dlclose of C++ code is not always safe); it is never
     * called again. */
  }
  Py_END_ALLOW_THREADS
  Py_DECREF(path_bytes);

  if (!why[0] && rc != FLOWPIPE_OK)
    snprintf(why, sizeof why, "init failed: %s", err.message[0] ? err.message : "no message");
  if (!why[0]) {
    if (info.kind == FLOWPIPE_KIND_SOURCE && !api->produce_batch)
      snprintf(why, sizeof why, "a source without produce_batch");
    else if (info.kind == FLOWPIPE_KIND_TRANSFORM && !api->process_batch)
      snprintf(why, sizeof why, "a transform without process_batch");
    else if (info.kind == FLOWPIPE_KIND_SINK && !api->consume_batch)
      snprintf(why, sizeof why, "a sink without consume_batch");
    else if (info.kind < FLOWPIPE_KIND_SOURCE || info.kind > FLOWPIPE_KIND_SINK)
      snprintf(why, sizeof why, "init reported the unknown stage kind %d", (int)info.kind);
  }
  if (why[0]) return PyErr_Format(NativeError, "%s", why);

  LibraryObject* lib = PyObject_New(LibraryObject, &LibraryType);
  if (!lib) return NULL;
  lib->api = api;
  lib->kind = info.kind;
  lib->name = PyUnicode_DecodeUTF8(info.name ? info.name : "", info.name ? (Py_ssize_t)strlen(info.name) : 0,
                                   "replace");
  lib->path = Py_NewRef(arg);
  if (!lib->name) {
    Py_DECREF(lib);
    return NULL;
  }
  return (PyObject*)lib;
}

static PyObject* set_default_log(PyObject* Py_UNUSED(module), PyObject* fn) {
  if (!PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "log must be callable");
  Py_XSETREF(default_log, Py_NewRef(fn));
  Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"load", load, METH_O, "load(path) -> Library; raises NativeError"},
    {"set_default_log", set_default_log, METH_O,
     "set_default_log(log): where logs outside any instance go"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "flowpipe.native._abi", "Host side of the flowpipe native stage ABI.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__abi(void) {
  if (PyType_Ready(&LibraryType) || PyType_Ready(&InstanceType)) return NULL;
  PyObject* sdk = PyImport_ImportModule("flowpipe.sdk");
  if (!sdk) return NULL;
  meta_class = PyObject_GetAttrString(sdk, "PayloadMeta");
  Py_DECREF(sdk);
  if (!meta_class) return NULL;
  if (!(s_enqueue_ts_ns = PyUnicode_InternFromString("enqueue_ts_ns")) ||
      !(s_trace_id = PyUnicode_InternFromString("trace_id")) ||
      !(s_span_id = PyUnicode_InternFromString("span_id")) ||
      !(s_flags = PyUnicode_InternFromString("flags")) ||
      !(s_schema_id = PyUnicode_InternFromString("schema_id")) ||
      !(s_attrs = PyUnicode_InternFromString("attrs")) || !(s_copy = PyUnicode_InternFromString("copy")))
    return NULL;
  meta_kwnames = PyTuple_Pack(6, s_enqueue_ts_ns, s_trace_id, s_span_id, s_flags, s_schema_id, s_attrs);
  if (!meta_kwnames) return NULL;

  PyObject* m = PyModule_Create(&module_def);
  if (!m) return NULL;
  NativeError = PyErr_NewExceptionWithDoc("flowpipe.native._abi.NativeError",
                                          "A native stage library failed or was refused.", NULL, NULL);
  if (!NativeError || PyModule_AddObjectRef(m, "NativeError", NativeError) ||
      PyModule_AddObjectRef(m, "Library", (PyObject*)&LibraryType) ||
      PyModule_AddObjectRef(m, "Instance", (PyObject*)&InstanceType) ||
      PyModule_AddIntConstant(m, "ABI_VERSION", FLOWPIPE_STAGE_ABI_VERSION) ||
      PyModule_AddIntConstant(m, "KIND_SOURCE", FLOWPIPE_KIND_SOURCE) ||
      PyModule_AddIntConstant(m, "KIND_TRANSFORM", FLOWPIPE_KIND_TRANSFORM) ||
      PyModule_AddIntConstant(m, "KIND_SINK", FLOWPIPE_KIND_SINK)) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
