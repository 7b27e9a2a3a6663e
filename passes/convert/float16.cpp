#include "passes/convert/float16.h"

#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "formats/shape_infer.h"
#include "ir/edit.h"
#include "ir/error.h"
#include "passes/optimize/pattern.h"
#include "passes/registry.h"
#include "runtime/kernels/cpu_features.h"

namespace slmops::passes {

const std::vector<std::string>& default_float16_op_block_list() {
  static const std::vector<std::string> ops = {"ArrayFeatureExtractor",
                                               "Binarizer",
                                               "CastMap",
                                               "CategoryMapper",
                                               "DictVectorizer",
                                               "FeatureVectorizer",
                                               "Imputer",
                                               "LabelEncoder",
                                               "LinearClassifier",
                                               "LinearRegressor",
                                               "Normalizer",
                                               "OneHotEncoder",
                                               "RandomUniformLike",
                                               "SVMClassifier",
                                               "SVMRegressor",
                                               "Scaler",
                                               "TreeEnsembleClassifier",
                                               "TreeEnsembleRegressor",
                                               "ZipMap",
                                               "NonMaxSuppression",
                                               "TopK",
                                               "RoiAlign",
                                               "Resize",
                                               "Range",
                                               "CumSum",
                                               "Min",
                                               "Max",
                                               "Upsample"};
  return ops;
}

const OptionTable<Float16Options>& Float16Options::table() {
  using O = Float16Options;
  static const OptionTable<O> t({
      {"dtype", &O::dtype, "the 16-bit type floats become", {"float16", "bfloat16"}},
      {"keep-io-types", &O::keep_io_types,
       "keep the graph's float inputs and outputs float, with Casts at the boundary (ORT's keep_io_types)"},
      {"op-block-list", &O::op_block_list,
       "op types that stay float, with Casts around them (default: ONNX Runtime's list; giving it replaces the "
       "list)"},
      {"node-block-list", &O::node_block_list, "node names that stay float"},
  });
  return t;
}

namespace {

using ir::DType;

constexpr float kHalfMax = 65504.0f;
constexpr float kHalfMinSubnormal = 5.96e-8f;

// Ops whose float output type comes from an attribute, which the converter rewrites.
bool typed_by_attribute(const ir::Node& n) {
  static const std::unordered_set<std::string> ops = {"Cast",         "Constant",      "ConstantOfShape", "EyeLike",
                                                      "RandomNormal", "RandomUniform", "RandomNormalLike"};
  return ir::is_default_domain(n.domain) && ops.count(n.op_type);
}

// n floats at src (any alignment) as float16 into dst, clamped as ORT clamps: finite values
// beyond +-65504 to +-65504, non-zero values below the smallest subnormal to +-5.96e-8 (both
// counted); NaN and infinities pass. Round to nearest even, as ir::float_to_half.
void floats_to_half_scalar(const uint8_t* src, uint64_t n, uint16_t* dst, Float16Stats& st) {
  for (uint64_t i = 0; i < n; ++i) {
    float x;
    std::memcpy(&x, src + i * 4, 4);  // file views need not be 4-byte aligned
    if (std::isfinite(x)) {
      const float a = std::fabs(x);
      if (a > kHalfMax) {
        x = std::copysign(kHalfMax, x);
        ++st.clamped_to_max;
      } else if (a > 0 && a < kHalfMinSubnormal) {
        x = std::copysign(kHalfMinSubnormal, x);
        ++st.raised_to_min;
      }
    }
    dst[i] = ir::float_to_half(x);
  }
}

// The same 8 at a time with F16C (vcvtps2ph rounds to nearest even, as the scalar path).
__attribute__((target("avx,f16c"))) void floats_to_half_avx(const uint8_t* src, uint64_t n, uint16_t* dst,
                                                            Float16Stats& st) {
  const __m256 sign = _mm256_set1_ps(-0.0f), max = _mm256_set1_ps(kHalfMax),
               inf = _mm256_set1_ps(std::numeric_limits<float>::infinity()), tiny = _mm256_set1_ps(kHalfMinSubnormal),
               zero = _mm256_setzero_ps();
  uint64_t i = 0;
  int64_t big_count = 0, tiny_count = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(reinterpret_cast<const float*>(src + i * 4));
    const __m256 s = _mm256_and_ps(x, sign);
    const __m256 a = _mm256_andnot_ps(sign, x);
    const __m256 is_big = _mm256_and_ps(_mm256_cmp_ps(a, max, _CMP_GT_OQ), _mm256_cmp_ps(a, inf, _CMP_LT_OQ));
    const __m256 is_tiny = _mm256_and_ps(_mm256_cmp_ps(a, zero, _CMP_GT_OQ), _mm256_cmp_ps(a, tiny, _CMP_LT_OQ));
    x = _mm256_blendv_ps(x, _mm256_or_ps(max, s), is_big);
    x = _mm256_blendv_ps(x, _mm256_or_ps(tiny, s), is_tiny);
    big_count += __builtin_popcount(_mm256_movemask_ps(is_big));
    tiny_count += __builtin_popcount(_mm256_movemask_ps(is_tiny));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  }
  st.clamped_to_max += big_count;
  st.raised_to_min += tiny_count;
  floats_to_half_scalar(src + i * 4, n - i, dst + i, st);
}

// n floats to bfloat16, round to nearest even (NaN stays a quiet NaN), as ir::float_to_bfloat16.
void floats_to_bfloat16(const uint8_t* src, uint64_t n, uint16_t* dst) {
  for (uint64_t i = 0; i < n; ++i) {
    float x;
    std::memcpy(&x, src + i * 4, 4);
    dst[i] = ir::float_to_bfloat16(x);
  }
}

// A float tensor converted to `low`, with ORT's clamping for float16.
ir::Tensor to_low(const ir::Tensor& t, DType low, Float16Stats& st) {
  const uint64_t n = t.numel();
  ir::Buffer out = ir::Buffer::allocate(n * 2);
  auto* dst = reinterpret_cast<uint16_t*>(out.mutable_data());
  const uint8_t* src = t.data.data();
  static const bool avx = runtime::kernels::cpu().fma;  // AVX + FMA + F16C
  if (low == DType::BFloat16)
    floats_to_bfloat16(src, n, dst);
  else if (avx)
    floats_to_half_avx(src, n, dst, st);
  else
    floats_to_half_scalar(src, n, dst, st);
  t.data.release_resident_pages();  // a mapped weight's pages are done with
  return ir::Tensor::make(t.name, low, t.dims, std::move(out));
}

class Converter {
 public:
  Converter(ir::Model& m, const Float16Options& o)
      : m_(m),
        o_(o),
        low_(o.dtype == "bfloat16" ? DType::BFloat16 : DType::Float16),
        op_block_(o.op_block_list.begin(), o.op_block_list.end()),
        node_block_(o.node_block_list.begin(), o.node_block_list.end()) {}

