#pragma once

#include <string_view>

#ifdef FLOWPIPE_WITH_PROTOBUF
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>

#include "flowpipe/observability/logging.h"
#endif

namespace flowpipe {

// A stage that takes the `config` of its flow entry. `configure` is called once per
// instance, before any record; returning false (or throwing) rejects the config and the
// flow does not start. Log the reason with FP_LOG_ERROR (or throw it): it is shown.
//
// Two forms, override one:
//   configure(std::string_view json)          the config as a JSON object; no protobuf needed
//   configure(const google::protobuf::Struct&) flow-pipe's form; available when the SDK
//                                              was found with protobuf (FLOWPIPE_WITH_PROTOBUF)
class ConfigurableStage {
 public:
  virtual ~ConfigurableStage() = default;

#ifdef FLOWPIPE_WITH_PROTOBUF
  virtual bool configure(std::string_view json) {
    google::protobuf::Struct config;
    auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &config);
    if (!status.ok()) {
      FP_LOG_ERROR("config is not a JSON object: " + status.ToString());
      return false;
    }
    return configure(config);
  }

  virtual bool configure(const google::protobuf::Struct& config) {
    (void)config;
    FP_LOG_ERROR("the stage overrides neither form of ConfigurableStage::configure");
    return false;
  }
#else
  virtual bool configure(std::string_view json) = 0;
#endif
};

}  // namespace flowpipe
