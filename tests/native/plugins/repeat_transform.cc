// Test of flowpipe's IMultiTransformStage: a record "<k>:<text>" becomes k records "<text>";
// k = 0 drops it. The outputs keep the input's metadata.
#include <cstdlib>
#include <cstring>
#include <string>

#include "flowpipe/plugin.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

class RepeatTransform final : public IMultiTransformStage {
 public:
  std::string name() const override { return "repeat_transform"; }

  void process(StageContext&, const Payload& input, PayloadEmitter& out) override {
    std::string text(reinterpret_cast<const char*>(input.data()), input.size);
    size_t colon = text.find(':');
    long copies = std::strtol(text.substr(0, colon).c_str(), nullptr, 10);
    std::string body = colon == std::string::npos ? text : text.substr(colon + 1);
    for (long i = 0; i < copies; ++i) {
      Payload copy(AllocatePayloadBuffer(body.size()), body.size(), input.meta);
      if (!body.empty()) std::memcpy(copy.data(), body.data(), body.size());
      out.emit(copy);
    }
  }
};

extern "C" {
FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() { return new RepeatTransform(); }
FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) { delete stage; }
}