  Float16Stats run() {
    collect_captured();
    formats::ensure_shapes(m_);
    convert_graph(*m_.graph, true, true);
    m_.shapes_inferred = false;
    return st_;
  }

 private:
  const char* low_name() const { return low_ == DType::Float16 ? "fp16" : "bf16"; }

  // Why `n` stays float, or "" when it is converted.
  std::string keep_reason(const ir::Node& n, bool convert_body) {
    if (!convert_body) return "inside a subgraph of a node that stays float";
    if (node_block_.count(n.name)) return "node-block-list";
    if (op_block_.count(n.op_type)) return "op-block-list: " + n.op_type;
    const int64_t opset = m_.opset(ir::is_default_domain(n.domain) ? "" : n.domain);
    bool float_in = false, float_out = false;
    auto check = [&](const std::vector<ir::Value*>& vs, bool input) -> std::string {
      for (size_t i = 0; i < vs.size(); ++i) {
        const ir::Value* v = vs[i];
        if (!v) continue;
        const DType dt = dtype_of(v);
        if (dt == DType::Undefined) return "a value of unknown type";
        if (dt != DType::Float) continue;
        (input ? float_in : float_out) = true;
        if (n.op_type == "Cast" && ir::is_default_domain(n.domain)) continue;  // any type to any type
        auto ok = formats::schema_allows(n.op_type, n.domain, opset, input, i, low_);
        if (!ok) return "no schema for " + n.op_type;
        if (!*ok)
          return fmt::format("{} {} of {} (opset {}) cannot be {}", input ? "input" : "output", i, n.op_type, opset,
                             low_ == DType::Float16 ? "float16" : "bfloat16");
      }
      return "";
    };
    if (auto why = check(n.inputs, true); !why.empty()) return why;
    if (auto why = check(n.outputs, false); !why.empty()) return why;
    if (float_out && !float_in && !typed_by_attribute(n) && !n.has_subgraphs())
      return "a float output typed by something other than its inputs";
    return "";
  }

