#pragma once

#include <string>

#include "payload.h"
#include "stop_token.h"

namespace flowpipe {

// What a stage sees of the runtime: only cooperative cancellation.
struct StageContext {
  StopToken stop;

  // Stops the whole flow.
  void request_stop() { stop.request_stop(); }
};

// Base of every stage. A plugin returns one from flowpipe_create_stage().
struct IStage {
  virtual ~IStage() = default;
  virtual std::string name() const = 0;
};

// Produces records. Return false at end of stream (the record in `out` is then dropped).
struct ISourceStage : IStage {
  virtual bool produce(StageContext& ctx, Payload& out) = 0;
};

// Exactly one output per input. `output.meta` starts as a copy of `input.meta`; whatever
// is left in `output`, even an empty payload, is passed on.
struct ITransformStage : IStage {
  virtual void process(StageContext& ctx, const Payload& input, Payload& output) = 0;
};

// Consumes records.
struct ISinkStage : IStage {
  virtual void consume(StageContext& ctx, const Payload& input) = 0;
};

// ---- flowpipe extension (not in flow-pipe) ---------------------------------------------

// Receives the outputs of an IMultiTransformStage.
struct PayloadEmitter {
  virtual void emit(const Payload& output) = 0;

 protected:
  ~PayloadEmitter() = default;
};

// A transform with zero, one or many outputs per input: filters, splitters.
// Emitted payloads whose meta is left unchanged carry the input's metadata on.
struct IMultiTransformStage : IStage {
  virtual void process(StageContext& ctx, const Payload& input, PayloadEmitter& out) = 0;
};

}  // namespace flowpipe
