#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

namespace flowpipe {

// Lets MetadataMap be searched with a std::string_view key without building a string.
struct StringViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view key) const noexcept {
    return std::hash<std::string_view>{}(key);
  }
};

// Metadata that travels with a record. Copying is cheap: attrs are shared and copied
// only when written (copy-on-write), so a copy never changes the original.
struct PayloadMeta {
  static constexpr int trace_id_size = 16;
  static constexpr int span_id_size = 8;

  using MetaValue = std::variant<int64_t, double, bool, std::string>;
  using MetadataMap = std::unordered_map<std::string, MetaValue, StringViewHash, std::equal_to<>>;

  uint64_t enqueue_ts_ns = 0;          // monotonic clock; set by the runtime on enqueue
  uint8_t trace_id[trace_id_size]{};   // W3C trace id, all zero = none
  uint8_t span_id[span_id_size]{};     // W3C span id
  uint32_t flags = 0;                  // low byte: W3C trace flags
  std::string schema_id;               // empty = none
  std::shared_ptr<const MetadataMap> attrs;

  bool has_schema_id() const noexcept { return !schema_id.empty(); }

  constexpr bool has_trace() const noexcept {
    for (uint8_t byte : trace_id) {
      if (byte != 0) {
        return true;
      }
    }
    return false;
  }

  bool has_attrs() const noexcept { return attrs != nullptr && !attrs->empty(); }

  // The value of `key`, or nullptr.
  const MetaValue* get_attr(std::string_view key) const noexcept {
    if (attrs == nullptr) {
      return nullptr;
    }
    auto found = attrs->find(key);
    return found == attrs->end() ? nullptr : &found->second;
  }

  void set_attr(std::string key, MetaValue value) {
    auto updated = attrs ? std::make_shared<MetadataMap>(*attrs) : std::make_shared<MetadataMap>();
    (*updated)[std::move(key)] = std::move(value);
    attrs = std::move(updated);
  }

  // True when the key was present.
  bool erase_attr(std::string_view key) {
    if (attrs == nullptr || attrs->find(key) == attrs->end()) {
      return false;
    }
    auto updated = std::make_shared<MetadataMap>(*attrs);
    updated->erase(updated->find(key));
    attrs = updated->empty() ? nullptr : std::shared_ptr<const MetadataMap>(std::move(updated));
    return true;
  }

  void clear_attrs() noexcept { attrs.reset(); }
};

// One record: bytes with shared ownership, plus metadata.
struct Payload {
  std::shared_ptr<uint8_t[]> buffer;
  size_t size = 0;
  PayloadMeta meta;

  Payload() = default;
  Payload(std::shared_ptr<uint8_t[]> buf, size_t buffer_size, PayloadMeta m = {})
      : buffer(std::move(buf)), size(buffer_size), meta(std::move(m)) {}

  const uint8_t* data() const noexcept { return buffer.get(); }
  uint8_t* data() noexcept { return buffer.get(); }
  bool empty() const noexcept { return buffer == nullptr || size == 0; }
};

// A buffer for `size` bytes of payload data (uninitialised). Throws std::bad_alloc.
inline std::shared_ptr<uint8_t[]> AllocatePayloadBuffer(size_t size) {
  return std::shared_ptr<uint8_t[]>(new uint8_t[size]);
}

}  // namespace flowpipe
