#pragma once

// Needs protobuf (the SDK found with FLOWPIPE_WITH_PROTOBUF).
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>

namespace flowpipe {

// Fills a typed config message from a stage's Struct config, by way of JSON; unknown
// fields are an error.
template <typename Config>
class ProtobufConfigParser {
 public:
  static bool Parse(const google::protobuf::Struct& config, Config* out, std::string* error = nullptr) {
    auto fail = [error](const std::string& why) {
      if (error != nullptr) {
        *error = why;
      }
      return false;
    };
    if (out == nullptr) {
      return fail("no output message given");
    }
    std::string json;
    auto status = google::protobuf::util::MessageToJsonString(config, &json);
    if (!status.ok()) {
      return fail(status.ToString());
    }
    status = google::protobuf::util::JsonStringToMessage(json, out);
    return status.ok() ? true : fail(status.ToString());
  }
};

}  // namespace flowpipe