  bool low(const ir::Value* v) const {
    auto it = low_of_.find(v);
    return it != low_of_.end() && it->second;
  }

  // The Cast of `v` to the other width, made once per (value, direction) in `g`.
  ir::Value* cast_of(ir::Graph& g, ir::Value* v, bool to_low) {
    auto key = std::make_pair(v, to_low);
    if (auto it = casts_.find(key); it != casts_.end()) return it->second;
    const int64_t code = static_cast<int64_t>(to_low ? low_ : DType::Float);
    ir::Node* c = g.add_node("Cast", {v}, {g.unique_name(v->name + (to_low ? std::string("_") + low_name() : "_fp32"))},
                             ir::attribute_list(ir::Attribute::make_int("to", code)));
    ++st_.casts_inserted;
    casts_[key] = c->outputs[0];
    low_of_[c->outputs[0]] = to_low;
    return c->outputs[0];
  }

  void convert_graph(ir::Graph& g, bool is_main, bool convert_body) {
    // Which nodes stay float.
    std::unordered_set<const ir::Node*> kept;
    for (auto& n : g.nodes()) {
      std::string why = keep_reason(*n, convert_body);
      if (why.empty()) continue;
      kept.insert(n.get());
      // Only nodes that touch floats count: the others are the same either way.
      bool touches = false;
      for (auto* v : n->inputs) touches = touches || (v && dtype_of(v) == DType::Float);
      for (auto* v : n->outputs) touches = touches || (v && dtype_of(v) == DType::Float);
      if (touches && convert_body) {
        ++st_.nodes_kept_float;
        ++st_.kept_float[why];
      }
    }
    const bool io_low = convert_body && !(is_main && o_.keep_io_types);

    // The float values of this scope and whether each becomes 16-bit.
    std::vector<ir::Value*> floats;
    auto add = [&](ir::Value* v) {
      if (!v || low_of_.count(v) || dtype_of(v) != DType::Float) return;
      floats.push_back(v);
      bool l = false;
      switch (v->kind) {
        case ir::Value::Kind::Input:
          l = io_low;
          break;
        case ir::Value::Kind::Captured:
          l = low(v->outer);
          break;
        case ir::Value::Kind::NodeOutput:
          l = v->producer && !kept.count(v->producer);
          break;
        case ir::Value::Kind::Initializer: {
          for (ir::Node* c : v->consumers) l = l || (c->graph == &g && !kept.count(c) && reads_directly(c, v));
          l = l || captured_.count(v) > 0 || (v->is_graph_output() && io_low);
          l = l && convert_body;
          break;
        }
        default:
          break;
      }
      low_of_[v] = l;
    };
    for (auto& vi : g.inputs) add(vi.value);
    for (ir::Value* v : g.initializers) add(v);
    for (auto& n : g.nodes()) {
      for (ir::Value* v : n->inputs)
        if (v && v->kind == ir::Value::Kind::Captured) add(v);
      for (ir::Value* v : n->outputs) add(v);
    }
    for (auto& vi : g.outputs)
      if (vi.value && vi.value->kind == ir::Value::Kind::Captured) add(vi.value);

    // Readers that want the other width read a Cast.
    for (ir::Value* v : floats) {
      const bool l = low(v);
      std::vector<ir::Node*> readers = v->consumers;
      std::sort(readers.begin(), readers.end());
      readers.erase(std::unique(readers.begin(), readers.end()), readers.end());
      for (ir::Node* c : readers) {
        if (c->graph != &g) continue;
        const bool want = !kept.count(c);
        if (want == l) continue;
        for (size_t i = 0; i < c->inputs.size(); ++i)
          if (c->inputs[i] == v) c->set_input(i, cast_of(g, v, want));
      }
      for (auto& vi : g.outputs) {
        if (vi.value != v || io_low == l) continue;
        // The output keeps its name and gets the wanted type; `v` is renamed.
        ir::Value* t = cast_of(g, v, io_low);
        if (is_main) {  // a subgraph's outputs are positional; the model's keep their names
          std::string name = v->name;
          g.rename_value(v, g.unique_name(name + (l ? std::string("_") + low_name() : "_fp32")));
          g.rename_value(t, name);
        }
        t->type = v->type;
        vi.value = t;
      }
    }

    // Retype what became 16-bit.
    const auto low_code = static_cast<int32_t>(low_);
    for (ir::Value* v : floats) {
      if (!low(v)) {
        if (v->initializer && v->kind == ir::Value::Kind::Initializer) ++st_.initializers_kept_float;
        continue;
      }
      ++st_.values_converted;
      if (v->initializer) {
        v->initializer = std::make_shared<ir::Tensor>(to_low(*v->initializer, low_, st_));
        ++st_.initializers_converted;
      }
      if (v->type.is_tensor && v->type.elem() == DType::Float) v->type.elem_code = low_code;
      if (v->inferred.is_tensor && v->inferred.elem() == DType::Float) v->inferred.elem_code = low_code;
    }
    for (auto& vi : g.outputs)
      if (vi.value && low(vi.value) && vi.value->type.is_tensor && vi.value->type.elem() == DType::Float)
        vi.value->type.elem_code = low_code;

    // Attributes that name the output type, on the converted nodes.
    for (auto& n : g.nodes()) {
      if (kept.count(n.get()) || !typed_by_attribute(*n) || n->outputs.empty() || !low(n->outputs[0])) continue;
      retype_attributes(*n);
    }

    // Subgraphs: converted with their node, kept float with it.
    for (auto& n : g.nodes())
      for (auto& a : n->attributes) {
        if (a.g) convert_graph(*a.g, false, convert_body && !kept.count(n.get()));
        for (auto& sg : a.graphs) convert_graph(*sg, false, convert_body && !kept.count(n.get()));
      }
    ir::sort_nodes(g);
  }

