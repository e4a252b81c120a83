// The minimal cells' layer, forward and backward, for the "scan" backend
// (rnnkit/bptt/scan.py holds the autograd Function, the Python fallback and the
// runner; docs/bptt.md, "The minimal cells", derives the backward).
//
// The input projection U·x is one matrix multiply done before the call, so a layer
// arrives here as P = U·x for every step, batch-first (B, T, G·H), blocks in the
// cells' gate order (minGRU: z, h̃; minLSTM: i, f, h̃); the bias b is added here
// (K = P + b), which saves a pass over P. What is left per element is the gate
// arithmetic and the linear recurrence
//
//   h_t = a_t ⊙ h_{t−1} + b_t                    (a_t, b_t) from K_t alone
//
// and, backward, with δ_t the total ∂L/∂h_t:
//
//   δ_t = ∂L/∂Y_t + a_{t+1} ⊙ δ_{t+1}            (at a row's last step it starts from ∂L/∂h_final)
//   ∂L/∂K_t from δ_t, h_{t−1} and the gates       ∂L/∂h0 = a_0 ⊙ δ_0,  ∂L/∂b = Σ_t ∂L/∂K_t
//
// after which ∂L/∂U and ∂L/∂x are matrix multiplies over all B·T rows (Python).
// Every (row, unit) pair is an independent recurrence: the work is cut into items
// of kBlock units of one row, and each item walks its row's own length, right to
// left for a reversed direction (over the row's valid part, as torch.nn's packed
// sequences do), reading P and writing Y at a stride of one row's width. Past a
// row's length the outputs are zero. Nothing here forms a cumulative product of
// the a_t, so nothing underflows however long T is.
//
// The gates, with u = e^{−|k|} (never overflows):
//   σ(k)  = 1/(1+u) for k ≥ 0, u/(1+u) below;  σ(−k) the other one
//   minGRU:  z = σ(k_z), a = σ(−k_z) (= 1 − z), b = z·c
//   minLSTM: f' = f/(f+i) = 1/(1+R), i' = 1/(1+1/R), R = i/f = e^{m_i − m_f}(1+u_f)/(1+u_i),
//            m = min(k, 0); a = f', b = i'·c  (no 0/0 when both gates underflow)
//   c = k_h ("plain") or g(k_h) = k_h + ½ for k_h ≥ 0, σ(k_h) below ("log")

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "activations.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

using rnnkit_math::exp_fast;

__attribute__((always_inline)) inline float ex(float x) { return exp_fast(x); }
__attribute__((always_inline)) inline double ex(double x) { return std::exp(x); }

constexpr int64_t kBlock = 64;  // units per parallel block (a few vectors)

enum Kind : int64_t { kMinGRU = 0, kMinLSTM = 1 };

// σ(k) and σ(−k) from one exponential.
template <typename T>
__attribute__((always_inline)) inline void sigmoids(T k, T& pos, T& neg) {
  const T u = ex(-std::abs(k));
  const T inv = T(1) / (T(1) + u);
  pos = k >= T(0) ? inv : u * inv;
  neg = k >= T(0) ? u * inv : inv;
}

// The candidate c and its slope dc/dk ("plain": k itself; "log": g(k)). A template
// parameter, not a flag: a branch in the loop body stops gcc from vectorising it.
template <bool kLog, typename T>
__attribute__((always_inline)) inline void candidate(T k, T& c, T& slope) {
  if constexpr (!kLog) {
    c = k;
    slope = T(1);
  } else {
    T s, s_neg;
    sigmoids(k, s, s_neg);
    c = k >= T(0) ? k + T(0.5) : s;
    slope = k >= T(0) ? T(1) : s * s_neg;
  }
}

