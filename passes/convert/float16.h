// Float to float16 / bfloat16 conversion, with ONNX Runtime's float16 converter's semantics
// and option names (onnxconverter-common's convert_float_to_float16, Olive's
// OnnxFloatToFloat16):
//   - every float tensor of the graph becomes 16-bit: graph inputs and outputs (unless
//     keep-io-types, which keeps them float and puts Casts at the boundary), node outputs,
//     initializers, Constant / ConstantOfShape values, Cast and Random* target types;
//   - nodes stay float when their op is in op-block-list (default: ORT's list of ops without
//     16-bit kernels or unsafe in 16 bits), their name is in node-block-list, their schema
//     does not allow the 16-bit type for a float input or output (Resize's scales,
//     DequantizeLinear's scale before opset 19, most ops' bfloat16 before opset 13), or a type
//     is unknown; Casts go around them, one per value and direction;
//   - an initializer that only such nodes read stays float (it is neither cast nor
//     duplicated); one read by both kinds is stored 16-bit and cast for the float readers;
//   - float16 values outside the finite range are clamped to +-65504 and non-zero values
//     below the smallest subnormal raised to +-5.96e-8, as ORT does; both are counted;
//   - subgraphs (If, Loop, Scan) are converted with their node; a kept node's subgraphs stay
//     float.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/options.h"

namespace slmops::passes {

// ONNX Runtime's DEFAULT_OP_BLOCK_LIST (ML ops, and ops without float16 CPU kernels or that
// lose too much in float16).
const std::vector<std::string>& default_float16_op_block_list();

struct Float16Options {
  std::string dtype = "float16";  // float16 | bfloat16
  bool keep_io_types = false;
  std::vector<std::string> op_block_list = default_float16_op_block_list();
  std::vector<std::string> node_block_list;
  static const OptionTable<Float16Options>& table();
};

struct Float16Stats {
  int64_t values_converted = 0;  // float values that are now 16-bit (initializers included)
  int64_t initializers_converted = 0;
  int64_t initializers_kept_float = 0;  // read only by nodes that stay float
  int64_t casts_inserted = 0;
  int64_t nodes_kept_float = 0;
  int64_t clamped_to_max = 0;                 // |x| > 65504 stored as +-65504 (float16)
  int64_t raised_to_min = 0;                  // 0 < |x| < 5.96e-8 stored as +-5.96e-8 (float16)
  std::map<std::string, int64_t> kept_float;  // why -> nodes ("op-block-list: Resize", ...)
};

Float16Stats convert_float16(ir::Model& m, const Float16Options& o);
nlohmann::json float16_stats_json(const Float16Stats& s);
// One message per op-block-list entry that names no known op type.
std::vector<std::string> check_float16_options(const nlohmann::json& options, Naming naming);

}  // namespace slmops::passes
