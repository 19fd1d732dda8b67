/* A stage linked against libflowpipe_test_dep.so, built without an rpath to it. */
#include "flowpipe/stage_abi.h"

int flowpipe_test_dep(void);

FLOWPIPE_STAGE_EXPORT const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version) {
  (void)host_abi_version;
  (void)flowpipe_test_dep(); /* never reached: the loader fails on the missing library */
  return 0;
}
