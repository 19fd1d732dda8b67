/*
 * flowpipe native stage ABI, version 1 (C, no C++ required).
 *
 * A native stage is a shared library `libstage_<type>.so` that exports one symbol,
 *
 *     const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version);
 *
 * returning a static table of functions. The host loads the library with
 * dlopen(RTLD_NOW | RTLD_LOCAL), calls the entry, and refuses the library unless
 * `abi_version` (always the table's first member, in every version) equals the
 * host's FLOWPIPE_STAGE_ABI_VERSION. Returning NULL from the entry also refuses it.
 *
 * C++ stages written against flowpipe/stage.h do not implement this file: the SDK's
 * support source (linked through the CMake target flowpipe::flowpipe_runtime) does.
 *
 * Calls, in order, per library and per instance:
 *
 *     init                                   once per library, before anything else
 *     create -> configure -> *_batch ... -> destroy     once per worker thread
 *
 * Threads: each instance is created, used and destroyed on one thread (its worker);
 * different instances of one library run concurrently on different threads, so
 * library-global state must be thread-safe. The host does not hold any lock of its
 * own (in particular not Python's GIL) during these calls.
 *
 * Ownership (the short form: every pointer is borrowed, for the duration of the call):
 *   - Input payloads (`inputs`, their `data`, `meta`, strings and attrs) belong to the
 *     host and are valid only until the call returns. Copy what you keep.
 *   - Output payloads passed to `emit` belong to the stage; `emit` copies everything it
 *     needs before returning, so the stage may reuse or free them right after.
 *   - Error messages are written into the host's flowpipe_error buffer (truncate to fit,
 *     always NUL-terminate). Nothing is ever freed across the boundary.
 *   - `flowpipe_stage_info.name` and the table itself are owned by the library and must
 *     stay valid until it is unloaded (the host never unloads a library).
 */
#ifndef FLOWPIPE_STAGE_ABI_H
#define FLOWPIPE_STAGE_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLOWPIPE_STAGE_ABI_VERSION 1u
#define FLOWPIPE_STAGE_ENTRY_SYMBOL "flowpipe_stage_entry"

#if defined(__GNUC__) || defined(__clang__)
#define FLOWPIPE_STAGE_EXPORT __attribute__((visibility("default")))
#else
#define FLOWPIPE_STAGE_EXPORT
#endif

/* Return codes of every function that can fail. */
#define FLOWPIPE_OK 0
#define FLOWPIPE_END 1 /* produce_batch only: the source has no more records */
#define FLOWPIPE_ERROR (-1)

/* Stage kinds (flowpipe_stage_info.kind). */
#define FLOWPIPE_KIND_SOURCE 1
#define FLOWPIPE_KIND_TRANSFORM 2
#define FLOWPIPE_KIND_SINK 3

/* Log levels, as flowpipe::observability::LogLevel. */
#define FLOWPIPE_LOG_DEBUG 0
#define FLOWPIPE_LOG_INFO 1
#define FLOWPIPE_LOG_WARN 2
#define FLOWPIPE_LOG_ERROR 3
#define FLOWPIPE_LOG_FATAL 4

/* Attribute value types (flowpipe_attr.type). */
#define FLOWPIPE_ATTR_INT 0
#define FLOWPIPE_ATTR_DOUBLE 1
#define FLOWPIPE_ATTR_BOOL 2
#define FLOWPIPE_ATTR_STRING 3

#define FLOWPIPE_ERROR_MESSAGE_SIZE 1024

/* A UTF-8 string that is not NUL-terminated. */
typedef struct flowpipe_str {
  const char* ptr;
  size_t len;
} flowpipe_str;

typedef struct flowpipe_attr {
  flowpipe_str key;
  int32_t type; /* FLOWPIPE_ATTR_* */
  union {
    int64_t i;
    double d;
    int32_t b; /* 0 or 1 */
    flowpipe_str s;
  } value;
} flowpipe_attr;

/* flow-pipe's PayloadMeta. All zero / empty means "no metadata". */
typedef struct flowpipe_meta {
  uint64_t enqueue_ts_ns; /* CLOCK_MONOTONIC, set by the host when a record enters a queue */
  uint8_t trace_id[16];   /* W3C trace id; all zero = no trace */
  uint8_t span_id[8];     /* W3C span id */
  uint32_t flags;         /* low byte: W3C trace flags */
  flowpipe_str schema_id; /* empty = none */
  const flowpipe_attr* attrs;
  size_t attr_count;
} flowpipe_meta;

