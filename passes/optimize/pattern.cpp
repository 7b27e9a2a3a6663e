#include "passes/optimize/pattern.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ir/dtype.h"
#include "ir/edit.h"

namespace slmops::passes {

void for_each_graph(ir::Model& m, const std::function<void(ir::Graph&)>& fn) {
  if (!m.graph) return;
  std::vector<ir::Graph*> graphs{m.graph.get()};
  m.graph->for_each_subgraph([&](ir::Graph& g) { graphs.push_back(&g); });
  for (ir::Graph* g : graphs) fn(*g);
}

int64_t freeze_legacy_initializer_inputs(ir::Model& m) {
  if (!m.graph || m.ir_version >= 4) return 0;
  auto& in = m.graph->inputs;
  const size_t before = in.size();
  in.erase(std::remove_if(in.begin(), in.end(),
                          [](const ir::ValueInfo& vi) {
                            return vi.value && vi.value->kind == ir::Value::Kind::Initializer && vi.value->initializer;
                          }),
           in.end());
  return static_cast<int64_t>(before - in.size());
}

ir::Node* producer_of(const ir::Value* v, std::string_view op) {
  if (!v || !v->producer || v->producer->op_type != op || !ir::is_default_domain(v->producer->domain)) return nullptr;
  return v->producer;
}

bool sole_reader(const ir::Value* v) { return v && v->consumers.size() == 1 && !v->is_graph_output(); }

std::optional<std::vector<int64_t>> const_ints(const ir::Value* v) {
  const ir::Tensor* t = ir::constant_tensor(v);
  return t ? tensor_ints(*t) : std::nullopt;
}

std::optional<std::vector<int64_t>> tensor_ints(const ir::Tensor& tensor) {
  const ir::Tensor* t = &tensor;
  if (t->data.size() != t->nbytes()) return std::nullopt;
  std::vector<int64_t> out(t->numel());
  const uint8_t* p = t->data.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (t->dtype == ir::DType::Int64) {
      std::memcpy(&out[i], p + i * 8, 8);
    } else if (t->dtype == ir::DType::Int32) {
      int32_t x;
      std::memcpy(&x, p + i * 4, 4);
      out[i] = x;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<std::vector<float>> const_floats(const ir::Value* v) {
  const ir::Tensor* t = ir::constant_tensor(v);
  if (!t || t->data.size() != t->nbytes()) return std::nullopt;
  std::vector<float> out(t->numel());
  const uint8_t* p = t->data.data();
  for (size_t i = 0; i < out.size(); ++i) {
    if (t->dtype == ir::DType::Float) {
      std::memcpy(&out[i], p + i * 4, 4);
    } else if (t->dtype == ir::DType::Double) {
      double x;
      std::memcpy(&x, p + i * 8, 8);
      out[i] = static_cast<float>(x);
    } else if (t->dtype == ir::DType::Float16) {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      out[i] = ir::half_to_float(h);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<double> const_scalar(const ir::Value* v) {
  const ir::Tensor* t = ir::constant_tensor(v);
  if (!t || t->numel() != 1) return std::nullopt;
  if (auto f = const_floats(v)) return (*f)[0];
  if (auto i = const_ints(v)) return static_cast<double>((*i)[0]);
  return std::nullopt;
}

bool const_all_near(const ir::Value* v, double x, double tol) {
  auto f = const_floats(v);
  if (!f || f->empty()) return false;
  for (float e : *f)
    if (!(std::fabs(e - x) <= tol)) return false;
  return true;
}

ir::DType dtype_of(const ir::Value* v) {
  if (!v) return ir::DType::Undefined;
  if (v->initializer) return v->initializer->dtype;
  if (v->type.is_tensor && v->type.container.empty() && v->type.elem() != ir::DType::Undefined) return v->type.elem();
  if (v->inferred.is_tensor && v->inferred.container.empty()) return v->inferred.elem();
  return ir::DType::Undefined;
}

std::optional<std::vector<int64_t>> partial_shape(const ir::Value* v) {
  if (!v) return std::nullopt;
  if (v->initializer) return v->initializer->dims;
  const ir::TensorType* types[] = {&v->inferred, &v->type};
  std::optional<std::vector<int64_t>> best;
  for (const ir::TensorType* t : types) {
    if (!t->is_tensor || !t->container.empty() || !t->has_shape) continue;
    std::vector<int64_t> dims;
    for (const ir::Dim& d : t->dims) dims.push_back(d.known() ? d.value : -1);
    if (!best) {
      best = dims;
    } else if (best->size() == dims.size()) {
      for (size_t i = 0; i < dims.size(); ++i)
        if ((*best)[i] < 0) (*best)[i] = dims[i];
    }
  }
  return best;
}

std::optional<std::vector<int64_t>> static_shape(const ir::Value* v) {
  auto s = partial_shape(v);
  if (!s) return std::nullopt;
  for (int64_t d : *s)
    if (d < 0) return std::nullopt;
  return s;
}

bool same_attribute(const ir::Attribute& a, const ir::Attribute& b) {
  if (a.type != b.type || a.name != b.name || a.g || b.g || !a.graphs.empty() || !b.graphs.empty()) return false;
  if (a.f != b.f && !(std::isnan(a.f) && std::isnan(b.f))) return false;
  if (a.i != b.i || a.s != b.s || a.ints != b.ints || a.strings != b.strings || a.residual != b.residual) return false;
  if (a.floats.size() != b.floats.size() ||
      (!a.floats.empty() && std::memcmp(a.floats.data(), b.floats.data(), a.floats.size() * sizeof(float)) != 0))
    return false;
  auto same_tensor = [](const ir::Tensor& x, const ir::Tensor& y) {
    return x.dtype_code == y.dtype_code && x.dims == y.dims && x.strings == y.strings &&
           x.data.size() == y.data.size() &&
           (x.data.size() == 0 || std::memcmp(x.data.data(), y.data.data(), x.data.size()) == 0) && x.has_data() &&
           y.has_data();
  };
  if (static_cast<bool>(a.t) != static_cast<bool>(b.t) || (a.t && !same_tensor(*a.t, *b.t))) return false;
  if (a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i)
    if (!same_tensor(a.tensors[i], b.tensors[i])) return false;
  return true;
}

}  // namespace slmops::passes
