// Data access for passes (calibration and evaluation sets), provided by the CLI layer.
#pragma once

namespace slmops::passes {
struct DataHooks;
}

namespace slmops::cli {
const passes::DataHooks& pass_data_hooks();
}  // namespace slmops::cli