// The minLSTM's normalised gates f' = a and i', with σ(−k_f), σ(−k_i) for the backward.
template <typename T>
__attribute__((always_inline)) inline void normalised(T k_i, T k_f, T& f_n, T& i_n, T& nf,
                                                      T& ni) {
  const T u_i = ex(-std::abs(k_i)), u_f = ex(-std::abs(k_f));
  const T m_i = k_i < T(0) ? k_i : T(0), m_f = k_f < T(0) ? k_f : T(0);
  const T r = ex(m_i - m_f) * (T(1) + u_f) / (T(1) + u_i);      // i / f
  const T r_inv = ex(m_f - m_i) * (T(1) + u_i) / (T(1) + u_f);  // f / i
  f_n = T(1) / (T(1) + r);
  i_n = T(1) / (T(1) + r_inv);
  nf = k_f >= T(0) ? u_f / (T(1) + u_f) : T(1) / (T(1) + u_f);  // σ(−k_f)
  ni = k_i >= T(0) ? u_i / (T(1) + u_i) : T(1) / (T(1) + u_i);  // σ(−k_i)
}

void check(const at::Tensor& x, int64_t dim, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "rnnkit scan: ", name, " must be a CPU tensor");
  TORCH_CHECK(x.dim() == dim, "rnnkit scan: ", name, " must have ", dim, " dimensions");
  TORCH_CHECK(x.is_contiguous(), "rnnkit scan: ", name, " must be contiguous");
}

int64_t gates_of(int64_t kind) {
  TORCH_CHECK(kind == kMinGRU || kind == kMinLSTM, "rnnkit scan: unknown kind ", kind);
  return kind == kMinGRU ? 2 : 3;
}

// Each row's length: lengths[b], or T for all when none are given.
std::vector<int64_t> row_lengths(at::IntArrayRef lengths, int64_t B, int64_t T) {
  TORCH_CHECK(lengths.empty() || static_cast<int64_t>(lengths.size()) == B,
              "rnnkit scan: expected ", B, " lengths, got ", lengths.size());
  std::vector<int64_t> out(B, T);
  for (int64_t b = 0; b < static_cast<int64_t>(lengths.size()); ++b) {
    TORCH_CHECK(lengths[b] >= 1 && lengths[b] <= T, "rnnkit scan: length out of range");
    out[b] = lengths[b];
  }
  return out;
}

// Run body(row, first unit, unit count) for every item, kBlock units of one row.
template <typename F>
void over_items(int64_t B, int64_t H, int64_t T, const F& body) {
  const int64_t blocks = (H + kBlock - 1) / kBlock;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, T * kBlock));
  at::parallel_for(0, B * blocks, grain, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t first = (w % blocks) * kBlock;
      body(w / blocks, first, std::min(H, first + kBlock) - first);
    }
  });
}

// The cache lines of n values at p, asked for ahead of use. A walk towards lower
// addresses (the backward of a left-to-right direction, the forward of a reversed
// one) steps down one row's width at a time, and the hardware prefetchers of the
// project's AMD CPU do not follow such a stream: measured at B = 16, T = 4,096,
// H = 128 on one thread, the backward took 42–60 ms walking down and 21 ms walking
// up over the same data. kAhead steps ahead of the walk, these loads make both the same.
constexpr int64_t kAhead = 8;

template <typename T>
__attribute__((always_inline)) inline void prefetch(const T* p, int64_t n, bool write) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t o = 0; o < n; o += kLine) {
    if (write) {
      __builtin_prefetch(p + o, 1, 3);
    } else {
      __builtin_prefetch(p + o, 0, 3);
    }
  }
}

