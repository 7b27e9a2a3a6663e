// Placeholder: this op family is being written; it registers no kernels yet.
#include "runtime/ops/common.h"

namespace slmops::runtime {
void register_rnn_ops() {}
}  // namespace slmops::runtime
