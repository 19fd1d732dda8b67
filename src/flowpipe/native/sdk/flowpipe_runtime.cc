// flowpipe C++ SDK support code: implements flowpipe/stage_abi.h on top of a plugin's
// flowpipe_create_stage() / flowpipe_destroy_stage(), so a stage written for flow-pipe's
// headers runs in flowpipe. It is compiled into every plugin that links the CMake target
// flowpipe::flowpipe_runtime (an INTERFACE target: no separate library to ship).

#include <cxxabi.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "flowpipe/configurable_stage.h"
#include "flowpipe/observability/logging.h"
#include "flowpipe/payload.h"
#include "flowpipe/stage.h"
#include "flowpipe/stage_abi.h"

// Defined by the plugin. Weak, so that a program that links flowpipe_runtime without
// being a plugin (a unit test of helpers) still links; init then reports what is missing.
extern "C" flowpipe::IStage* flowpipe_create_stage();
extern "C" void flowpipe_destroy_stage(flowpipe::IStage* stage);
#pragma weak flowpipe_create_stage
#pragma weak flowpipe_destroy_stage

namespace {

using flowpipe::Payload;
using flowpipe::PayloadMeta;
using flowpipe::observability::LogLevel;

const flowpipe_host_api* g_host = nullptr;
int32_t g_kind = 0;
std::string g_name;

// Raised when the host refuses an output; the host already holds the message.
struct EmitFailed {};

struct Instance {
  void* host = nullptr;
  flowpipe::IStage* stage = nullptr;
  std::atomic<bool> stop{false};
  flowpipe::StageContext ctx{flowpipe::StopToken(&stop)};
  flowpipe::ISourceStage* source = nullptr;
  flowpipe::ITransformStage* transform = nullptr;
  flowpipe::IMultiTransformStage* multi = nullptr;
  flowpipe::ISinkStage* sink = nullptr;
  // Per-batch scratch, kept to avoid reallocating every call.
  std::vector<Payload> inputs;
  std::vector<size_t> offsets;
  std::vector<flowpipe_attr> attrs;
};

thread_local Instance* t_current = nullptr;      // whose logs these are
thread_local bool t_quiet = false;               // the probe instance in init logs nothing
thread_local std::string* t_rejection = nullptr; // during configure: last warning/error

// Marks the calling thread as working for `inst` and syncs the stop flag both ways.
class CallScope {
 public:
  explicit CallScope(Instance* inst) : inst_(inst), previous_(t_current) {
    t_current = inst;
    host_stopping_ = g_host->stop_requested(inst->host) != 0;
    inst->stop.store(host_stopping_, std::memory_order_relaxed);
  }
  ~CallScope() {
    if (!host_stopping_ && inst_->stop.load(std::memory_order_relaxed)) {
      g_host->request_stop(inst_->host);  // the stage called StageContext::request_stop
    }
    t_current = previous_;
  }
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  Instance* inst_;
  Instance* previous_;
  bool host_stopping_;
};

void SetError(flowpipe_error* err, const std::string& message) {
  size_t n = message.size() < sizeof err->message ? message.size() : sizeof err->message - 1;
  for (size_t i = 0; i < n; ++i) {
    err->message[i] = message[i] == '\n' ? ' ' : message[i];  // one line
  }
  err->message[n] = '\0';
}

// Plain POSIX clocks rather than <chrono>: this file is compiled into every plugin, and
// <chrono> alone takes most of a second to compile.
int64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

std::string TypeName(const std::type_info& type) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : type.name();
  std::free(demangled);
  return name;
}

// For use inside a catch block: the in-flight exception as FLOWPIPE_ERROR.
int32_t FailFromException(flowpipe_error* err, const char* what) {
  try {
    throw;
  } catch (const EmitFailed&) {
    // The host has the message already.
  } catch (const std::exception& e) {
    SetError(err, std::string(what) + ": " + TypeName(typeid(e)) + ": " + e.what());
  } catch (...) {
    SetError(err, std::string(what) + ": unknown C++ exception");
  }
  return FLOWPIPE_ERROR;
}

