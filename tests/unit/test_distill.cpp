// distill/: the decoding loop's log-probabilities against the executor's own logits over the
// whole sequence without a cache, left-padded batches against single runs, and soft labels.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "distill/decoder.h"
#include "distill/distill.h"
#include "formats/npz.h"
#include "formats/onnx_io.h"
#include "passes/convert/hf_decoder.h"
#include "runtime/executor.h"
#include "test_util.h"

using namespace slmops;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(SLMOPS_SOURCE_DIR) / "tests/fixtures";

// The trained byte-level Llama fixture as a decoder folder (model.onnx + tokenizer.json).
fs::path build_teacher(const test::TempDir& dir) {
  const fs::path hf = kFixtures / "hf/llama_trained";
  ir::Model m = passes::build_decoder(hf, {});
  formats::save_model(m, dir / "model.onnx");
  fs::copy_file(hf / "tokenizer.json", dir / "tokenizer.json");
  fs::copy_file(hf / "generation_config.json", dir / "generation_config.json");
  return dir.path;
}

}  // namespace

TEST_CASE("distill decoder: chosen log-probabilities equal log-softmax of the uncached logits") {
  test::TempDir dir;
  const fs::path folder = build_teacher(dir);
  distill::Decoder dec(folder, 1);
  REQUIRE(dec.tokenizer());
  const std::vector<std::string> prompts = {"Licensor shall mean the", "in Source or Object form, provided that"};
  std::vector<distill::Sequence> batch;
  for (const auto& p : prompts) {
    distill::Sequence q;
    for (int32_t id : dec.tokenizer()->encode(p)) q.prompt.push_back(id);
    q.max_new_tokens = 12;
    q.logprobs = true;
    q.top_logprobs = 4;
    batch.push_back(std::move(q));
  }
  REQUIRE(batch[0].prompt.size() != batch[1].prompt.size());  // the batch is left-padded
  dec.generate(batch, distill::Sampling{}, true);

  ir::Model m = formats::load_model(folder / "model.onnx");
  runtime::Session session(m, 1);
  for (const auto& q : batch) {
    REQUIRE(q.generated.size() == 12);
    REQUIRE(q.chosen_logprob.size() == 12);
    // The whole sequence in one run, no past: logits at the positions that chose each token.
    std::vector<int64_t> seq = q.prompt;
    seq.insert(seq.end(), q.generated.begin(), q.generated.end() - 1);
    const auto T = static_cast<int64_t>(seq.size());
    std::vector<runtime::RValue> feeds(session.inputs().size());
    for (size_t i = 0; i < feeds.size(); ++i) {
      const std::string& n = session.inputs()[i]->name;
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t k = 0; k < T; ++k) pos[static_cast<size_t>(k)] = k;
      if (n == "input_ids") feeds[i] = runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {1, T}, seq));
      if (n == "attention_mask")
        feeds[i] = runtime::RValue::of(
            ir::Tensor::from_values("", ir::DType::Int64, {1, T}, std::vector<int64_t>(static_cast<size_t>(T), 1)));
      if (n == "position_ids")
        feeds[i] = runtime::RValue::of(ir::Tensor::from_values("", ir::DType::Int64, {1, T}, pos));
      if (n.rfind("past_key_values.", 0) == 0) {
        const auto& d = session.inputs()[i]->type.dims;
        feeds[i] = runtime::RValue::of(
            ir::Tensor::from_values("", ir::DType::Float, {1, d[1].value, 0, d[3].value}, std::vector<float>{}));
      }
    }
    auto out = session.run(std::move(feeds));
    const ir::Tensor& logits = out[0].tensor;
    const int64_t V = logits.dims[2];
    const auto P = static_cast<int64_t>(q.prompt.size());
    for (size_t t = 0; t < q.generated.size(); ++t) {
      const float* row = logits.values<float>() + (P - 1 + static_cast<int64_t>(t)) * V;
      double mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max<double>(mx, row[v]);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - mx);
      const double expect = row[q.generated[t]] - mx - std::log(sum);
      CHECK(std::abs(q.chosen_logprob[t] - expect) < 1e-5);
      // Greedy: the chosen token is the first of the top list and carries its value.
      CHECK(q.top_ids[t][0] == q.generated[t]);
      CHECK(q.top_values[t][0] == doctest::Approx(q.chosen_logprob[t]).epsilon(1e-12));
      CHECK(q.top_values[t][1] <= q.top_values[t][0]);
    }
  }

  // Each sequence alone gives the same tokens as in the padded batch.
  for (const auto& q : batch) {
    std::vector<distill::Sequence> one(1);
    one[0].prompt = q.prompt;
    one[0].max_new_tokens = 12;
    dec.generate(one, distill::Sampling{}, true);
    CHECK(one[0].generated == q.generated);
  }
}

TEST_CASE("distill soft labels: softmax of the classifier's outputs at a temperature, inputs kept") {
  test::TempDir dir;
  distill::SoftLabelArgs a;
  a.model = (kFixtures / "cnn_digits.onnx").string();
  a.inputs = (kFixtures / "cnn_digits_test.npz").string();
  a.batch_size = 50;
  double entropy[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    a.temperature = k == 0 ? 1.0 : 4.0;
    a.output = (dir / fmt::format("soft{}.npz", k)).string();
    const nlohmann::json j = distill::soft_labels(a);
    const formats::NpzArchive in = formats::load_npz(a.inputs), out = formats::load_npz(a.output);
    const ir::Tensor& p = out.at("soft_labels");
    REQUIRE(p.dims.size() == 2);
    CHECK(j["samples"].get<int64_t>() == p.dims[0]);
    CHECK(p.dims[1] == 10);
    for (const auto& n : in.names) {
      if (n == "soft_labels") continue;
      REQUIRE(out.arrays.count(n));
      CHECK(out.at(n).dims == in.at(n).dims);
      CHECK(std::memcmp(out.at(n).data.data(), in.at(n).data.data(), in.at(n).nbytes()) == 0);
    }
    // Rows are distributions; at T = 1 their argmax is the label on most digits.
    const float* v = p.values<float>();
    int64_t right = 0;
    const ir::Tensor& labels = in.at("label");
    REQUIRE(labels.dtype == ir::DType::Int64);
    for (int64_t r = 0; r < p.dims[0]; ++r) {
      double s = 0;
      int64_t best = 0;
      for (int64_t c = 0; c < 10; ++c) {
        const double x = v[r * 10 + c];
        s += x;
        if (x > 0) entropy[k] -= x * std::log(x);
        if (x > v[r * 10 + best]) best = c;
      }
      CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
      right += labels.values<int64_t>()[r] == best;
    }
    if (k == 0) CHECK(right >= p.dims[0] * 95 / 100);  // the fixture's accuracy is 0.996
  }
  CHECK(entropy[1] > entropy[0]);  // a higher temperature softens the labels
}
