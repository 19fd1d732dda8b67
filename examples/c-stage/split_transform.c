/*
 * split_transform: a stage written in plain C against flowpipe/stage_abi.h.
 *
 * Splits each record at a separator byte and emits every non-empty part, so one input
 * gives zero, one or many outputs; each part keeps the input's metadata.
 * config: {"separator": ","}   (one character; default ",")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowpipe/stage_abi.h"

typedef struct {
  char separator;
  void* host_instance; /* for host->log */
} split_stage;

static const flowpipe_host_api* host;

static void fail(flowpipe_error* err, const char* message) {
  snprintf(err->message, sizeof err->message, "%s", message);
}

static int32_t split_init(const flowpipe_host_api* h, flowpipe_stage_info* info, flowpipe_error* err) {
  (void)err;
  host = h;
  info->kind = FLOWPIPE_KIND_TRANSFORM;
  info->name = "split_transform";
  return FLOWPIPE_OK;
}

static void* split_create(void* host_instance, flowpipe_error* err) {
  split_stage* stage = malloc(sizeof *stage);
  if (!stage) {
    fail(err, "out of memory");
    return NULL;
  }
  stage->separator = ',';
  stage->host_instance = host_instance;
  return stage;
}

static void split_destroy(void* stage) { free(stage); }

/* ---- a minimal reader for a flat JSON object of string values -------------------- */

static const char* skip_ws(const char* p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Reads a JSON string without escapes into out (NUL-terminated); NULL on error. */
static const char* read_string(const char* p, const char* end, char* out, size_t size) {
  size_t n = 0;
  if (p >= end || *p != '"') return NULL;
  for (p++; p < end && *p != '"'; p++) {
    if (*p == '\\' || n + 1 >= size) return NULL;
    out[n++] = *p;
  }
  out[n] = '\0';
  return p < end ? p + 1 : NULL;
}

static int32_t split_configure(void* self, const char* json, size_t len, flowpipe_error* err) {
  split_stage* stage = self;
  const char* end = json + len;
  const char* p = skip_ws(json, end);
  char key[64], value[64];
  if (p >= end || *p++ != '{') {
    fail(err, "config must be a JSON object");
    return FLOWPIPE_ERROR;
  }
  p = skip_ws(p, end);
  while (p < end && *p != '}') {
    if (!(p = read_string(p, end, key, sizeof key)) || (p = skip_ws(p, end)) >= end || *p++ != ':' ||
        !(p = read_string(skip_ws(p, end), end, value, sizeof value))) {
      fail(err, "split_transform: config values must be short strings without escapes");
      return FLOWPIPE_ERROR;
    }
    if (strcmp(key, "separator") != 0) {
      snprintf(err->message, sizeof err->message,
               "split_transform: unknown config key '%s' (known keys: separator)", key);
      return FLOWPIPE_ERROR;
    }
    if (strlen(value) != 1) {
      fail(err, "split_transform: config.separator must be exactly one character");
      return FLOWPIPE_ERROR;
    }
    stage->separator = value[0];
    if (host->log_enabled(stage->host_instance, FLOWPIPE_LOG_DEBUG)) {
      char line[64];
      int n = snprintf(line, sizeof line, "split_transform: separator '%c'", stage->separator);
      host->log(stage->host_instance, FLOWPIPE_LOG_DEBUG, line, (size_t)n, __FILE__, __LINE__);
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  return FLOWPIPE_OK;
}

/* ---- the work ----------------------------------------------------------------------- */

static int32_t split_process(void* self, const flowpipe_payload* inputs, size_t count,
                             const flowpipe_emitter* out, flowpipe_error* err) {
  const split_stage* stage = self;
  (void)err; /* emit failures carry their own message */
  for (size_t i = 0; i < count; i++) {
    const uint8_t* data = inputs[i].data;
    size_t start = 0;
    for (size_t j = 0; j <= inputs[i].size; j++) {
      if (j < inputs[i].size && data[j] != (uint8_t)stage->separator) continue;
      if (j > start) {
        /* meta NULL: the part carries the input's metadata on */
        flowpipe_payload part = {data + start, j - start, NULL};
        if (out->emit(out->ctx, &part, (int64_t)i) != FLOWPIPE_OK) return FLOWPIPE_ERROR;
      }
      start = j + 1;
    }
  }
  return FLOWPIPE_OK;
}

static const flowpipe_stage_api api = {
    .abi_version = FLOWPIPE_STAGE_ABI_VERSION,
    .init = split_init,
    .create = split_create,
    .destroy = split_destroy,
    .configure = split_configure,
    .process_batch = split_process,
};

FLOWPIPE_STAGE_EXPORT const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version) {
  (void)host_abi_version;
  return &api;
}
