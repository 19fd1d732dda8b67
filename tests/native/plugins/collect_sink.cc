// Test sink in flow-pipe's style: appends one line per record to config.path:
//   <data> TAB <trace hex> TAB <span hex> TAB <flags> TAB <schema_id> TAB <k=v;... sorted>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <variant>

#include "flat_json.h"
#include "flowpipe/configurable_stage.h"
#include "flowpipe/observability/logging.h"
#include "flowpipe/plugin.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

namespace {

std::string Hex(const uint8_t* bytes, int size) {
  std::string text;
  char pair[3];
  for (int i = 0; i < size; ++i) {
    std::snprintf(pair, sizeof pair, "%02x", bytes[i]);
    text += pair;
  }
  return text;
}

std::string Show(const PayloadMeta::MetaValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return "int:" + std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return "double:" + std::to_string(*d);
  if (const auto* b = std::get_if<bool>(&value)) return std::string("bool:") + (*b ? "true" : "false");
  return "str:" + std::get<std::string>(value);
}

}  // namespace

class CollectSink final : public ISinkStage, public ConfigurableStage {
 public:
  std::string name() const override { return "collect_sink"; }
  ~CollectSink() override {
    if (fd_ >= 0) close(fd_);
  }

  bool configure(std::string_view json) override {
    auto config = test_util::ParseFlatJson(json);
    auto path = config.find("path");
    if (path == config.end() || config.size() != 1) {
      FP_LOG_ERROR("collect_sink: config must be {\"path\": ...}");
      return false;
    }
    fd_ = open(path->second.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd_ < 0) {
      FP_LOG_ERROR("collect_sink: cannot open " + path->second);
      return false;
    }
    return true;
  }

  void consume(StageContext&, const Payload& input) override {
    std::string line(reinterpret_cast<const char*>(input.data()), input.size);
    const PayloadMeta& m = input.meta;
    line += "\t" + Hex(m.trace_id, PayloadMeta::trace_id_size) + "\t" + Hex(m.span_id, PayloadMeta::span_id_size) +
            "\t" + std::to_string(m.flags) + "\t" + m.schema_id + "\t";
    if (m.attrs) {
      std::map<std::string, std::string> sorted;
      for (const auto& [key, value] : *m.attrs) sorted[key] = Show(value);
      for (const auto& [key, value] : sorted) line += key + "=" + value + ";";
    }
    line += "\n";
    if (write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      FP_LOG_ERROR("collect_sink: short write");
    }
  }

 private:
  int fd_ = -1;
};

extern "C" {
FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() { return new CollectSink(); }
FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) { delete stage; }
}
