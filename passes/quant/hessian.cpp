#include "passes/quant/hessian.h"

#include <string>

#include "passes/common/activations.h"
#include "runtime/kernels/gemm.h"

namespace slmops::passes::quant {

std::map<ir::Node*, std::vector<double>> collect_hessians(const ir::Model& m, const std::vector<HessianTarget>& targets,
                                                          const FeedSource& calib, int64_t limit,
                                                          runtime::ThreadPool& pool, int threads, int64_t& samples,
                                                          bool diagonal_only) {
  std::map<ir::Node*, std::vector<double>> H;
  std::map<ir::Node*, int64_t> width;
  std::vector<std::string> names;
  std::map<std::string, std::vector<ir::Node*>> by_name;  // one activation may feed several targets
  for (auto& t : targets) {
    H[t.node].assign(static_cast<size_t>(diagonal_only ? t.K : t.K * t.K), 0.0);
    width[t.node] = t.K;
    const std::string& a = t.node->inputs[0]->name;
    if (!by_name.count(a)) names.push_back(a);
    by_name[a].push_back(t.node);
  }
  ActivationCollector collector(m, names, threads);
  std::vector<float> gram;
  samples = 0;
  calib.for_each_batch(limit, [&](std::vector<runtime::RValue> feeds) {
    ++samples;
    collector.observe(std::move(feeds), [&](size_t i, const runtime::RValue& v) {
      if (!v.is_tensor() || v.tensor.dtype != ir::DType::Float) return;
      const float* a = v.tensor.values<float>();
      for (ir::Node* node : by_name[names[i]]) {
        auto& h = H[node];
        const int64_t K = width[node];
        if (v.tensor.dims.empty() || v.tensor.dims.back() != K) continue;
        const int64_t rows = static_cast<int64_t>(v.tensor.numel()) / K;
        if (diagonal_only) {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < K; ++k)
              h[static_cast<size_t>(k)] += static_cast<double>(a[r * K + k]) * a[r * K + k];
          continue;
        }
        // H += A^T A: one batch's product by the executor's SGEMM (float sums over the batch's
        // rows, as the GPTQ reference keeps H), added into the double accumulator.
        gram.resize(static_cast<size_t>(K * K));
        runtime::kernels::sgemm(true, false, K, K, rows, 1.0f, a, K, a, K, 0.0f, gram.data(), K, &pool);
        pool.parallel_for(K, 16, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0 * K; i < i1 * K; ++i) h[static_cast<size_t>(i)] += gram[static_cast<size_t>(i)];
        });
      }
    });
  });
  return H;
}

}  // namespace slmops::passes::quant
