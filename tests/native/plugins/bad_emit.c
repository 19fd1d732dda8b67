/* A transform that misuses emit: record "range" names an input that does not exist,
 * record "null" gives NULL data with a size. The host must refuse both, not crash. */
#include <string.h>

#include "flowpipe/stage_abi.h"

static int instance;

static int32_t bad_init(const flowpipe_host_api* host, flowpipe_stage_info* info, flowpipe_error* err) {
  (void)host;
  (void)err;
  info->kind = FLOWPIPE_KIND_TRANSFORM;
  info->name = "bad_emit";
  return FLOWPIPE_OK;
}

static void* bad_create(void* host_instance, flowpipe_error* err) {
  (void)host_instance;
  (void)err;
  return &instance;
}

static void bad_destroy(void* stage) { (void)stage; }

static int32_t bad_configure(void* stage, const char* json, size_t len, flowpipe_error* err) {
  (void)stage;
  (void)json;
  (void)len;
  (void)err;
  return FLOWPIPE_OK;
}

static int32_t bad_process(void* stage, const flowpipe_payload* inputs, size_t count,
                           const flowpipe_emitter* out, flowpipe_error* err) {
  (void)stage;
  (void)err;
  for (size_t i = 0; i < count; i++) {
    flowpipe_payload p = inputs[i];
    int64_t source = (int64_t)i;
    if (p.size == 5 && memcmp(p.data, "range", 5) == 0) source = (int64_t)count;
    if (p.size == 4 && memcmp(p.data, "null", 4) == 0) p.data = NULL;
    if (out->emit(out->ctx, &p, source) != FLOWPIPE_OK) return FLOWPIPE_ERROR;
  }
  return FLOWPIPE_OK;
}

static const flowpipe_stage_api api = {
    .abi_version = FLOWPIPE_STAGE_ABI_VERSION,
    .init = bad_init,
    .create = bad_create,
    .destroy = bad_destroy,
    .configure = bad_configure,
    .process_batch = bad_process,
};

FLOWPIPE_STAGE_EXPORT const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version) {
  (void)host_abi_version;
  return &api;
}