int32_t KindOf(flowpipe::IStage* stage) {
  if (dynamic_cast<flowpipe::ISourceStage*>(stage) != nullptr) return FLOWPIPE_KIND_SOURCE;
  if (dynamic_cast<flowpipe::IMultiTransformStage*>(stage) != nullptr ||
      dynamic_cast<flowpipe::ITransformStage*>(stage) != nullptr)
    return FLOWPIPE_KIND_TRANSFORM;
  if (dynamic_cast<flowpipe::ISinkStage*>(stage) != nullptr) return FLOWPIPE_KIND_SINK;
  return 0;
}

// ---- metadata ------------------------------------------------------------------------

void MetaFromAbi(const flowpipe_meta* src, PayloadMeta& dst) {
  if (src == nullptr) {  // reset in place: cheaper than assigning a fresh PayloadMeta
    dst.enqueue_ts_ns = 0;
    std::memset(dst.trace_id, 0, sizeof dst.trace_id);
    std::memset(dst.span_id, 0, sizeof dst.span_id);
    dst.flags = 0;
    dst.schema_id.clear();
    dst.attrs.reset();
    return;
  }
  dst.enqueue_ts_ns = src->enqueue_ts_ns;
  std::memcpy(dst.trace_id, src->trace_id, sizeof dst.trace_id);
  std::memcpy(dst.span_id, src->span_id, sizeof dst.span_id);
  dst.flags = src->flags;
  dst.schema_id.assign(src->schema_id.ptr, src->schema_id.len);
  if (src->attr_count == 0) {
    dst.attrs.reset();
    return;
  }
  auto attrs = std::make_shared<PayloadMeta::MetadataMap>();
  attrs->reserve(src->attr_count);
  for (size_t i = 0; i < src->attr_count; ++i) {
    const flowpipe_attr& a = src->attrs[i];
    std::string key(a.key.ptr, a.key.len);
    switch (a.type) {
      case FLOWPIPE_ATTR_INT: (*attrs)[key] = a.value.i; break;
      case FLOWPIPE_ATTR_DOUBLE: (*attrs)[key] = a.value.d; break;
      case FLOWPIPE_ATTR_BOOL: (*attrs)[key] = a.value.b != 0; break;
      default: (*attrs)[key] = std::string(a.value.s.ptr, a.value.s.len); break;
    }
  }
  dst.attrs = std::move(attrs);
}

bool SameMeta(const PayloadMeta& a, const PayloadMeta& b) {
  bool same_attrs = a.attrs == b.attrs || (!a.has_attrs() && !b.has_attrs()) ||
                    (a.attrs != nullptr && b.attrs != nullptr && *a.attrs == *b.attrs);
  return same_attrs && a.enqueue_ts_ns == b.enqueue_ts_ns && a.flags == b.flags &&
         std::memcmp(a.trace_id, b.trace_id, sizeof a.trace_id) == 0 &&
         std::memcmp(a.span_id, b.span_id, sizeof a.span_id) == 0 && a.schema_id == b.schema_id;
}

