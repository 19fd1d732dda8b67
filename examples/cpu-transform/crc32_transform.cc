// crc32_transform: a C++ stage in flow-pipe's style with real CPU work per record, used by
// benchmarks/native_bench.py to show that native workers run in parallel.
//
// Appends " crc32=<8 hex digits>" to each record. `rounds` repeats the checksum over the
// record (each round seeded with the previous one) to make the work per record heavier.
// config: {"rounds": 1}
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "flowpipe/configurable_stage.h"
#include "flowpipe/observability/logging.h"
#include "flowpipe/plugin.h"
#include "flowpipe/stage.h"

using namespace flowpipe;

namespace {

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

// CRC-32 (IEEE 802.3), as zlib's crc32(seed, data, size).
uint32_t Crc32(uint32_t seed, const uint8_t* data, size_t size) {
  uint32_t c = ~seed;
  for (size_t i = 0; i < size; ++i) {
    c = kCrcTable[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
  }
  return ~c;
}

// Reads {"rounds": <positive integer>} (or {}); anything else is an error.
bool ParseConfig(std::string_view json, long* rounds, std::string* error) {
  std::string compact;
  for (char c : json) {
    if (std::isspace(static_cast<unsigned char>(c)) == 0) compact.push_back(c);
  }
  if (compact == "{}") return true;
  const std::string prefix = "{\"rounds\":";
  if (compact.rfind(prefix, 0) != 0 || compact.back() != '}') {
    *error = "crc32_transform: unknown config (the only key is 'rounds'): " + std::string(json);
    return false;
  }
  std::string digits = compact.substr(prefix.size(), compact.size() - prefix.size() - 1);
  char* end = nullptr;
  *rounds = std::strtol(digits.c_str(), &end, 10);
  if (digits.empty() || *end != '\0' || *rounds < 1 || *rounds > 1000000) {
    *error = "crc32_transform: config.rounds must be an integer from 1 to 1000000, got " + digits;
    return false;
  }
  return true;
}

}  // namespace

class Crc32Transform final : public ITransformStage, public ConfigurableStage {
 public:
  std::string name() const override { return "crc32_transform"; }

  bool configure(std::string_view json) override {
    std::string error;
    if (!ParseConfig(json, &rounds_, &error)) {
      FP_LOG_ERROR(error);
      return false;
    }
    return true;
  }

  void process(StageContext& ctx, const Payload& input, Payload& output) override {
    (void)ctx;
    uint32_t crc = 0;
    for (long r = 0; r < rounds_; ++r) {
      crc = Crc32(crc, input.data(), input.size);
    }
    char suffix[24];
    int n = std::snprintf(suffix, sizeof suffix, " crc32=%08x", crc);
    auto buffer = AllocatePayloadBuffer(input.size + static_cast<size_t>(n));
    if (input.size > 0) {
      std::memcpy(buffer.get(), input.data(), input.size);
    }
    std::memcpy(buffer.get() + input.size, suffix, static_cast<size_t>(n));
    output.buffer = std::move(buffer);  // output.meta already holds the input's metadata
    output.size = input.size + static_cast<size_t>(n);
  }

 private:
  long rounds_ = 1;
};

extern "C" {

FLOWPIPE_PLUGIN_API IStage* flowpipe_create_stage() {
  return new Crc32Transform();
}

FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(IStage* stage) {
  delete stage;
}

}  // extern "C"
