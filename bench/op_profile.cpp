// slmops_op_profile: where the slmops executor spends its time, per op type and per node.
//
//   slmops_op_profile MODEL NAME=DxD... [NAME=...] [--threads N] [--runs K] [--warmup W] [--top T] [--ftz]
//                     [--latency-only]
//
// Feeds random inputs of the given shapes (floats in [0,1), integers in [0,100), like
// `slmops evaluate --random`), runs W untimed runs, then K runs with RunOptions::on_node. The
// time of a node is the time since the previous node's callback (or the start of run), so
// it includes the executor's own per-step work (input gathering, moving outputs to slots,
// freeing dead values) next to the kernel. Prints the median session.run time, the time per
// op type (summed over nodes, median over runs), the T slowest nodes and the nodes whose
// float outputs hold denormals. Also prints the median process CPU time of a run, which on a
// busy machine is the better measure of the work done (wall time then includes waiting for a
// core). Also prints how many nodes the plan folded into constants and the session's peak
// live activation bytes (Session::peak_activation_bytes). --latency-only prints just
// {"wall_ms_p50", "cpu_ms_p50", "peak_activation_bytes", "folded_nodes"} as JSON (for
// executor_bench.sh). --ftz sets MXCSR FTZ|DAZ first (an experiment; slmops does not).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <xmmintrin.h>

#include "formats/onnx_io.h"
#include "runtime/executor.h"

using namespace slmops;
using clk = std::chrono::steady_clock;

