// A transform in flow-pipe's style, configured through google::protobuf::Struct:
// appends config.suffix to every record. config: {"suffix": "..."}
#include <google/protobuf/struct.pb.h>

#include <cstring>
#include <string>

#include "flowpipe/configurable_stage.h"
#include "flowpipe/observability/logging.h"
#include "flowpipe/plugin.h"
#include "flowpipe/protobuf_config.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

class SuffixTransform final : public ITransformStage, public ConfigurableStage {
 public:
  std::string name() const override { return "suffix_transform"; }

  bool configure(const google::protobuf::Struct& config) override {
    google::protobuf::Struct parsed;
    std::string error;
    if (!ProtobufConfigParser<google::protobuf::Struct>::Parse(config, &parsed, &error)) {
      FP_LOG_ERROR("suffix_transform invalid config: " + error);
      return false;
    }
    for (const auto& [key, value] : parsed.fields()) {
      if (key != "suffix") {
        FP_LOG_ERROR("suffix_transform: unknown config field '" + key + "'");
        return false;
      }
      if (value.kind_case() != google::protobuf::Value::kStringValue) {
        FP_LOG_ERROR("suffix_transform: suffix must be a string");
        return false;
      }
      suffix_ = value.string_value();
    }
    return true;
  }

  void process(StageContext& ctx, const Payload& input, Payload& output) override {
    if (ctx.stop.stop_requested()) {
      return;
    }
    auto buffer = AllocatePayloadBuffer(input.size + suffix_.size());
    if (input.size > 0) std::memcpy(buffer.get(), input.data(), input.size);
    std::memcpy(buffer.get() + input.size, suffix_.data(), suffix_.size());
    output = Payload(std::move(buffer), input.size + suffix_.size(), input.meta);
  }

 private:
  std::string suffix_;
};

extern "C" {

FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() {
  FP_LOG_INFO("creating suffix_transform stage");
  return new SuffixTransform();
}

FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) {
  FP_LOG_INFO("destroying suffix_transform stage");
  delete stage;
}

}  // extern "C"
