/* A stage built for a future ABI: its table says version 99. */
#include "flowpipe/stage_abi.h"

static const flowpipe_stage_api api = {.abi_version = 99};

FLOWPIPE_STAGE_EXPORT const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version) {
  (void)host_abi_version;
  return &api;
}
