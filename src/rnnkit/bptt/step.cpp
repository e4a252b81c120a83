// One time step of a whole unidirectional stack of built-in cells, for generation
// (rnnkit/stepping.py holds the Python side, the packing and the fallback).
//
// Why this exists: a decoder steps T = 1 at a time. torch.nn's module at T = 1
// builds an RNN primitive per call, and torch.nn's cells (like rnnkit's) are a
// handful of ATen calls per layer, each a few microseconds of dispatch, more than
// the arithmetic at B = 1. Here one call runs every layer: per layer one pass over
// the packed weights (the matrix–vector products of B ≤ beam rows, written out
// below, as a GEMM at B = 1 spends most of its time getting started) and one
// pass over the gates.
//
// Packed layout (built once per generation by stepping.py, never per step). For
// layer l with input width I_l, G gates (RNN 1, LSTM 4, GRU 3), K_l = I_l + H
// rows and the G·H gate columns padded to N = a multiple of 64 (zeros), the
// transposed weights [Uᵀ; Wᵀ] (K_l, N) are cut into strips of 64 columns, each
// stored whole:
//
//   weights_l  (N / 64, K_l, 64):  strip s, row k = [Uᵀ; Wᵀ][k, 64·s … 64·s + 63]
//   bias_l     (2, G·H):           [bias_ih ; bias_hh], torch.nn's gate order
//
// and the layers one after another in one flat tensor each. A strip's products
// for a row are a few vector accumulators held in registers while its K_l rows
// stream by, contiguously (no horizontal sums, no tails). The x and h parts are
// summed apart, ax = Uᵀ-rows·x and ah = Wᵀ-rows·h, and the gates add the biases
// as torch.nn does: (U·x + b_ih) + (W·h + b_hh), and for the GRU's candidate
// n = tanh(U_n·x + b_in + r ⊙ (W_n·h + b_hn)).
//
// float32 uses the same vectorisable exp as loops.cpp (Cody-Waite reduction, the
// Cephes polynomial, a few ulp); float64 uses std::exp and std::tanh.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "activations.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

constexpr int64_t kStrip = 64;  // columns per strip; N is padded to a multiple
inline int64_t padded(int64_t n) { return (n + kStrip - 1) / kStrip * kStrip; }

// ----------------------------------------------------------------- elementwise math
// The same functions as loops.cpp, from activations.h.
using rnnkit_math::exp_fast;
using rnnkit_math::sigmoid;
using rnnkit_math::tanh_;

// ----------------------------------------------------------------- the products

// 32 bytes of T: 8 floats or 4 doubles (ymm registers with AVX2; SSE pairs without).
template <typename T>
struct Lanes {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int64_t n = 32 / sizeof(T);
};

template <typename T>
inline typename Lanes<T>::V load(const T* p) {
  typename Lanes<T>::V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, const typename Lanes<T>::V& v) {
  std::memcpy(p, &v, sizeof(v));
}

// out[r][c] = Σ_{k<K} w[k][c] · u[r][k] for the 64 columns c of one strip w (K, 64)
// and R ≤ 2 rows. NV accumulators per row: 8 keep both FMA pipes busy at R = 1,
// 2 × 4 at R = 2 leave registers for the loads on a 16-register machine.
template <typename T, int R>
void strip_product(const T* __restrict__ w, int64_t K, const T* const* u, T* const* out) {
  using V = typename Lanes<T>::V;
  constexpr int64_t L = Lanes<T>::n;
  constexpr int64_t NV = R == 1 ? 8 : 4;
  constexpr int64_t per_strip = kStrip / L;
  static_assert(per_strip % NV == 0, "a strip splits into whole blocks");
  for (int64_t o = 0; o < per_strip; o += NV) {
    V acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int64_t i = 0; i < NV; ++i) acc[r][i] = V{};
    const T* wk = w + o * L;
    for (int64_t k = 0; k < K; ++k, wk += kStrip) {
      T s[R];
      for (int r = 0; r < R; ++r) s[r] = u[r][k];
      for (int64_t i = 0; i < NV; ++i) {
        const V wv = load(wk + i * L);
        for (int r = 0; r < R; ++r) acc[r][i] += wv * s[r];
      }
    }
    for (int r = 0; r < R; ++r)
      for (int64_t i = 0; i < NV; ++i) store(out[r] + (o + i) * L, acc[r][i]);
  }
}

