#include "passes/common/activations.h"

#include <algorithm>
#include <map>
#include <set>

#include "ir/dtype.h"

namespace slmops::passes {

ActivationCollector::ActivationCollector(const ir::Model& m, std::vector<std::string> names, int threads)
    : model_(m), names_(std::move(names)), session_(m, threads) {
  for (size_t k = 0; k < names_.size(); ++k)
    if (const ir::Value* v = m.graph->find_value(names_[k])) {
      index_.emplace(v, k);
      capture_opts_.extra_outputs.push_back(names_[k]);
      present_.push_back(k);
    }
}

void ActivationCollector::observe(std::vector<runtime::RValue> feeds, const Visit& fn) {
  const auto& ins = session_.inputs();
  for (size_t i = 0; i < feeds.size() && i < ins.size(); ++i) {
    auto it = index_.find(ins[i]);
    if (it != index_.end()) fn(it->second, feeds[i]);
  }
  // Once every requested value has been seen, the rest of the model need not run (layer-by-
  // layer calibration asks for one layer's input at a time).
  size_t seen = 0;
  for (size_t i = 0; i < feeds.size() && i < ins.size(); ++i) seen += index_.count(ins[i]);
  runtime::RunOptions ro;
  ro.on_node = [&](const ir::Node& n, const std::vector<runtime::RValue>& outs) {
    for (size_t k = 0; k < outs.size() && k < n.outputs.size(); ++k) {
      auto it = n.outputs[k] ? index_.find(n.outputs[k]) : index_.end();
      if (it != index_.end()) {
        fn(it->second, outs[k]);
        ++seen;
      }
    }
  };
  ro.stop = [&] { return seen >= index_.size(); };
  session_.run(std::move(feeds), ro);
}

std::vector<runtime::RValue> ActivationCollector::capture(std::vector<runtime::RValue> feeds) {
  auto outs = session_.run(std::move(feeds), capture_opts_);
  const size_t n_out = model_.graph->outputs.size();
  std::vector<runtime::RValue> result(names_.size());
  for (size_t i = 0; i < present_.size(); ++i) result[present_[i]] = std::move(outs[n_out + i]);
  return result;
}

std::vector<std::pair<std::string, double>> node_sensitivity(const ir::Model& reference, const ir::Model& changed,
                                                             const std::vector<std::string>& nodes,
                                                             const FeedSource& data, int64_t limit, int threads) {
  struct Probe {
    std::string node, out, in;
  };
  std::vector<Probe> probes;
  std::set<std::string> wanted;
  for (auto& n : reference.graph->nodes()) {
    if (std::find(nodes.begin(), nodes.end(), n->name) == nodes.end()) continue;
    if (n->outputs.empty() || !n->outputs[0]) continue;
    Probe p{n->name, n->outputs[0]->name, ""};
    if (!n->inputs.empty() && n->inputs[0] && n->inputs[0]->kind == ir::Value::Kind::NodeOutput)
      p.in = n->inputs[0]->name;
    wanted.insert(p.out);
    if (!p.in.empty()) wanted.insert(p.in);
    probes.push_back(p);
  }
  std::vector<std::string> names(wanted.begin(), wanted.end());
  // Only names that exist in both graphs can be compared.
  names.erase(std::remove_if(names.begin(), names.end(),
                             [&](const std::string& s) { return !changed.graph->find_value(s); }),
              names.end());
  ActivationCollector ref(reference, names, threads), chg(changed, names, threads);
  std::map<std::string, std::pair<double, double>> err;  // name -> (sum (q-f)^2, sum f^2)
  data.for_each_batch(limit, [&](std::vector<runtime::RValue> feeds) {
    auto a = ref.capture(feeds);
    auto b = chg.capture(std::move(feeds));
    for (size_t k = 0; k < names.size(); ++k) {
      const auto& x = a[k];
      const auto& y = b[k];
      // The changed model may compute the value in 16 bits (mixed precision).
      const ir::DType yt = y.is_tensor() ? y.tensor.dtype : ir::DType::Undefined;
      if (!x.is_tensor() || x.tensor.dtype != ir::DType::Float || x.tensor.numel() != y.tensor.numel() ||
          (yt != ir::DType::Float && yt != ir::DType::Float16 && yt != ir::DType::BFloat16))
        continue;
      const float* p = x.tensor.values<float>();
      auto changed_at = [&](uint64_t i) -> double {
        if (yt == ir::DType::Float) return y.tensor.values<float>()[i];
        const uint16_t h = y.tensor.values<uint16_t>()[i];
        return yt == ir::DType::Float16 ? ir::half_to_float(h) : ir::bfloat16_to_float(h);
      };
      double num = 0, den = 0;
      for (uint64_t i = 0; i < x.tensor.numel(); ++i) {
        double d = changed_at(i) - double(p[i]);
        num += d * d;
        den += double(p[i]) * double(p[i]);
      }
      auto& e = err[names[k]];
      e.first += num;
      e.second += den;
    }
  });
  auto nmse = [&](const std::string& s) {
    auto it = err.find(s);
    if (it == err.end() || it->second.second == 0) return 0.0;
    return it->second.first / it->second.second;
  };
  std::vector<std::pair<std::string, double>> out;
  for (auto& p : probes) out.push_back({p.node, nmse(p.out) - (p.in.empty() ? 0.0 : nmse(p.in))});
  std::stable_sort(out.begin(), out.end(), [](auto& x, auto& y) { return x.second > y.second; });
  return out;
}

}  // namespace slmops::passes
