// Written against flow-pipe's public headers only: the same file builds for flow-pipe's
// C++ runtime and, linked with flowpipe::flowpipe_runtime, for flowpipe.
#include "flow_pipe_stage_example/noop_stage.h"

#include "flowpipe/observability/logging.h"
#include "flowpipe/plugin.h"

namespace flow_pipe_stage_example {

std::string NoopStage::name() const {
  return "noop_stage";
}

void NoopStage::process(flowpipe::StageContext& ctx, const flowpipe::Payload& input,
                        flowpipe::Payload& output) {
  (void)ctx;
  output = input;  // shares the buffer; copies the metadata
}

}  // namespace flow_pipe_stage_example

extern "C" {

FLOWPIPE_PLUGIN_API flowpipe::IStage* flowpipe_create_stage() {
  FP_LOG_DEBUG("creating noop_stage");
  return new flow_pipe_stage_example::NoopStage();
}

FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(flowpipe::IStage* stage) {
  FP_LOG_DEBUG("destroying noop_stage");
  delete stage;
}

}  // extern "C"