// One item through its row: steps 0 … L−1, or L−1 … 0 when reversed. The gate
// blocks of P are read through their own pointers (z | h̃, or i | f | h̃), and the
// unit loops carry `omp simd`: gcc vectorises the forward loops on its own but
// gives up on the backward's.
template <typename T, int64_t kKind, bool kLog>
void forward_kernel(const T* __restrict__ P, const T* __restrict__ bias,
                    const T* __restrict__ h0, T* __restrict__ Y, T* __restrict__ final,
                    const std::vector<int64_t>& len, int64_t steps, int64_t B, int64_t H,
                    bool reverse) {
  constexpr int64_t G = kKind == kMinGRU ? 2 : 3;
  over_items(B, H, steps, [&](int64_t b, int64_t first, int64_t n) {
    T h[kBlock], b0[kBlock], b1[kBlock], b2[kBlock];
    for (int64_t j = 0; j < n; ++j) {
      h[j] = h0[b * H + first + j];
      b0[j] = bias ? bias[first + j] : T(0);
      b1[j] = bias ? bias[H + first + j] : T(0);
      b2[j] = bias && G == 3 ? bias[2 * H + first + j] : T(0);
    }
    const int64_t length = len[b];
    for (int64_t s = 0; s < length; ++s) {
      const int64_t t = reverse ? length - 1 - s : s;
      const T* __restrict__ k0 = P + (b * steps + t) * G * H + first;
      const T* __restrict__ k1 = k0 + H;
      T* __restrict__ y = Y + (b * steps + t) * H + first;
      if (reverse && t >= kAhead) {  // walking down: ask for step t − kAhead's lines
        const T* ahead = P + (b * steps + t - kAhead) * G * H + first;
        for (int64_t g = 0; g < G; ++g) prefetch(ahead + g * H, n, false);
        prefetch(Y + (b * steps + t - kAhead) * H + first, n, true);
      }
      if constexpr (kKind == kMinGRU) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          T z, a, c, slope;
          sigmoids(k0[j] + b0[j], z, a);
          candidate<kLog>(k1[j] + b1[j], c, slope);
          const T v = a * h[j] + z * c;
          h[j] = v;
          y[j] = v;
        }
      } else {
        const T* __restrict__ k2 = k0 + 2 * H;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          T f_n, i_n, nf, ni, c, slope;
          normalised(k0[j] + b0[j], k1[j] + b1[j], f_n, i_n, nf, ni);
          candidate<kLog>(k2[j] + b2[j], c, slope);
          const T v = f_n * h[j] + i_n * c;
          h[j] = v;
          y[j] = v;
        }
      }
    }
    for (int64_t t = length; t < steps; ++t) std::fill_n(Y + (b * steps + t) * H + first, n, T(0));
    for (int64_t j = 0; j < n; ++j) final[b * H + first + j] = h[j];
  });
}

