// Test transform in flow-pipe's style. Appends "!" to the data and edits the metadata:
// hops += 1, seen_by = "cpp", drop_me erased. config {"fail_at": k} throws from process
// on the k-th record (0-based) each instance sees.
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "flat_json.h"
#include "flowpipe/configurable_stage.h"
#include "flowpipe/plugin.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

class EditTransform final : public ITransformStage, public ConfigurableStage {
 public:
  std::string name() const override { return "edit_transform"; }

  bool configure(std::string_view json) override {
    auto config = test_util::ParseFlatJson(json);
    if (config.count("fail_at") != 0) fail_at_ = test_util::ToInt("fail_at", config["fail_at"]);
    return true;
  }

  void process(StageContext&, const Payload& input, Payload& output) override {
    if (seen_++ == fail_at_) {
      throw std::runtime_error("boom at record " + std::to_string(fail_at_));
    }
    auto buffer = AllocatePayloadBuffer(input.size + 1);
    if (input.size > 0) std::memcpy(buffer.get(), input.data(), input.size);
    buffer[input.size] = '!';
    output.buffer = std::move(buffer);
    output.size = input.size + 1;
    int64_t hops = 0;
    if (const auto* value = output.meta.get_attr("hops")) {
      if (const auto* as_int = std::get_if<int64_t>(value)) hops = *as_int;
    }
    output.meta.set_attr("hops", hops + 1);
    output.meta.set_attr("seen_by", std::string("cpp"));
    output.meta.erase_attr("drop_me");
  }

 private:
  long fail_at_ = -1;
  long seen_ = 0;
};

extern "C" {
FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() { return new EditTransform(); }
FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) { delete stage; }
}