// `dst` borrows from `src` and `scratch`; valid until either changes.
void MetaToAbi(const PayloadMeta& src, flowpipe_meta& dst, std::vector<flowpipe_attr>& scratch) {
  dst.enqueue_ts_ns = src.enqueue_ts_ns;
  std::memcpy(dst.trace_id, src.trace_id, sizeof dst.trace_id);
  std::memcpy(dst.span_id, src.span_id, sizeof dst.span_id);
  dst.flags = src.flags;
  dst.schema_id = {src.schema_id.data(), src.schema_id.size()};
  scratch.clear();
  if (src.attrs != nullptr) {
    for (const auto& [key, value] : *src.attrs) {
      flowpipe_attr a{};
      a.key = {key.data(), key.size()};
      if (const auto* i = std::get_if<int64_t>(&value)) {
        a.type = FLOWPIPE_ATTR_INT;
        a.value.i = *i;
      } else if (const auto* d = std::get_if<double>(&value)) {
        a.type = FLOWPIPE_ATTR_DOUBLE;
        a.value.d = *d;
      } else if (const auto* b = std::get_if<bool>(&value)) {
        a.type = FLOWPIPE_ATTR_BOOL;
        a.value.b = *b ? 1 : 0;
      } else {
        const auto& s = std::get<std::string>(value);
        a.type = FLOWPIPE_ATTR_STRING;
        a.value.s = {s.data(), s.size()};
      }
      scratch.push_back(a);
    }
  }
  dst.attrs = scratch.data();
  dst.attr_count = scratch.size();
}

// ---- records across the boundary ------------------------------------------------------

// One shared copy of the batch's bytes backs every input Payload, so a stage may keep a
// Payload after the call (flow-pipe's buffers are shared_ptr-owned) while the host's
// buffers are only borrowed.
void LoadInputs(Instance* inst, const flowpipe_payload* inputs, size_t count) {
  size_t total = 0;
  inst->offsets.resize(count);
  for (size_t i = 0; i < count; ++i) {
    inst->offsets[i] = total;
    total += inputs[i].size;
  }
  std::shared_ptr<uint8_t[]> block = total > 0 ? flowpipe::AllocatePayloadBuffer(total) : nullptr;
  inst->inputs.resize(count);
  for (size_t i = 0; i < count; ++i) {
    Payload& p = inst->inputs[i];
    if (inputs[i].size > 0) {
      std::memcpy(block.get() + inst->offsets[i], inputs[i].data, inputs[i].size);
      p.buffer = std::shared_ptr<uint8_t[]>(block, block.get() + inst->offsets[i]);
    } else {
      p.buffer.reset();
    }
    p.size = inputs[i].size;
    MetaFromAbi(inputs[i].meta, p.meta);
  }
}

// Hands one output to the host. `source` is the input it came from, or -1.
void Emit(Instance* inst, const flowpipe_emitter* out, const Payload& output, const flowpipe_payload* inputs,
          int64_t source) {
  flowpipe_payload abi{output.data(), output.size, nullptr};
  flowpipe_meta meta{};
  const Payload* input = source >= 0 ? &inst->inputs[static_cast<size_t>(source)] : nullptr;
  if (input != nullptr) {
    const flowpipe_payload& host_input = inputs[source];
    // Still the input's bytes, unmodified: let the host forward its own record.
    if (output.data() == input->data() && output.size == host_input.size &&
        (output.size == 0 || std::memcmp(output.data(), host_input.data, output.size) == 0)) {
      abi.data = host_input.data;
    }
    if (!SameMeta(output.meta, input->meta)) {
      MetaToAbi(output.meta, meta, inst->attrs);  // an all-empty meta tells the host "none"
      abi.meta = &meta;
    }
  } else if (!SameMeta(output.meta, PayloadMeta{})) {
    MetaToAbi(output.meta, meta, inst->attrs);
    abi.meta = &meta;
  }
  if (out->emit(out->ctx, &abi, source) != FLOWPIPE_OK) {
    throw EmitFailed{};
  }
}

class HostEmitter final : public flowpipe::PayloadEmitter {
 public:
  HostEmitter(Instance* inst, const flowpipe_emitter* out, const flowpipe_payload* inputs)
      : inst_(inst), out_(out), inputs_(inputs) {}
  void emit(const Payload& output) override { Emit(inst_, out_, output, inputs_, source); }
  int64_t source = -1;

 private:
  Instance* inst_;
  const flowpipe_emitter* out_;
  const flowpipe_payload* inputs_;
};

// ---- the ABI functions ----------------------------------------------------------------