template <typename T, int64_t kKind, bool kLog>
void backward_kernel(const T* __restrict__ gY, const T* __restrict__ g_final,
                     const T* __restrict__ P, const T* __restrict__ bias,
                     const T* __restrict__ Y, const T* __restrict__ h0, T* __restrict__ dK,
                     T* __restrict__ dh0, T* __restrict__ db_rows,
                     const std::vector<int64_t>& len, int64_t steps, int64_t B, int64_t H,
                     bool reverse) {
  constexpr int64_t G = kKind == kMinGRU ? 2 : 3;
  over_items(B, H, steps, [&](int64_t b, int64_t first, int64_t n) {
    // carry: a_{t+1} ⊙ δ_{t+1} (the step after, in the direction's order); it starts
    // from ∂L/∂h_final at the row's last step. s0, s1, s2: this item's Σ_t ∂L/∂K_t.
    T carry[kBlock], b0[kBlock], b1[kBlock], b2[kBlock], s0[kBlock], s1[kBlock], s2[kBlock];
    for (int64_t j = 0; j < n; ++j) {
      carry[j] = g_final ? g_final[b * H + first + j] : T(0);
      b0[j] = bias ? bias[first + j] : T(0);
      b1[j] = bias ? bias[H + first + j] : T(0);
      b2[j] = bias && G == 3 ? bias[2 * H + first + j] : T(0);
      s0[j] = s1[j] = s2[j] = T(0);
    }
    const int64_t length = len[b];
    for (int64_t t = length; t < steps; ++t) {  // padding: the outputs there are constants
      T* __restrict__ d = dK + (b * steps + t) * G * H + first;
      for (int64_t g = 0; g < G; ++g) std::fill_n(d + g * H, n, T(0));
    }
    for (int64_t s = length - 1; s >= 0; --s) {
      const int64_t t = reverse ? length - 1 - s : s;
      const int64_t before = reverse ? t + 1 : t - 1;  // the step that fed h_{t}'s input
      const T* __restrict__ k0 = P + (b * steps + t) * G * H + first;
      const T* __restrict__ k1 = k0 + H;
      const T* __restrict__ gy = gY + (b * steps + t) * H + first;
      const T* __restrict__ hp = s > 0 ? Y + (b * steps + before) * H + first : h0 + b * H + first;
      T* __restrict__ d0 = dK + (b * steps + t) * G * H + first;
      T* __restrict__ d1 = d0 + H;
      if (!reverse && t > kAhead) {  // walking down: ask for step t − kAhead's lines
        const int64_t ahead = b * steps + t - kAhead;
        for (int64_t g = 0; g < G; ++g) {
          prefetch(P + ahead * G * H + g * H + first, n, false);
          prefetch(dK + ahead * G * H + g * H + first, n, true);
        }
        prefetch(gY + ahead * H + first, n, false);
        prefetch(Y + (ahead - 1) * H + first, n, false);  // h_{t−1} of that step
      }
      if constexpr (kKind == kMinGRU) {
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          T z, a, c, slope;
          sigmoids(k0[j] + b0[j], z, a);
          candidate<kLog>(k1[j] + b1[j], c, slope);
          const T delta = gy[j] + carry[j];
          const T dz = delta * (c - hp[j]) * z * a;  // ∂L/∂z · σ'(k_z)
          const T dc = delta * z * slope;            // ∂L/∂c · c'(k_h)
          d0[j] = dz;
          d1[j] = dc;
          s0[j] += dz;
          s1[j] += dc;
          carry[j] = delta * a;
        }
      } else {
        const T* __restrict__ k2 = k0 + 2 * H;
        T* __restrict__ d2 = d0 + 2 * H;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          T f_n, i_n, nf, ni, c, slope;
          normalised(k0[j] + b0[j], k1[j] + b1[j], f_n, i_n, nf, ni);
          candidate<kLog>(k2[j] + b2[j], c, slope);
          const T delta = gy[j] + carry[j];
          // h = c + f'(h_{t−1} − c), f' = σ(d), d = log σ(k_f) − log σ(k_i)
          const T dd = delta * (hp[j] - c) * f_n * i_n;
          const T di = -dd * ni;  // ∂d/∂k_i = −σ(−k_i)
          const T df = dd * nf;   // ∂d/∂k_f = σ(−k_f)
          const T dc = delta * i_n * slope;
          d0[j] = di;
          d1[j] = df;
          d2[j] = dc;
          s0[j] += di;
          s1[j] += df;
          s2[j] += dc;
          carry[j] = delta * f_n;
        }
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      dh0[b * H + first + j] = carry[j];
      T* row = db_rows + b * G * H + first;
      row[j] = s0[j];
      row[H + j] = s1[j];
      if (G == 3) row[2 * H + j] = s2[j];
    }
  });
}

// Call f.template operator()<kKind, kLog>() for the runtime kind and form.
template <typename F>
void dispatch(int64_t kind, bool log_form, const F& f) {
  if (kind == kMinGRU) {
    log_form ? f.template operator()<kMinGRU, true>() : f.template operator()<kMinGRU, false>();
  } else {
    log_form ? f.template operator()<kMinLSTM, true>() : f.template operator()<kMinLSTM, false>();
  }
}

