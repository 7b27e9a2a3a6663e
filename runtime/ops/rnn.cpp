// Recurrent layers: RNN, GRU and LSTM (opset 7, and opset 14's `layout` attribute).
//
// One kernel serves the three cells. Per direction, the input projection X·W^T (plus the
// biases that are plain sums) is one GEMM over every time step; each step then multiplies
// the hidden state by R^T (one GEMM over the batch) and applies the cell's gate equations.
// Batch entries past their sequence length (input 'sequence_lens') keep their state and
// write zeros to Y. Arithmetic is in float; double and 16-bit inputs convert through it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <strings.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/kernels/gemm.h"
#include "runtime/ops/common.h"

namespace slmops::runtime::ops {
namespace {

// ---- activations ---------------------------------------------------------------------------

// An activation function of the `activations` attribute, with its alpha/beta bound.
struct Activation {
  enum class Kind { Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign, Softplus };
  Kind kind;
  float alpha, beta;

  float operator()(float x) const {
    switch (kind) {
      case Kind::Relu: return std::max(x, 0.0f);
      case Kind::Tanh: return std::tanh(x);
      case Kind::Sigmoid: return 1.0f / (1.0f + std::exp(-x));
      case Kind::Affine: return alpha * x + beta;
      case Kind::LeakyRelu: return x < 0 ? alpha * x : x;
      case Kind::ThresholdedRelu: return x > alpha ? x : 0.0f;
      case Kind::ScaledTanh: return alpha * std::tanh(beta * x);
      case Kind::HardSigmoid: return std::clamp(alpha * x + beta, 0.0f, 1.0f);
      case Kind::Elu: return x < 0 ? alpha * (std::exp(x) - 1) : x;
      case Kind::Softsign: return x / (1 + std::fabs(x));
      case Kind::Softplus: return std::log1p(std::exp(x));
    }
    return x;
  }
};

// How each activation is named and which of alpha/beta it takes (with their defaults, those
// of the ONNX operator of the same name).
struct ActivationSpec {
  const char* name;
  Activation::Kind kind;
  int params;  // 0: none, 1: alpha, 2: alpha and beta
  float alpha, beta;
};
constexpr ActivationSpec kActivations[] = {
    {"Relu", Activation::Kind::Relu, 0, 0, 0},
    {"Tanh", Activation::Kind::Tanh, 0, 0, 0},
    {"Sigmoid", Activation::Kind::Sigmoid, 0, 0, 0},
    {"Affine", Activation::Kind::Affine, 2, 1.0f, 0.0f},
    {"LeakyRelu", Activation::Kind::LeakyRelu, 1, 0.01f, 0},
    {"ThresholdedRelu", Activation::Kind::ThresholdedRelu, 1, 1.0f, 0},
    {"ScaledTanh", Activation::Kind::ScaledTanh, 2, 1.0f, 1.0f},
    {"HardSigmoid", Activation::Kind::HardSigmoid, 2, 0.2f, 0.5f},
    {"Elu", Activation::Kind::Elu, 1, 1.0f, 0},
    {"Softsign", Activation::Kind::Softsign, 0, 0, 0},
    {"Softplus", Activation::Kind::Softplus, 0, 0, 0},
};

// The node's activations, `per_direction` for each direction in order (forward first). The
// defaults apply when the attribute is absent; activation_alpha/activation_beta values are
// consumed in order by the functions that take them.
std::vector<Activation> read_activations(const ir::Node& n, const std::vector<std::string>& defaults, int dirs) {
  std::vector<std::string> names;
  if (const ir::Attribute* a = n.attr("activations")) names = a->strings;
  else
    for (int d = 0; d < dirs; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  if (names.size() != defaults.size() * dirs)
    bad_input("attribute 'activations' has {} entries, expected {} ({} per direction)", names.size(),
              defaults.size() * dirs, defaults.size());
  const ir::Attribute* alpha_attr = n.attr("activation_alpha");
  const ir::Attribute* beta_attr = n.attr("activation_beta");
  const std::vector<float> no_values;
  const std::vector<float>& alphas = alpha_attr ? alpha_attr->floats : no_values;
  const std::vector<float>& betas = beta_attr ? beta_attr->floats : no_values;
  size_t next_alpha = 0, next_beta = 0;

  std::vector<Activation> acts;
  for (const std::string& name : names) {
    const ActivationSpec* spec = nullptr;
    for (const ActivationSpec& s : kActivations)
      if (strcasecmp(s.name, name.c_str()) == 0) spec = &s;
    if (!spec) bad_input("attribute 'activations': unknown activation '{}'", name);
    Activation act{spec->kind, spec->alpha, spec->beta};
    if (spec->params >= 1 && next_alpha < alphas.size()) act.alpha = alphas[next_alpha++];
    if (spec->params >= 2 && next_beta < betas.size()) act.beta = betas[next_beta++];
    acts.push_back(act);
  }
  return acts;
}

// ---- the layer -----------------------------------------------------------------------------

enum class Cell { Rnn, Gru, Lstm };

// Input and output positions (ONNX's order; initial_c and P are LSTM's only).
enum Input { kX, kW, kR, kB, kSequenceLens, kInitialH, kInitialC, kPeepholes };
enum Output { kY, kYh, kYc };

// Where rows live in X, Y and the states: time-major (layout 0) or batch-major (layout 1).
struct Layout {
  bool batch_first;
  int64_t seq, batch, dirs;

  int64_t x_row(int64_t t, int64_t b) const { return batch_first ? b * seq + t : t * batch + b; }
  int64_t y_row(int64_t t, int64_t d, int64_t b) const {
    return batch_first ? (b * seq + t) * dirs + d : (t * dirs + d) * batch + b;
  }
  int64_t state_row(int64_t d, int64_t b) const { return batch_first ? b * dirs + d : d * batch + b; }
  std::vector<int64_t> y_dims(int64_t hidden) const {
    return batch_first ? std::vector<int64_t>{batch, seq, dirs, hidden} : std::vector<int64_t>{seq, dirs, batch, hidden};
  }
  std::vector<int64_t> state_dims(int64_t hidden) const {
    return batch_first ? std::vector<int64_t>{batch, dirs, hidden} : std::vector<int64_t>{dirs, batch, hidden};
  }
};

// One direction's weights, as float pointers into the converted inputs.
struct DirectionWeights {
  const float* w;   // [gates*H, input]
  const float* r;   // [gates*H, H]
  const float* wb;  // [gates*H] input bias
  const float* rb;  // [gates*H] recurrence bias
  const float* p;   // [3*H] LSTM peepholes (input, output, forget)
  const Activation* act;  // this direction's activations (f, g, h)
};

class RecurrentKernel : public Kernel {
 public:
  RecurrentKernel(const ir::Node& n, Cell cell) : cell_(cell) {
    gates_ = cell == Cell::Rnn ? 1 : cell == Cell::Gru ? 3 : 4;
    const std::string direction = n.attr_string("direction", "forward");
    if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
      bad_input("attribute 'direction' is '{}', expected forward, reverse or bidirectional", direction);
    dirs_ = direction == "bidirectional" ? 2 : 1;
    reverse_only_ = direction == "reverse";
    hidden_ = n.attr_int("hidden_size", -1);
    clip_ = n.attr("clip") ? n.attr_float("clip", 0) : std::numeric_limits<float>::infinity();
    if (!(clip_ > 0)) bad_input("attribute 'clip' is {}, expected a positive bound", clip_);
    batch_first_ = n.attr_int("layout", 0) != 0;
    linear_before_reset_ = n.attr_int("linear_before_reset", 0) != 0;
    input_forget_ = n.attr_int("input_forget", 0) != 0;
    const std::vector<std::string> defaults = cell == Cell::Rnn   ? std::vector<std::string>{"Tanh"}
                                              : cell == Cell::Gru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                                  : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    acts_ = read_activations(n, defaults, dirs_);
  }

  void run(OpContext& ctx) override {
    const Tensor& x_in = ctx.in(kX);
    if (!ir::traits(x_in.dtype).is_float) unsupported_type(x_in.dtype, "input 'X'");
    if (x_in.dims.size() != 3) bad_input("input 'X' must be 3-D, got {}", describe(x_in));
    if (hidden_ < 0 && ctx.in(kR).dims.size() != 3) bad_input("input 'R' must be 3-D, got {}", describe(ctx.in(kR)));
    const int64_t hidden = hidden_ >= 0 ? hidden_ : ctx.in(kR).dims[2];
    const int64_t gh = gates_ * hidden;
    const Layout lay{batch_first_, x_in.dims[batch_first_ ? 1 : 0], x_in.dims[batch_first_ ? 0 : 1], dirs_};
    const int64_t input = x_in.dims[2];

    const Tensor x = to_float_tensor(x_in);
    const Tensor w = float_input(ctx, kW, {dirs_, gh, input});
    const Tensor r = float_input(ctx, kR, {dirs_, gh, hidden});
    const Tensor b = float_input(ctx, kB, {dirs_, 2 * gh});
    const Tensor h0 = float_input(ctx, kInitialH, lay.state_dims(hidden));
    // RNN and GRU have no inputs at these positions: they read as zeros.
    const Tensor c0 = float_input(ctx, kInitialC, lay.state_dims(hidden));
    const Tensor p = float_input(ctx, kPeepholes, {dirs_, 3 * hidden});
    std::vector<int64_t> lengths(lay.batch, lay.seq);
    if (ctx.has_input(kSequenceLens)) lengths = to_int64s(ctx.in(kSequenceLens));
    if (static_cast<int64_t>(lengths.size()) != lay.batch)
      bad_input("input 'sequence_lens' has {} entries for a batch of {}", lengths.size(), lay.batch);
    for (int64_t len : lengths)
      if (len < 0 || len > lay.seq) bad_input("input 'sequence_lens' has {}, expected 0 to {}", len, lay.seq);

    Tensor y = new_zero_tensor(DType::Float, lay.y_dims(hidden));
    Tensor y_h = new_tensor(DType::Float, lay.state_dims(hidden));
    Tensor y_c = new_tensor(DType::Float, lay.state_dims(hidden));
    for (int64_t d = 0; d < dirs_; ++d) {
      const float* bias = b.values<float>() + d * 2 * gh;
      DirectionWeights dw{w.values<float>() + d * gh * input,
                          r.values<float>() + d * gh * hidden,
                          bias,
                          bias + gh,
                          p.values<float>() + d * 3 * hidden,
                          acts_.data() + d * (acts_.size() / dirs_)};
      run_direction(ctx, lay, d, hidden, x, dw, lengths, h0, c0, y, y_h, y_c);
    }
    const Tensor* results[] = {&y, &y_h, &y_c};
    for (size_t k = 0; k < ctx.output_count() && k < (cell_ == Cell::Lstm ? 3u : 2u); ++k)
      ctx.set_out(k, from_float_tensor(*results[k], x_in.dtype));
  }

 private:
  // Input i as float, checked against `dims`. An omitted optional input (bias, initial
  // state, peepholes) is zeros, its default.
  static Tensor float_input(const OpContext& ctx, size_t i, const std::vector<int64_t>& dims) {
    static const char* const kNames[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
    if (!ctx.has_input(i)) {
      if (i == kW || i == kR) bad_input("input '{}' is missing", kNames[i]);
      return new_zero_tensor(DType::Float, dims);
    }
    const Tensor& t = ctx.in(i);
    if (t.dims != dims) bad_input("input '{}' is {}, expected shape [{}]", kNames[i], describe(t), fmt::join(dims, ", "));
    return to_float_tensor(t);
  }

  // Runs direction d over the whole sequence, writing its part of Y, Y_h and Y_c.
  void run_direction(const OpContext& ctx, const Layout& lay, int64_t d, int64_t hidden, const Tensor& x,
                     const DirectionWeights& dw, const std::vector<int64_t>& lengths, const Tensor& h0,
                     const Tensor& c0, Tensor& y, Tensor& y_h, Tensor& y_c) const {
    const int64_t gh = gates_ * hidden, batch = lay.batch, input = x.dims[2];
    const bool backwards = reverse_only_ || d == 1;

    // Input projection of every (time, batch) row of X, with the biases that are plain sums
    // folded in: all of them except GRU's recurrence bias of the h gate under
    // linear_before_reset (it is scaled by the reset gate).
    std::vector<float> xw(lay.seq * batch * gh);
    kernels::sgemm(false, true, lay.seq * batch, gh, input, 1.0f, x.values<float>(), input, dw.w, input, 0.0f,
                   xw.data(), gh, ctx.pool);
    const int64_t folded_rb = cell_ == Cell::Gru && linear_before_reset_ ? 2 * hidden : gh;
    for (int64_t row = 0; row < lay.seq * batch; ++row) {
      float* v = xw.data() + row * gh;
      for (int64_t j = 0; j < gh; ++j) v[j] += dw.wb[j] + (j < folded_rb ? dw.rb[j] : 0.0f);
    }

    Step s(batch, hidden, gates_, dw);
    for (int64_t bi = 0; bi < batch; ++bi) {
      const int64_t src = lay.state_row(d, bi) * hidden;
      std::copy_n(h0.values<float>() + src, hidden, s.h.data() + bi * hidden);
      std::copy_n(c0.values<float>() + src, hidden, s.c.data() + bi * hidden);
    }
    for (int64_t t = 0; t < lay.seq; ++t) {
      // The rows still inside their sequence, and the time position each reads at this step.
      s.rows.clear();
      s.positions.clear();
      s.x.clear();
      for (int64_t bi = 0; bi < batch; ++bi) {
        if (t >= lengths[bi]) continue;
        const int64_t pos = backwards ? lengths[bi] - 1 - t : t;
        s.rows.push_back(bi);
        s.x.push_back(xw.data() + lay.x_row(pos, bi) * gh);
        s.positions.push_back(pos);
      }
      if (s.rows.empty()) break;
      kernels::sgemm(false, true, batch, gh, hidden, 1.0f, s.h.data(), hidden, dw.r, hidden, 0.0f, s.hr.data(), gh,
                     ctx.pool);
      switch (cell_) {
        case Cell::Rnn: rnn_step(s); break;
        case Cell::Gru: gru_step(s, ctx.pool); break;
        case Cell::Lstm: lstm_step(s); break;
      }
      for (size_t k = 0; k < s.rows.size(); ++k)
        std::copy_n(s.h.data() + s.rows[k] * hidden, hidden,
                    y.mutable_values<float>() + lay.y_row(s.positions[k], d, s.rows[k]) * hidden);
    }
    for (int64_t bi = 0; bi < batch; ++bi) {
      const int64_t dst = lay.state_row(d, bi) * hidden;
      std::copy_n(s.h.data() + bi * hidden, hidden, y_h.mutable_values<float>() + dst);
      if (cell_ == Cell::Lstm) std::copy_n(s.c.data() + bi * hidden, hidden, y_c.mutable_values<float>() + dst);
    }
  }

  // The state of one direction and the working set of its time steps.
  struct Step {
    Step(int64_t batch, int64_t hidden, int64_t gates, const DirectionWeights& dw)
        : hidden(hidden), dw(dw), hr(batch * gates * hidden), h(batch * hidden), c(batch * hidden),
          reset(batch * hidden), reset_h(batch * hidden) {}

    int64_t hidden;
    const DirectionWeights& dw;
    std::vector<int64_t> rows;       // the batch entries still inside their sequence
    std::vector<int64_t> positions;  // per such row: the time position it reads and writes
    std::vector<const float*> x;     // per such row: its input projection (gates*H)
    std::vector<float> hr;           // h · R^T, [batch, gates*H]
    std::vector<float> h;            // hidden state, [batch, H]
    std::vector<float> c;            // LSTM cell state, [batch, H]
    std::vector<float> reset;        // GRU reset gate, [batch, H]
    std::vector<float> reset_h;      // GRU rt ⊙ Ht-1, [batch, H] (stale in rows not in `rows`)
  };

  float clipped(float v) const { return std::clamp(v, -clip_, clip_); }

  // Ht = f(Xt·W^T + Ht-1·R^T + Wb + Rb)
  void rnn_step(Step& s) const {
    const int64_t H = s.hidden;
    const Activation& f = s.dw.act[0];
    for (size_t k = 0; k < s.rows.size(); ++k) {
      const float* hr = s.hr.data() + s.rows[k] * H;
      float* h = s.h.data() + s.rows[k] * H;
      for (int64_t j = 0; j < H; ++j) h[j] = f(clipped(s.x[k][j] + hr[j]));
    }
  }

  // zt = f(z projections), rt = f(r projections)
  // ht = g(Xt·Wh^T + (rt ⊙ Ht-1)·Rh^T + Rbh + Wbh)       (linear_before_reset = 0)
  // ht = g(Xt·Wh^T + rt ⊙ (Ht-1·Rh^T + Rbh) + Wbh)       (linear_before_reset = 1)
  // Ht = (1 - zt) ⊙ ht + zt ⊙ Ht-1
  void gru_step(Step& s, ThreadPool* pool) const {
    const int64_t H = s.hidden, gh = 3 * H;
    const Activation &f = s.dw.act[0], &g = s.dw.act[1];
    // Reset gate first: without linear_before_reset, (rt ⊙ Ht-1)·Rh^T is a product of its own,
    // which replaces the h part of hr.
    for (size_t k = 0; k < s.rows.size(); ++k) {
      const float* hr = s.hr.data() + s.rows[k] * gh;
      float* reset = s.reset.data() + s.rows[k] * H;
      for (int64_t j = 0; j < H; ++j) reset[j] = f(clipped(s.x[k][H + j] + hr[H + j]));
    }
    if (!linear_before_reset_) {
      for (int64_t row : s.rows)
        for (int64_t j = 0; j < H; ++j) s.reset_h[row * H + j] = s.reset[row * H + j] * s.h[row * H + j];
      kernels::sgemm(false, true, static_cast<int64_t>(s.h.size()) / H, H, H, 1.0f, s.reset_h.data(), H,
                     s.dw.r + 2 * H * H, H, 0.0f, s.hr.data() + 2 * H, gh, pool);
    }
    const float* rbh = s.dw.rb + 2 * H;
    for (size_t k = 0; k < s.rows.size(); ++k) {
      const float* x = s.x[k];
      const float* hr = s.hr.data() + s.rows[k] * gh;
      const float* reset = s.reset.data() + s.rows[k] * H;
      float* h = s.h.data() + s.rows[k] * H;
      for (int64_t j = 0; j < H; ++j) {
        const float z = f(clipped(x[j] + hr[j]));
        const float recurrent = linear_before_reset_ ? reset[j] * (hr[2 * H + j] + rbh[j]) : hr[2 * H + j];
        const float candidate = g(clipped(x[2 * H + j] + recurrent));
        h[j] = (1 - z) * candidate + z * h[j];
      }
    }
  }

  // Gates in W/R/B order i, o, f, c; peepholes P in order i, o, f.
  // it = f(.. + Pi ⊙ Ct-1), ft = f(.. + Pf ⊙ Ct-1) (1 - it with input_forget), ct = g(..)
  // Ct = ft ⊙ Ct-1 + it ⊙ ct, ot = f(.. + Po ⊙ Ct), Ht = ot ⊙ h(Ct)
  void lstm_step(Step& s) const {
    const int64_t H = s.hidden, gh = 4 * H;
    const Activation &f = s.dw.act[0], &g = s.dw.act[1], &act_h = s.dw.act[2];
    const float* p = s.dw.p;
    for (size_t k = 0; k < s.rows.size(); ++k) {
      const float* x = s.x[k];
      const float* hr = s.hr.data() + s.rows[k] * gh;
      float* h = s.h.data() + s.rows[k] * H;
      float* c = s.c.data() + s.rows[k] * H;
      for (int64_t j = 0; j < H; ++j) {
        const float in = f(clipped(x[j] + hr[j] + p[j] * c[j]));
        const float forget = input_forget_ ? 1 - in : f(clipped(x[2 * H + j] + hr[2 * H + j] + p[2 * H + j] * c[j]));
        const float candidate = g(clipped(x[3 * H + j] + hr[3 * H + j]));
        c[j] = forget * c[j] + in * candidate;
        const float out = f(clipped(x[H + j] + hr[H + j] + p[H + j] * c[j]));
        h[j] = out * act_h(c[j]);
      }
    }
  }

  Cell cell_;
  int64_t gates_, hidden_;
  int64_t dirs_;
  bool reverse_only_, batch_first_, linear_before_reset_, input_forget_;
  float clip_;
  std::vector<Activation> acts_;
};

// Opset 14 only added the `layout` attribute, which the kernel reads in any opset.
void register_cell(const char* op, Cell cell) {
  register_kernel("", op, 7, [cell](const ir::Node& n, const PlanContext&) {
    return std::make_unique<RecurrentKernel>(n, cell);
  });
}

}  // namespace

void register_rnn_ops() {
  register_cell("RNN", Cell::Rnn);
  register_cell("GRU", Cell::Gru);
  register_cell("LSTM", Cell::Lstm);
}

}  // namespace slmops::runtime::ops

namespace slmops::runtime {
void register_rnn_ops() { ops::register_rnn_ops(); }
}  // namespace slmops::runtime