int32_t Init(const flowpipe_host_api* host, flowpipe_stage_info* info, flowpipe_error* err) {
  g_host = host;
  if (&flowpipe_create_stage == nullptr || &flowpipe_destroy_stage == nullptr) {
    SetError(err, "the library does not define flowpipe_create_stage and flowpipe_destroy_stage");
    return FLOWPIPE_ERROR;
  }
  // The kind is a property of the library for the host, but of the object in flow-pipe's
  // API: look at one instance (created quietly, as a worker would create it).
  t_quiet = true;
  try {
    flowpipe::IStage* probe = flowpipe_create_stage();
    if (probe == nullptr) {
      t_quiet = false;
      SetError(err, "flowpipe_create_stage() returned null");
      return FLOWPIPE_ERROR;
    }
    g_kind = KindOf(probe);
    g_name = probe->name();
    flowpipe_destroy_stage(probe);
  } catch (...) {
    t_quiet = false;
    return FailFromException(err, "flowpipe_create_stage");
  }
  t_quiet = false;
  if (g_kind == 0) {
    SetError(err, "stage '" + g_name +
                      "' implements none of ISourceStage, ITransformStage, IMultiTransformStage, ISinkStage");
    return FLOWPIPE_ERROR;
  }
  info->kind = g_kind;
  info->name = g_name.c_str();
  return FLOWPIPE_OK;
}

void* Create(void* host_instance, flowpipe_error* err) {
  auto inst = std::make_unique<Instance>();
  inst->host = host_instance;
  CallScope scope(inst.get());
  try {
    inst->stage = flowpipe_create_stage();
  } catch (...) {
    FailFromException(err, "flowpipe_create_stage");
    return nullptr;
  }
  if (inst->stage == nullptr) {
    SetError(err, "flowpipe_create_stage() returned null");
    return nullptr;
  }
  if (KindOf(inst->stage) != g_kind) {
    flowpipe_destroy_stage(inst->stage);
    SetError(err, "flowpipe_create_stage() returned a stage of another kind than the first time");
    return nullptr;
  }
  inst->source = dynamic_cast<flowpipe::ISourceStage*>(inst->stage);
  inst->multi = dynamic_cast<flowpipe::IMultiTransformStage*>(inst->stage);
  inst->transform = dynamic_cast<flowpipe::ITransformStage*>(inst->stage);
  inst->sink = dynamic_cast<flowpipe::ISinkStage*>(inst->stage);
  return inst.release();
}

void Destroy(void* stage) {
  std::unique_ptr<Instance> inst(static_cast<Instance*>(stage));
  CallScope scope(inst.get());
  flowpipe_destroy_stage(inst->stage);
}

int32_t Configure(void* stage, const char* json, size_t len, flowpipe_error* err) {
  auto* inst = static_cast<Instance*>(stage);
  CallScope scope(inst);
  std::string_view config(json, len);
  auto* configurable = dynamic_cast<flowpipe::ConfigurableStage*>(inst->stage);
  if (configurable == nullptr) {
    if (config != "{}") {  // as in flow-pipe: a stage that is not configurable ignores config
      FP_LOG_WARN("stage '" + inst->stage->name() + "' is not configurable; its config is ignored");
    }
    return FLOWPIPE_OK;
  }
  std::string rejection;
  t_rejection = &rejection;
  bool accepted = false;
  try {
    accepted = configurable->configure(config);
  } catch (...) {
    t_rejection = nullptr;
    return FailFromException(err, "configure");
  }
  t_rejection = nullptr;
  if (!accepted) {
    SetError(err, rejection.empty() ? "the stage rejected its configuration" : rejection);
    return FLOWPIPE_ERROR;
  }
  return FLOWPIPE_OK;
}

