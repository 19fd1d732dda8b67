#pragma once

#include <cstdint>
#include <string>

namespace flowpipe::observability {

enum class LogLevel : uint8_t {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
  Fatal = 4,
};

// Sends one line to the runtime's log: under flowpipe, the Python logger of the stage
// that is running on this thread (or `flowpipe.native` outside any stage call).
// Thread-safe. A Warn/Error logged while `configure` returns false becomes the
// rejection message shown to the user.
void Log(LogLevel level, const std::string& message, const char* file = nullptr, int line = 0);

// True when `level` would be emitted; the FP_LOG_* macros skip building the message
// otherwise, so debug logging in a hot path costs one call.
bool LogEnabled(LogLevel level) noexcept;

}  // namespace flowpipe::observability

#define FP_LOG_AT_(level, msg)                                                        \
  (::flowpipe::observability::LogEnabled(level)                                       \
       ? ::flowpipe::observability::Log((level), (msg), __FILE__, __LINE__) \
       : void())

#define FP_LOG_DEBUG(msg) FP_LOG_AT_(::flowpipe::observability::LogLevel::Debug, msg)
#define FP_LOG_INFO(msg) FP_LOG_AT_(::flowpipe::observability::LogLevel::Info, msg)
#define FP_LOG_WARN(msg) FP_LOG_AT_(::flowpipe::observability::LogLevel::Warn, msg)
#define FP_LOG_ERROR(msg) FP_LOG_AT_(::flowpipe::observability::LogLevel::Error, msg)
#define FP_LOG_FATAL(msg) FP_LOG_AT_(::flowpipe::observability::LogLevel::Fatal, msg)