// ax[b] = Uᵀ-part · x_b and ah[b] = Wᵀ-part · h_b, (B, N) each, over strips [s0, s1).
template <typename T>
void products(const T* __restrict__ w, int64_t In, int64_t H, int64_t N, const T* x,
              const T* h, T* ax, T* ah, int64_t B, int64_t s0, int64_t s1) {
  const int64_t K = In + H;
  for (int64_t s = s0; s < s1; ++s) {
    const T* strip = w + s * K * kStrip;
    const int64_t c = s * kStrip;
    int64_t r = 0;
    for (; r + 2 <= B; r += 2) {
      const T* ux[2] = {x + r * In, x + (r + 1) * In};
      const T* uh[2] = {h + r * H, h + (r + 1) * H};
      T* ox[2] = {ax + r * N + c, ax + (r + 1) * N + c};
      T* oh[2] = {ah + r * N + c, ah + (r + 1) * N + c};
      strip_product<T, 2>(strip, In, ux, ox);
      strip_product<T, 2>(strip + In * kStrip, H, uh, oh);
    }
    if (r < B) {
      const T* ux[1] = {x + r * In};
      const T* uh[1] = {h + r * H};
      T* ox[1] = {ax + r * N + c};
      T* oh[1] = {ah + r * N + c};
      strip_product<T, 1>(strip, In, ux, ox);
      strip_product<T, 1>(strip + In * kStrip, H, uh, oh);
    }
  }
}

// ----------------------------------------------------------------- the gates, one row
// a(g) = (ax_g + b_ih,g) + (ah_g + b_hh,g), elementwise over the H units.

template <typename T>
void rnn_gates(const T* __restrict__ ax, const T* __restrict__ ah, const T* __restrict__ bi,
               const T* __restrict__ bh, T* __restrict__ h, int64_t H, bool relu) {
  if (relu) {
    for (int64_t j = 0; j < H; ++j) {
      const T a = (ax[j] + bi[j]) + (ah[j] + bh[j]);
      h[j] = a > T(0) ? a : T(0);
    }
  } else {
    for (int64_t j = 0; j < H; ++j) h[j] = tanh_((ax[j] + bi[j]) + (ah[j] + bh[j]));
  }
}

template <typename T>
void lstm_gates(const T* __restrict__ ax, const T* __restrict__ ah, const T* __restrict__ bi,
                const T* __restrict__ bh, const T* __restrict__ cp, T* __restrict__ c,
                T* __restrict__ h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T a_i = (ax[j] + bi[j]) + (ah[j] + bh[j]);
    const T a_f = (ax[H + j] + bi[H + j]) + (ah[H + j] + bh[H + j]);
    const T a_g = (ax[2 * H + j] + bi[2 * H + j]) + (ah[2 * H + j] + bh[2 * H + j]);
    const T a_o = (ax[3 * H + j] + bi[3 * H + j]) + (ah[3 * H + j] + bh[3 * H + j]);
    const T cn = sigmoid(a_f) * cp[j] + sigmoid(a_i) * tanh_(a_g);  // c_t
    c[j] = cn;
    h[j] = sigmoid(a_o) * tanh_(cn);  // h_t = o ⊙ tanh(c_t)
  }
}

template <typename T>
void gru_gates(const T* __restrict__ ax, const T* __restrict__ ah, const T* __restrict__ bi,
               const T* __restrict__ bh, const T* __restrict__ hp, T* __restrict__ h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = sigmoid((ax[j] + bi[j]) + (ah[j] + bh[j]));
    const T z = sigmoid((ax[H + j] + bi[H + j]) + (ah[H + j] + bh[H + j]));
    const T n = tanh_((ax[2 * H + j] + bi[2 * H + j]) + r * (ah[2 * H + j] + bh[2 * H + j]));
    h[j] = (T(1) - z) * n + z * hp[j];  // h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
  }
}

// ----------------------------------------------------------------- the stack

enum class Kind { rnn, rnn_relu, lstm, gru };

template <Kind kind>
constexpr int gates_of() {
  return kind == Kind::lstm ? 4 : (kind == Kind::gru ? 3 : 1);
}

template <typename T>
std::vector<T>& scratch(int which) {
  thread_local std::vector<T> buffers[2];
  return buffers[which];
}