int32_t ProduceBatch(void* stage, size_t limit, const flowpipe_emitter* out, flowpipe_error* err) {
  auto* inst = static_cast<Instance*>(stage);
  CallScope scope(inst);
  // Like flowpipe's Python sources: hand over what there is after ~1 ms, so a slow source
  // never holds records back waiting for a full batch.
  const int64_t deadline = MonotonicNs() + 1000000;
  try {
    for (size_t i = 0; i < limit; ++i) {
      Payload record;
      if (!inst->source->produce(inst->ctx, record)) {
        return FLOWPIPE_END;
      }
      Emit(inst, out, record, nullptr, -1);
      if (MonotonicNs() >= deadline) {
        break;
      }
    }
  } catch (...) {
    return FailFromException(err, "produce");
  }
  return FLOWPIPE_OK;
}

int32_t ProcessBatch(void* stage, const flowpipe_payload* inputs, size_t count, const flowpipe_emitter* out,
                     flowpipe_error* err) {
  auto* inst = static_cast<Instance*>(stage);
  CallScope scope(inst);
  try {
    LoadInputs(inst, inputs, count);
    HostEmitter emitter(inst, out, inputs);
    for (size_t i = 0; i < count; ++i) {
      const Payload& input = inst->inputs[i];
      if (inst->multi != nullptr) {
        emitter.source = static_cast<int64_t>(i);
        inst->multi->process(inst->ctx, input, emitter);
      } else {
        Payload output;
        output.meta = input.meta;
        inst->transform->process(inst->ctx, input, output);
        Emit(inst, out, output, inputs, static_cast<int64_t>(i));
      }
    }
  } catch (...) {
    inst->inputs.clear();
    return FailFromException(err, "process");
  }
  inst->inputs.clear();
  return FLOWPIPE_OK;
}

int32_t ConsumeBatch(void* stage, const flowpipe_payload* inputs, size_t count, flowpipe_error* err) {
  auto* inst = static_cast<Instance*>(stage);
  CallScope scope(inst);
  try {
    LoadInputs(inst, inputs, count);
    for (const Payload& input : inst->inputs) {
      inst->sink->consume(inst->ctx, input);
    }
  } catch (...) {
    inst->inputs.clear();
    return FailFromException(err, "consume");
  }
  inst->inputs.clear();
  return FLOWPIPE_OK;
}

const flowpipe_stage_api kApi = {
    FLOWPIPE_STAGE_ABI_VERSION, Init, Create, Destroy, Configure, ProduceBatch, ProcessBatch, ConsumeBatch,
};

// Used before the host is known (static initialisers) or outside any host (tests):
// flow-pipe's local log format on stderr.
void LogToStderr(LogLevel level, const std::string& message) {
  static const char* const kNames[] = {"debug", "info", "warning", "error", "critical"};
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm local{};
  localtime_r(&now.tv_sec, &local);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
  size_t index = static_cast<size_t>(level);
  std::fprintf(stderr, "[%s.%03ld] [%s] %s\n", stamp, now.tv_nsec / 1000000, kNames[index < 4 ? index : 4],
               message.c_str());
}

}  // namespace

namespace flowpipe::observability {

bool LogEnabled(LogLevel level) noexcept {
  if (t_quiet) return false;
  if (t_rejection != nullptr && level >= LogLevel::Warn) return true;
  if (g_host == nullptr) return true;
  return g_host->log_enabled(t_current != nullptr ? t_current->host : nullptr, static_cast<int32_t>(level)) != 0;
}

void Log(LogLevel level, const std::string& message, const char* file, int line) {
  if (t_quiet) return;
  if (t_rejection != nullptr && level >= LogLevel::Warn) {
    *t_rejection = message;
  }
  if (g_host == nullptr) {
    LogToStderr(level, message);
    return;
  }
  g_host->log(t_current != nullptr ? t_current->host : nullptr, static_cast<int32_t>(level), message.data(),
              message.size(), file, line);
}

}  // namespace flowpipe::observability

extern "C" FLOWPIPE_STAGE_EXPORT const flowpipe_stage_api* flowpipe_stage_entry(uint32_t host_abi_version) {
  (void)host_abi_version;  // the host compares versions itself and says what it found
  return &kApi;
}