  static bool reads_directly(const ir::Node* c, const ir::Value* v) {
    return std::find(c->inputs.begin(), c->inputs.end(), v) != c->inputs.end();
  }

  void retype_attributes(ir::Node& n) {
    const auto low_code = static_cast<int64_t>(low_);
    if (n.op_type == "Cast") {
      if (auto* a = n.attr("to")) a->i = low_code;
    } else if (n.op_type == "Constant") {
      for (auto& a : n.attributes) {
        if (a.name == "value" && a.t && a.t->dtype == DType::Float) {
          a.t = std::make_shared<ir::Tensor>(to_low(*a.t, low_, st_));
        } else if (a.name == "value_float" || a.name == "value_floats") {
          std::vector<float> vals = a.name == "value_float" ? std::vector<float>{a.f} : a.floats;
          std::vector<int64_t> dims;
          if (a.name == "value_floats") dims = {static_cast<int64_t>(vals.size())};
          ir::Tensor t = ir::Tensor::from_values("", DType::Float, dims, vals);
          a = ir::Attribute::make_tensor("value", to_low(t, low_, st_));
        }
      }
    } else if (n.op_type == "ConstantOfShape") {
      ir::Attribute* a = n.attr("value");
      if (a && a->t) {
        a->t = std::make_shared<ir::Tensor>(to_low(*a->t, low_, st_));
      } else {
        ir::Tensor zero = ir::Tensor::from_values("", DType::Float, {1}, std::vector<float>{0.0f});
        n.attributes.push_back(ir::Attribute::make_tensor("value", to_low(zero, low_, st_)));
      }
    } else if (ir::Attribute* a = n.attr("dtype"); a && a->i == static_cast<int64_t>(DType::Float)) {
      a->i = low_code;
    } else if (!a && (n.op_type == "RandomNormal" || n.op_type == "RandomUniform")) {
      n.attributes.push_back(ir::Attribute::make_int("dtype", low_code));  // float by default
    }
  }

