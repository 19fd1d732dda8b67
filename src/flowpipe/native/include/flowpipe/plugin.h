#pragma once

#include "flowpipe/stage.h"

// Marks the plugin's factory functions as exported even with -fvisibility=hidden.
#if defined(__GNUC__) || defined(__clang__)
#define FLOWPIPE_PLUGIN_API __attribute__((visibility("default")))
#else
#define FLOWPIPE_PLUGIN_API
#endif

// A plugin defines, with C linkage:
//   FLOWPIPE_PLUGIN_API flowpipe::IStage* flowpipe_create_stage();
//   FLOWPIPE_PLUGIN_API void flowpipe_destroy_stage(flowpipe::IStage* stage);
// and links flowpipe::flowpipe_runtime, whose support code turns them into flowpipe's
// C ABI (flowpipe/stage_abi.h).

namespace flowpipe {

using CreateStageFn = IStage* (*)();
using DestroyStageFn = void (*)(IStage*);

constexpr const char* FLOWPIPE_CREATE_STAGE_SYMBOL = "flowpipe_create_stage";
constexpr const char* FLOWPIPE_DESTROY_STAGE_SYMBOL = "flowpipe_destroy_stage";

}  // namespace flowpipe