typedef struct flowpipe_payload {
  const uint8_t* data; /* may be NULL when size is 0 */
  size_t size;
  const flowpipe_meta* meta; /* NULL = the record has no metadata */
} flowpipe_payload;

/*
 * Where a stage puts its outputs. `emit` copies the payload and returns FLOWPIPE_OK, or
 * FLOWPIPE_ERROR (out of memory, bad `source`), after which the stage must return
 * FLOWPIPE_ERROR itself.
 *
 * `source` links an output to the input it came from: the index into `inputs` of
 * process_batch, or -1 (always -1 for sources). With `source` >= 0:
 *   - `meta == NULL`, or the input's own meta pointer, means "the input's metadata,
 *     unchanged"; the host then passes the original metadata on without converting it;
 *   - `data`/`size` equal to the input's own `data`/`size` let the host forward the
 *     input record itself instead of copying the bytes (zero-copy pass-through).
 * With `source` == -1, `meta == NULL` means no metadata.
 */
typedef struct flowpipe_emitter {
  void* ctx;
  int32_t (*emit)(void* ctx, const flowpipe_payload* payload, int64_t source);
} flowpipe_emitter;

typedef struct flowpipe_error {
  char message[FLOWPIPE_ERROR_MESSAGE_SIZE]; /* one line, NUL-terminated */
} flowpipe_error;

/*
 * Services the host offers. `host_instance` is the value given to `create` (NULL is
 * allowed for `log` and `log_enabled` outside any instance, e.g. during init). All
 * functions are thread-safe and may be called from any thread; `log` may block briefly.
 */
typedef struct flowpipe_host_api {
  uint32_t abi_version;
  void (*log)(void* host_instance, int32_t level, const char* message, size_t len,
              const char* file, int32_t line);
  /* Nonzero when `level` would be emitted; lets stages skip building messages. */
  int32_t (*log_enabled)(void* host_instance, int32_t level);
  /* Nonzero once the flow is stopping. Cheap (an atomic load): fine to poll per record. */
  int32_t (*stop_requested)(void* host_instance);
  /* Ask the whole flow to stop (flow-pipe's StageContext::request_stop). */
  void (*request_stop)(void* host_instance);
} flowpipe_host_api;

typedef struct flowpipe_stage_info {
  int32_t kind;     /* FLOWPIPE_KIND_* */
  const char* name; /* the stage's own name (flow-pipe's IStage::name()), may be NULL */
} flowpipe_stage_info;

typedef struct flowpipe_stage_api {
  uint32_t abi_version; /* FLOWPIPE_STAGE_ABI_VERSION the library was built with */

  /* Once, right after loading. `host` stays valid for the life of the process. */
  int32_t (*init)(const flowpipe_host_api* host, flowpipe_stage_info* info, flowpipe_error* err);

  /* A new instance, or NULL with `err` set. */
  void* (*create)(void* host_instance, flowpipe_error* err);
  void (*destroy)(void* stage);

  /* The stage's `config` as a JSON object (UTF-8, `{}` when absent), once, before any
   * batch. FLOWPIPE_ERROR rejects the config; `err` says why. */
  int32_t (*configure)(void* stage, const char* config_json, size_t len, flowpipe_error* err);

  /* The function of the library's kind must be non-NULL; the host never calls the others. */

  /* Emit 0..limit records. Return promptly (within ~100 ms) when nothing is available:
   * an empty batch is not the end. FLOWPIPE_END = no more records ever (records emitted
   * in the same call still count). */
  int32_t (*produce_batch)(void* stage, size_t limit, const flowpipe_emitter* out,
                           flowpipe_error* err);

  /* Emit 0..N outputs per input, in any order, each linked to its input by `source`. */
  int32_t (*process_batch)(void* stage, const flowpipe_payload* inputs, size_t count,
                           const flowpipe_emitter* out, flowpipe_error* err);

  int32_t (*consume_batch)(void* stage, const flowpipe_payload* inputs, size_t count,
                           flowpipe_error* err);
} flowpipe_stage_api;

typedef const flowpipe_stage_api* (*flowpipe_stage_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* FLOWPIPE_STAGE_ABI_H */