// CPU time of the whole process (all threads), in ms: unlike wall time, it does not grow
// while the process waits for a core on a loaded machine.
static double process_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: slmops_op_profile MODEL NAME=DxD.. [--threads N] [--runs K] [--warmup W] [--top T] [--ftz] [--latency-only]\n");
    return 1;
  }
  std::string path = argv[1];
  std::map<std::string, std::vector<int64_t>> shapes;
  int threads = 1, runs = 50, warmup = 5, top = 15;
  bool ftz = false, latency_only = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::stoi(argv[++i]) : 0; };
    if (a == "--threads") threads = next();
    else if (a == "--runs") runs = next();
    else if (a == "--warmup") warmup = next();
    else if (a == "--top") top = next();
    else if (a == "--ftz") ftz = true;
    else if (a == "--latency-only") latency_only = true;
    else {
      auto eq = a.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "bad argument %s\n", a.c_str());
        return 1;
      }
      std::vector<int64_t> dims;
      std::string rest = a.substr(eq + 1);
      for (size_t p = 0; p <= rest.size();) {
        size_t x = rest.find('x', p);
        dims.push_back(std::stoll(rest.substr(p, x == std::string::npos ? std::string::npos : x - p)));
        if (x == std::string::npos) break;
        p = x + 1;
      }
      shapes[a.substr(0, eq)] = dims;
    }
  }
  if (runs < 1) runs = 1;

  // --ftz: flush denormal results to zero and treat denormal inputs as zero (MXCSR FTZ|DAZ),
  // set before the pool's threads start so that they inherit it. An experiment: the executor
  // itself does not do this.
  if (ftz) _mm_setcsr(_mm_getcsr() | 0x8040);
  ir::Model m = formats::load_model(path);
  runtime::Session session(m, threads);
  std::mt19937_64 rng(1);
  std::vector<runtime::RValue> feeds;
  for (const ir::Value* in : session.inputs()) {
    if (in->initializer) break;
    auto it = shapes.find(in->name);
    if (it == shapes.end()) {
      std::fprintf(stderr, "give the shape of input '%s' as %s=DxD..\n", in->name.c_str(), in->name.c_str());
      return 1;
    }
    ir::DType dt = in->type.elem();
    ir::Tensor t = runtime::new_tensor(dt, it->second);
    uint8_t* p = t.data.mutable_data();
    for (uint64_t k = 0; k < t.numel(); ++k) {
      if (dt == ir::DType::Float) reinterpret_cast<float*>(p)[k] = std::uniform_real_distribution<float>(0, 1)(rng);
      else if (dt == ir::DType::Int64) reinterpret_cast<int64_t*>(p)[k] = static_cast<int64_t>(rng() % 100);
      else if (dt == ir::DType::Int32) reinterpret_cast<int32_t*>(p)[k] = static_cast<int32_t>(rng() % 100);
      else {
        std::fprintf(stderr, "input '%s': only float, int64 and int32 inputs are supported\n", in->name.c_str());
        return 1;
      }
    }
    feeds.push_back(runtime::RValue::of(std::move(t)));
  }

  for (int w = 0; w < warmup; ++w) session.run(feeds);

  // Plain runs first (no callback), for the total without the profiling overhead.
  std::vector<double> plain, plain_cpu;
  for (int r = 0; r < runs; ++r) {
    const double c0 = process_cpu_ms();
    auto t0 = clk::now();
    session.run(feeds);
    plain.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
    plain_cpu.push_back(process_cpu_ms() - c0);
  }
  if (latency_only) {
    std::printf("{\"wall_ms_p50\":%.6f,\"cpu_ms_p50\":%.6f,\"runs\":%d,\"threads\":%d,"
                "\"peak_activation_bytes\":%zu,\"folded_nodes\":%zu}\n",
                median(plain), median(plain_cpu), runs, threads, session.peak_activation_bytes(),
                session.folded_nodes());
    return 0;
  }

  std::vector<const ir::Node*> order;
  std::map<const ir::Node*, std::vector<double>> per_node;
  std::vector<double> totals;
  clk::time_point last;
  runtime::RunOptions opts;
  opts.on_node = [&](const ir::Node& n, const std::vector<runtime::RValue>&) {
    auto now = clk::now();
    auto& v = per_node[&n];
    if (v.empty() && totals.empty()) order.push_back(&n);
    v.push_back(std::chrono::duration<double, std::milli>(now - last).count());
    last = clk::now();  // the callback's own cost is not charged to the next node
  };
  for (int r = 0; r < runs; ++r) {
    auto t0 = clk::now();
    last = t0;
    session.run(feeds, opts);
    totals.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
  }

  // One more run that counts denormal (subnormal) float32 outputs per node: a denormal operand
  // costs a microcode assist per instruction on x86, which can make a kernel 10x slower.
  std::vector<std::pair<const ir::Node*, std::pair<uint64_t, uint64_t>>> denormal_nodes;
  runtime::RunOptions count_opts;
  count_opts.on_node = [&](const ir::Node& n, const std::vector<runtime::RValue>& outs) {
    uint64_t sub = 0, total = 0;
    for (auto& o : outs) {
      if (!o.is_tensor() || o.tensor.dtype != ir::DType::Float) continue;
      const float* p = o.tensor.values<float>();
      for (uint64_t k = 0; k < o.tensor.numel(); ++k) sub += std::fpclassify(p[k]) == FP_SUBNORMAL;
      total += o.tensor.numel();
    }
    if (sub) denormal_nodes.push_back({&n, {sub, total}});
  };
  session.run(feeds, count_opts);

  // Per op type: sum over its nodes of each run, median over runs.
  std::map<std::string, std::vector<double>> by_type;
  std::map<std::string, int> count;
  for (const ir::Node* n : order) {
    auto& v = by_type[n->op_type];
    if (v.empty()) v.assign(runs, 0.0);
    for (int r = 0; r < runs; ++r) v[r] += per_node[n][r];
    ++count[n->op_type];
  }
  double sum_types = 0;
  std::vector<std::pair<double, std::string>> rows;
  for (auto& [t, v] : by_type) {
    double med = median(v);
    sum_types += med;
    rows.emplace_back(med, t);
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("model %s, threads %d, %d runs\n", path.c_str(), threads, runs);
  std::printf("plan: %zu nodes folded into constants; peak live activations %.3f MiB (Session::peak_activation_bytes)\n",
              session.folded_nodes(), session.peak_activation_bytes() / 1048576.0);
  std::printf("session.run p50: %.4f ms plain (process CPU time %.4f ms), %.4f ms with the per-node callback\n\n",
              median(plain), median(plain_cpu), median(totals));
  std::printf("%-22s %6s %10s %7s\n", "op type", "nodes", "ms/run", "share");
  for (auto& [ms, t] : rows) std::printf("%-22s %6d %10.4f %6.1f%%\n", t.c_str(), count[t], ms, 100 * ms / sum_types);

  std::vector<std::pair<double, const ir::Node*>> nodes;
  for (const ir::Node* n : order) nodes.emplace_back(median(per_node[n]), n);
  std::sort(nodes.begin(), nodes.end(), [](auto& a, auto& b) { return a.first > b.first; });
  std::printf("\nslowest nodes (median ms/run):\n");
  for (int i = 0; i < top && i < static_cast<int>(nodes.size()); ++i) {
    const ir::Node* n = nodes[i].second;
    std::string shapes_txt;
    for (const ir::Value* v : n->inputs) {
      if (!v) continue;
      shapes_txt += shapes_txt.empty() ? "" : ", ";
      if (v->initializer) {
        shapes_txt += "W[";
        for (size_t d = 0; d < v->initializer->dims.size(); ++d)
          shapes_txt += (d ? "x" : "") + std::to_string(v->initializer->dims[d]);
        shapes_txt += "]";
      } else {
        shapes_txt += v->name;
      }
    }
    std::printf("%10.4f  %-14s %-40s (%s)\n", nodes[i].first, n->op_type.c_str(), n->name.c_str(), shapes_txt.c_str());
  }
  std::printf("\nnodes with denormal float32 outputs%s:%s\n", ftz ? " (FTZ/DAZ on)" : "", denormal_nodes.empty() ? " none" : "");
  for (auto& [n, c] : denormal_nodes)
    std::printf("  %-14s %-40s %llu of %llu elements\n", n->op_type.c_str(), n->name.c_str(),
                static_cast<unsigned long long>(c.first), static_cast<unsigned long long>(c.second));
  return 0;
}
