// Test source in flow-pipe's style: emits "record-<i>" records, optionally with metadata.
// config: {"count": N, "with_meta": bool, "stop_at": i (request a flow stop at record i)}
#include <cstring>
#include <string>
#include <string_view>

#include "flat_json.h"
#include "flowpipe/configurable_stage.h"
#include "flowpipe/observability/logging.h"
#include "flowpipe/plugin.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

class CounterSource final : public ISourceStage, public ConfigurableStage {
 public:
  std::string name() const override { return "counter_source"; }

  bool configure(std::string_view json) override {
    auto config = test_util::ParseFlatJson(json);  // throws on bad JSON: the message is shown
    for (const auto& [key, value] : config) {
      if (key == "count") {
        count_ = test_util::ToInt(key, value);
      } else if (key == "with_meta") {
        with_meta_ = value == "true";
      } else if (key == "stop_at") {
        stop_at_ = test_util::ToInt(key, value);
      } else {
        FP_LOG_ERROR("counter_source: unknown config key '" + key + "'");
        return false;
      }
    }
    if (count_ < 0) {
      FP_LOG_ERROR("counter_source: count must be >= 0");
      return false;
    }
    FP_LOG_INFO("counter_source: configured for " + std::to_string(count_) + " records");
    return true;
  }

  bool produce(StageContext& ctx, Payload& out) override {
    if (ctx.stop.stop_requested() || next_ >= count_) {
      return false;
    }
    if (next_ == stop_at_) {
      ctx.request_stop();
    }
    std::string text = "record-" + std::to_string(next_);
    auto buffer = AllocatePayloadBuffer(text.size());
    std::memcpy(buffer.get(), text.data(), text.size());
    out = Payload(std::move(buffer), text.size());
    if (with_meta_) {
      for (int b = 0; b < PayloadMeta::trace_id_size; ++b) out.meta.trace_id[b] = static_cast<uint8_t>(b + 1);
      for (int b = 0; b < PayloadMeta::span_id_size; ++b) out.meta.span_id[b] = static_cast<uint8_t>(0xA0 + b);
      out.meta.flags = 1;
      out.meta.schema_id = "counter.v1";
      out.meta.set_attr("index", static_cast<int64_t>(next_));
      out.meta.set_attr("ratio", next_ / 2.0);
      out.meta.set_attr("even", next_ % 2 == 0);
      out.meta.set_attr("origin", std::string("cpp"));
    }
    ++next_;
    return true;
  }

 private:
  long count_ = 10;
  long next_ = 0;
  long stop_at_ = -1;
  bool with_meta_ = false;
};

extern "C" {
FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() { return new CounterSource(); }
FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) { delete stage; }
}