// Runs every layer; h_out, c_out (L, B, H) receive the new state.
template <typename T, Kind kind>
void run_stack(const Tensor& x, const Tensor& h, const Tensor* c, const Tensor& weights,
               const Tensor& bias, Tensor& h_out, Tensor* c_out) {
  constexpr int G = gates_of<kind>();
  const int64_t L = h.size(0), B = h.size(1), H = h.size(2), I = x.size(1);
  const int64_t N = padded(G * H);
  std::vector<T>& ax = scratch<T>(0);
  std::vector<T>& ah = scratch<T>(1);
  ax.resize(B * N);
  ah.resize(B * N);
  const T* w = weights.const_data_ptr<T>();
  const T* b = bias.const_data_ptr<T>();
  const T* hp = h.const_data_ptr<T>();
  const T* cp = c ? c->const_data_ptr<T>() : nullptr;
  T* ho = h_out.data_ptr<T>();
  T* co = c_out ? c_out->data_ptr<T>() : nullptr;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t In = l == 0 ? I : H;
    const T* xin = l == 0 ? x.const_data_ptr<T>() : ho + (l - 1) * B * H;
    const T* hl = hp + l * B * H;
    // Threads split the strips only for a layer of ≥ 2^22 multiply-adds (16 MiB of
    // float32 weights at B = 1): below that one thread streams the weights as fast
    // as two here, and waking a sleeping thread pool costs more than a step.
    const int64_t strips = N / kStrip;
    const int64_t per_strip = kStrip * (In + H) * B;
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 22) / per_strip);
    at::parallel_for(0, strips, grain, [&](int64_t s0, int64_t s1) {
      products<T>(w, In, H, N, xin, hl, ax.data(), ah.data(), B, s0, s1);
    });
    const T* bi = b;
    const T* bh = b + G * H;
    for (int64_t r = 0; r < B; ++r) {
      const T* axr = ax.data() + r * N;
      const T* ahr = ah.data() + r * N;
      const int64_t o = (l * B + r) * H;
      if constexpr (kind == Kind::lstm) {
        lstm_gates<T>(axr, ahr, bi, bh, cp + o, co + o, ho + o, H);
      } else if constexpr (kind == Kind::gru) {
        gru_gates<T>(axr, ahr, bi, bh, hl + r * H, ho + o, H);
      } else {
        rnn_gates<T>(axr, ahr, bi, bh, ho + o, H, kind == Kind::rnn_relu);
      }
    }
    w += N * (In + H);
    b += 2 * G * H;
  }
}

void check(const Tensor& x, const Tensor& h, const Tensor* c, const Tensor& weights,
           const Tensor& bias, int gates) {
  for (const Tensor* t : {&x, &h, &weights, &bias}) {
    TORCH_CHECK(t->device().is_cpu() && t->is_contiguous() && t->scalar_type() == x.scalar_type(),
                "rnnkit step: tensors must be contiguous CPU tensors of one dtype");
  }
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rnnkit step: float32 or float64 only");
  TORCH_CHECK(x.dim() == 2 && h.dim() == 3 && h.size(1) == x.size(0),
              "rnnkit step: expected x (B, I) and h (L, B, H)");
  if (c) {
    TORCH_CHECK(c->sizes() == h.sizes() && c->scalar_type() == x.scalar_type(),
                "rnnkit step: expected c like h");
  }
  const int64_t L = h.size(0), H = h.size(2), I = x.size(1);
  const int64_t N = padded(gates * H);
  const int64_t need_w = N * ((I + H) + (L - 1) * (H + H));
  TORCH_CHECK(weights.numel() == need_w && bias.numel() == L * 2 * gates * H,
              "rnnkit step: packed weights or biases of the wrong size");
}

template <Kind kind>
std::tuple<Tensor, Tensor> step_hidden(const Tensor& x_in, const Tensor& h_in,
                                       const Tensor& weights, const Tensor& bias) {
  // No-ops for the contiguous tensors a decoder passes; a reordered state may not be.
  const Tensor x = x_in.contiguous(), h = h_in.contiguous();
  check(x, h, nullptr, weights, bias, gates_of<kind>());
  Tensor h_out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_step", [&] {
    run_stack<scalar_t, kind>(x, h, nullptr, weights, bias, h_out, nullptr);
  });
  return {h_out.select(0, h.size(0) - 1), h_out};
}

std::tuple<Tensor, Tensor> step_rnn(const Tensor& x, const Tensor& h, const Tensor& weights,
                                    const Tensor& bias, bool relu) {
  return relu ? step_hidden<Kind::rnn_relu>(x, h, weights, bias)
              : step_hidden<Kind::rnn>(x, h, weights, bias);
}

std::tuple<Tensor, Tensor> step_gru(const Tensor& x, const Tensor& h, const Tensor& weights,
                                    const Tensor& bias) {
  return step_hidden<Kind::gru>(x, h, weights, bias);
}

std::tuple<Tensor, Tensor, Tensor> step_lstm(const Tensor& x_in, const Tensor& h_in,
                                             const Tensor& c_in, const Tensor& weights,
                                             const Tensor& bias) {
  const Tensor x = x_in.contiguous(), h = h_in.contiguous(), c = c_in.contiguous();
  check(x, h, &c, weights, bias, 4);
  Tensor h_out = at::empty_like(h);
  Tensor c_out = at::empty_like(c);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnkit_step", [&] {
    run_stack<scalar_t, Kind::lstm>(x, h, &c, weights, bias, h_out, &c_out);
  });
  return {h_out.select(0, h.size(0) - 1), h_out, c_out};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_loops, m) {
  m.def("step_rnn(Tensor x, Tensor h, Tensor weights, Tensor bias, bool relu) -> (Tensor, Tensor)",
        &step_rnn);
  m.def("step_lstm(Tensor x, Tensor h, Tensor c, Tensor weights, Tensor bias) -> (Tensor, Tensor, Tensor)",
        &step_lstm);
  m.def("step_gru(Tensor x, Tensor h, Tensor weights, Tensor bias) -> (Tensor, Tensor)", &step_gru);
}