std::tuple<at::Tensor, at::Tensor> minimal_forward(const at::Tensor& P,
                                                   const c10::optional<at::Tensor>& bias,
                                                   const at::Tensor& h0, at::IntArrayRef lengths,
                                                   int64_t kind, bool log_form, bool reverse) {
  check(P, 3, "P");
  check(h0, 2, "h0");
  const int64_t B = P.size(0), steps = P.size(1), G = gates_of(kind);
  TORCH_CHECK(P.size(2) % G == 0, "rnnkit scan: P's last dimension must be G·H");
  const int64_t H = P.size(2) / G;
  TORCH_CHECK(h0.size(0) == B && h0.size(1) == H, "rnnkit scan: h0 must be (B, H)");
  TORCH_CHECK(P.dtype() == h0.dtype(), "rnnkit scan: P and h0 must have one dtype");
  TORCH_CHECK(steps >= 1, "rnnkit scan: expected at least one step");
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) check(*bias, 1, "bias");
  const auto len = row_lengths(lengths, B, steps);
  at::Tensor Y = at::empty({B, steps, H}, P.options());
  at::Tensor final = at::empty({B, H}, P.options());
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "minimal_forward", [&] {
    dispatch(kind, log_form, [&]<int64_t kKind, bool kLog>() {
      forward_kernel<scalar_t, kKind, kLog>(
          P.data_ptr<scalar_t>(), has_bias ? bias->data_ptr<scalar_t>() : nullptr,
          h0.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(), final.data_ptr<scalar_t>(), len,
          steps, B, H, reverse);
    });
  });
  return {Y, final};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> minimal_backward(
    const at::Tensor& gY, const c10::optional<at::Tensor>& g_final, const at::Tensor& P,
    const c10::optional<at::Tensor>& bias, const at::Tensor& Y, const at::Tensor& h0,
    at::IntArrayRef lengths, int64_t kind, bool log_form, bool reverse) {
  check(gY, 3, "gY");
  check(P, 3, "P");
  check(Y, 3, "Y");
  check(h0, 2, "h0");
  const int64_t B = P.size(0), steps = P.size(1), G = gates_of(kind);
  const int64_t H = P.size(2) / G;
  TORCH_CHECK(gY.sizes() == Y.sizes() && Y.size(0) == B && Y.size(1) == steps && Y.size(2) == H,
              "rnnkit scan: gY and Y must be (B, T, H)");
  const bool has_final = g_final.has_value() && g_final->defined();
  if (has_final) check(*g_final, 2, "g_final");
  const bool has_bias = bias.has_value() && bias->defined();
  const auto len = row_lengths(lengths, B, steps);
  at::Tensor dK = at::empty_like(P);
  at::Tensor dh0 = at::empty_like(h0);
  at::Tensor db_rows = at::empty({B, G * H}, P.options());  // per row: Σ_t ∂L/∂K_t
  AT_DISPATCH_FLOATING_TYPES(P.scalar_type(), "minimal_backward", [&] {
    dispatch(kind, log_form, [&]<int64_t kKind, bool kLog>() {
      backward_kernel<scalar_t, kKind, kLog>(
          gY.data_ptr<scalar_t>(), has_final ? g_final->data_ptr<scalar_t>() : nullptr,
          P.data_ptr<scalar_t>(), has_bias ? bias->data_ptr<scalar_t>() : nullptr,
          Y.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), dK.data_ptr<scalar_t>(),
          dh0.data_ptr<scalar_t>(), db_rows.data_ptr<scalar_t>(), len, steps, B, H, reverse);
    });
  });
  return {dK, dh0, db_rows.sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_loops, m) {
  m.def("minimal_forward(Tensor P, Tensor? bias, Tensor h0, int[] lengths, int kind, bool log_form, "
        "bool reverse) -> (Tensor, Tensor)",
        &minimal_forward);
  m.def("minimal_backward(Tensor gY, Tensor? g_final, Tensor P, Tensor? bias, Tensor Y, Tensor h0, "
        "int[] lengths, int kind, bool log_form, bool reverse) -> (Tensor, Tensor, Tensor)",
        &minimal_backward);
}
