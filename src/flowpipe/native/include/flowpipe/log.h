#pragma once

// The FP_LOG_* macros; flow-pipe's plugins include flowpipe/observability/logging.h.
#include "flowpipe/observability/logging.h"