  ir::Model& m_;
  const Float16Options& o_;
  DType low_;
  std::unordered_set<std::string> op_block_, node_block_;
  std::unordered_map<const ir::Value*, bool> low_of_;
  std::map<std::pair<ir::Value*, bool>, ir::Value*> casts_;
  std::unordered_set<const ir::Value*> captured_;
  Float16Stats st_;

  // Outer values that some subgraph reads: kept 16-bit when they are initializers, so the
  // subgraph casts if it needs float (the outer graph cannot see those readers).
  void collect_captured() {
    ir::walk_graphs(*m_.graph, [&](const ir::Graph& g) {
      for (auto& n : g.nodes())
        for (ir::Value* v : n->implicit_inputs) captured_.insert(v);
    });
  }
};

}  // namespace

Float16Stats convert_float16(ir::Model& m, const Float16Options& o) {
  if (!m.graph) return {};
  return Converter(m, o).run();
}

nlohmann::json float16_stats_json(const Float16Stats& s) {
  return {{"values_converted", s.values_converted},
          {"initializers_converted", s.initializers_converted},
          {"initializers_kept_float", s.initializers_kept_float},
          {"casts_inserted", s.casts_inserted},
          {"nodes_kept_float", s.nodes_kept_float},
          {"kept_float", s.kept_float},
          {"clamped_to_max", s.clamped_to_max},
          {"raised_to_min", s.raised_to_min}};
}

std::vector<std::string> check_float16_options(const nlohmann::json& options, Naming naming) {
  std::vector<std::string> problems;
  if (options.contains("op-block-list"))
    for (const auto& op : options["op-block-list"]) {
      const std::string name = op.get<std::string>();
      if (!formats::is_known_op_type(name))
        problems.push_back(fmt::format("{}: '{}' is not an ONNX op type", option_label("op-block-list", naming), name));
    }
  return problems;
}

PassInfo to_float16_pass_info() {
  PassInfo p;
  p.name = "to-float16";
  p.summary = "store and compute floats in float16 or bfloat16 (ONNX Runtime's float16 converter)";
  p.options = Float16Options::table().specs();
  p.check = [](const nlohmann::json& j, Naming naming) { return check_float16_options(j, naming); };
  p.run = [](ir::Model& m, const nlohmann::json& j, PassContext& ctx) {
    const ir::ModelStats before = ir::model_statistics(m);
    ctx.report = float16_stats_json(convert_float16(m, Float16Options::table().from_json(j)));
    const ir::ModelStats after = ir::model_statistics(m);
    ctx.report["bytes_by_dtype_before"] = before.bytes_by_dtype;
    ctx.report["bytes_by_dtype_after"] = after.bytes_by_dtype;
    ctx.report["parameters_by_dtype_before"] = before.parameters_by_dtype;
    ctx.report["parameters_by_dtype_after"] = after.parameters_by_dtype;
  };
  return p;
}

}  // namespace slmops::passes
