#pragma once

#include <string>

#include "flowpipe/stage.h"

namespace flow_pipe_stage_example {

// Passes every record through unchanged, metadata included.
class NoopStage final : public flowpipe::ITransformStage {
 public:
  std::string name() const override;
  void process(flowpipe::StageContext& ctx, const flowpipe::Payload& input,
               flowpipe::Payload& output) override;
};

}  // namespace flow_pipe_stage_example
