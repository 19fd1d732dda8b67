#pragma once

#include <atomic>

namespace flowpipe {

// Cooperative cancellation. The runtime owns the flag; stages only look at it.
// Under flowpipe the flag is refreshed from the runtime before every batch of calls.
class StopToken {
 public:
  StopToken() noexcept = default;
  explicit StopToken(std::atomic<bool>* flag) noexcept : flag_(flag) {}

  bool stop_requested() const noexcept {
    return flag_ != nullptr && flag_->load(std::memory_order_relaxed);
  }

  // Asks the whole flow to stop (not only this stage).
  void request_stop() const noexcept {
    if (flag_ != nullptr) {
      flag_->store(true, std::memory_order_relaxed);
    }
  }

 private:
  std::atomic<bool>* flag_ = nullptr;
};

}  // namespace flowpipe
