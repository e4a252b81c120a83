// The time loops of the fused BPTT Functions (rnnkit/bptt/fused.py), compiled.
//
// Why this exists: the Python loops in fused.py already do the least work the
// equations allow, but each step is several small ATen calls, and at small sizes
// (B = 16, H = 128) each call costs a few microseconds of Python and dispatch,
// more than its arithmetic. Here each step is one matrix multiply on a recurrent
// matrix prepared once per loop (StepProduct, below: oneDNN's or MKL's packed GEMM)
// plus one pass over the step's elements that does all of the step's elementwise
// work at once.
//
// The buffers and their meaning are exactly those of fused.py and docs/bptt.md:
// every function takes the tensors the Python loop would use, prepared by the same
// Python code, and replaces only the loop. Time-major (T, B, ·), contiguous; the
// batch is sorted longest first and `batch_sizes` (empty when every row is full
// length) gives the rows still running at each step, as in a PackedSequence.
//
// float32 uses a vectorisable exp (Cody-Waite range reduction and the Cephes
// polynomial, max error a few ulp); float64 uses std::exp and std::tanh, so the
// float64 oracle tests hold to 1e-10 here as they do for the Python loops.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>
#include <torch/library.h>

#include "activations.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;

// ----------------------------------------------------------------- elementwise math
// exp_fast, sigmoid and tanh_ (float and double): activations.h, shared with step.cpp.
using rnnkit_math::exp_fast;
using rnnkit_math::sigmoid;
using rnnkit_math::tanh_;

// ----------------------------------------------------------------- one row of one step
// Plain functions over restrict pointers, one sequence row (H units) each, so the
// compiler vectorises them; the time loops below call them row by row.

// The forward rows read the step's pre-activations from the output row itself
// (kInPlace: the product was added to it) or as that row plus p, the product W·h_{t−1}
// in a separate buffer (oneDNN's). Two instantiations rather than one without
// __restrict__, which gcc does not vectorise.
template <typename T, bool kInPlace>
__attribute__((noinline)) void lstm_forward_row(const T* __restrict__ p, T* __restrict__ o, T* __restrict__ i, T* __restrict__ f, T* __restrict__ g,
                      const T* __restrict__ cp, T* __restrict__ c, T* __restrict__ y,
                      int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T so = sigmoid(kInPlace ? o[j] : o[j] + p[j]),
            si = sigmoid(kInPlace ? i[j] : i[j] + p[H + j]),
            sf = sigmoid(kInPlace ? f[j] : f[j] + p[2 * H + j]),
            sg = sigmoid(kInPlace ? g[j] : g[j] + p[3 * H + j]);
    o[j] = so;
    i[j] = si;
    f[j] = sf;
    g[j] = sg;
    const T cn = sf * cp[j] + si * (T(2) * sg - T(1));  // c_t = f ⊙ c_{t−1} + i ⊙ g
    const T th = tanh_(cn);
    c[j] = cn;
    y[j] = so * th;  // h_t = o ⊙ tanh(c_t)
  }
}

template <typename T>
__attribute__((noinline)) void lstm_backward_row(const T* __restrict__ d, const T* __restrict__ o, const T* __restrict__ i,
                       const T* __restrict__ f, const T* __restrict__ g, const T* __restrict__ c,
                       const T* __restrict__ cp, T* __restrict__ d_o, T* __restrict__ d_i,
                       T* __restrict__ d_f, T* __restrict__ d_g, T* __restrict__ k, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    // tanh(c_t) again rather than saved: one more exp here is cheaper than writing
    // and reading a (T, B, H) buffer.
    const T th = tanh_(c[j]);
    const T eps = k[j] + d[j] * o[j] * (T(1) - th * th);  // ∂L/∂c_t
    d_o[j] = d[j] * th * o[j] * (T(1) - o[j]);
    d_i[j] = eps * (T(2) * g[j] - T(1)) * i[j] * (T(1) - i[j]);
    d_f[j] = eps * cp[j] * f[j] * (T(1) - f[j]);
    d_g[j] = eps * i[j] * T(4) * g[j] * (T(1) - g[j]);
    k[j] = eps * f[j];  // what reaches c_{t−1}
  }
}

// The row's [a_r, a_z, ĥ] (3H): r itself (kInPlace) or r plus the product p in a
// separate buffer (oneDNN's), as for the LSTM.
template <typename T, bool kInPlace>
__attribute__((noinline)) void gru_forward_row(const T* __restrict__ p, T* __restrict__ r, T* __restrict__ z, T* __restrict__ hn,
                     T* __restrict__ n, const T* __restrict__ hp, T* __restrict__ y, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T sr = sigmoid(kInPlace ? r[j] : r[j] + p[j]), sz = sigmoid(kInPlace ? z[j] : z[j] + p[H + j]);
    const T h_hat = kInPlace ? hn[j] : hn[j] + p[2 * H + j];
    r[j] = sr;
    z[j] = sz;
    if (!kInPlace) hn[j] = h_hat;
    const T nn = tanh_(n[j] + sr * h_hat);
    n[j] = nn;
    y[j] = nn + sz * (hp[j] - nn);  // h_t = n + z ⊙ (h_{t−1} − n)
  }
}

template <typename T>
__attribute__((noinline)) void gru_backward_row(
    T* __restrict__ d, const T* __restrict__ d_next, const T* __restrict__ z_next,
    const T* __restrict__ r, const T* __restrict__ z, const T* __restrict__ hn,
    const T* __restrict__ n, const T* __restrict__ hp, T* __restrict__ q_r, T* __restrict__ q_z,
    T* __restrict__ q_n, T* __restrict__ slope, int64_t H) {
  if (d_next != nullptr) {
    for (int64_t j = 0; j < H; ++j) d[j] += z_next[j] * d_next[j];  // δ_t += z_{t+1} ⊙ δ_{t+1}
  }
  for (int64_t j = 0; j < H; ++j) {
    const T dn = d[j] * (T(1) - z[j]) * (T(1) - n[j] * n[j]);  // δ ⊙ ∂h/∂a^n
    slope[j] = dn;
    q_n[j] = dn * r[j];
    q_r[j] = dn * hn[j] * r[j] * (T(1) - r[j]);
    q_z[j] = d[j] * (hp[j] - n[j]) * z[j] * (T(1) - z[j]);
  }
}

// ----------------------------------------------------------------- the per-step product
// Every step of every loop multiplies by the same recurrent matrix: h_{t−1}·Wᵀ in the
// forward, dA_{t+1}·W in the backward, B rows at a time. at::addmm hands each of
// these to BLAS (torch's MKL), which re-packs the whole matrix (H × G·H) into its
// internal layout at every call: that copy alone was about a tenth of a training
// step. On AMD CPUs MKL also runs its generic kernels, slower than oneDNN's AVX-512
// ones for the same work (oneDNN's are what torch.nn.LSTM uses on the CPU). And
// each at::addmm on a Tensor view costs microseconds of view creation and dispatch,
// which at B = 16, H = 128 is as much as the arithmetic. StepProduct prepares the
// matrix once per loop and runs every step on raw pointers:
//
//   * "onednn" (float32, where measured faster): the matrix reordered once
//     (mkldnn::_reorder_linear_weight), each step one bare mkldnn::_linear_pointwise
//     into a buffer of its own; the forward rows add it to the addend as they read
//     both (partial), other callers add it in one pass (add).
//   * "packed" (float32, the other ones): cblas_sgemm_pack once, cblas_sgemm_compute
//     per full-batch step (steps with fewer rows, ragged batches, use at::addmm).
//   * "aten" otherwise (float64, neither library): at::addmm, as before.
//
// Both libraries are found at run time (the dispatcher's operator table; dlsym in
// the libtorch_cpu this library links), so the build needs neither header and a
// torch without them takes the last path.
//
// Which of the two float32 paths is faster depends on the CPU, so "auto" measures
// it where it runs (measured_path): at the first loop with a new (rows, K, N,
// threads), both are prepared and timed on scratch operands, interleaved, and the
// choice is kept for the process. The static rule (oneDNN above kOneDnnWork
// multiply-adds a step, the packed GEMM below; "static") is the incumbent, which the
// other path must beat by more than 5 %. The threshold was where oneDNN's per-call
// cost stopped mattering on one machine of the CI kind (docs/bptt.md); on the
// project's AVX-512 EPYC of 2026-12-07 oneDNN was 2.5× faster already at
// B = 32, H = 256 (55 against MKL's 137 µs a step), far below it.

using linear_fn = Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&,
                         std::string_view, c10::List<std::optional<c10::Scalar>>,
                         std::optional<std::string_view>);
using reorder_fn = Tensor(const Tensor&, std::optional<int64_t>);
using pack_size_fn = size_t (*)(int, int, int, int);
using pack_fn = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
using compute_fn = void (*)(int, int, int, int, int, int, const float*, int, const float*, int,
                            float, float*, int);

struct Libraries {
  std::optional<c10::TypedOperatorHandle<linear_fn>> linear;
  std::optional<c10::TypedOperatorHandle<reorder_fn>> reorder;
  pack_size_fn pack_size = nullptr;
  pack_fn pack = nullptr;
  compute_fn compute = nullptr;

  Libraries() {
    auto& dispatcher = c10::Dispatcher::singleton();
    auto product = dispatcher.findSchema({"mkldnn::_linear_pointwise", ""});
    auto order = dispatcher.findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (product.has_value() && order.has_value()) {
      linear = product->typed<linear_fn>();
      reorder = order->typed<reorder_fn>();
    }
    // libtorch_cpu is loaded already (this library links it); RTLD_NOLOAD only finds it.
    void* torch_cpu = dlopen("libtorch_cpu.so", RTLD_NOW | RTLD_NOLOAD);
    if (torch_cpu != nullptr) {
      pack_size = reinterpret_cast<pack_size_fn>(dlsym(torch_cpu, "cblas_sgemm_pack_get_size"));
      pack = reinterpret_cast<pack_fn>(dlsym(torch_cpu, "cblas_sgemm_pack"));
      compute = reinterpret_cast<compute_fn>(dlsym(torch_cpu, "cblas_sgemm_compute"));
    }
    if (pack_size == nullptr || pack == nullptr || compute == nullptr) {
      pack_size = nullptr;
      pack = nullptr;
      compute = nullptr;
    }
  }
  static const Libraries& get() {
    static const Libraries libraries;
    return libraries;
  }
  bool onednn() const { return linear.has_value() && at::globalContext().userEnabledMkldnn(); }
};

// x·wᵀ by oneDNN's bare inner product, w as mkldnn::_reorder_linear_weight left it.
Tensor onednn_product(const Tensor& x, const Tensor& packed) {
  return Libraries::get().linear->call(x, packed, std::nullopt, "none",
                                       c10::List<std::optional<c10::Scalar>>(), "");
}

// MKL's CBLAS constants (mkl_cblas.h).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;
constexpr int64_t kOneDnnWork = int64_t{1} << 25;  // the static rule: oneDNN above this M·K·N
// Preparing the matrix costs about as much as a few steps' products (a copy of it, or
// oneDNN's reorder): a loop shorter than this keeps at::addmm. A decoder calling a
// stack at T = 1 otherwise paid the preparation at every token.
constexpr int64_t kPrepareSteps = 8;
constexpr double kMargin = 0.05;  // the other path must beat the static rule's by this
constexpr int kWarmup = 3, kRounds = 5, kCallsPerRound = 4;

// Whether `challenger` beats `incumbent` by more than kMargin: both called kWarmup
// times, then kRounds interleaved rounds of kCallsPerRound calls each, medians
// compared (the measured choices of StepProduct and ChunkPlan).
bool beats(const std::function<void()>& challenger, const std::function<void()>& incumbent) {
  auto round = [](const std::function<void()>& f) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kCallsPerRound; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (int i = 0; i < kWarmup; ++i) round(challenger), round(incumbent);
  std::vector<double> a, b;
  for (int i = 0; i < kRounds; ++i) a.push_back(round(challenger)), b.push_back(round(incumbent));
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return median(a) < (1 - kMargin) * median(b);
}

// The measured choices of StepProduct, ChunkPlan and InputGrad: each is timed at the
// first call with a new key (its shape and the thread count) and kept for the process.
// One instance per choice; the lock also keeps two threads from timing at once.
template <typename Key, typename Value>
class Kept {
 public:
  Value get(const Key& key, const std::function<Value()>& measure) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto found = kept_.find(key);
    if (found == kept_.end()) found = kept_.emplace(key, measure()).first;
    return found->second;
  }

 private:
  std::mutex mutex_;
  std::map<Key, Value> kept_;
};

using ShapeKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int>;

// "auto" (measured), "static" (the threshold rule), or a path forced by name where
// it can run ("aten" always can). Tests force each path to compare them; benchmarks
// to time them.
std::string& forced_path() {
  static std::string path = "auto";
  return path;
}

class StepProduct {
 public:
  enum class Path { onednn, packed, aten };

  // w: the (K, N) right operand, any strides; rows: the most rows of a step (B);
  // steps: how many steps the loop will multiply by it (T).
  StepProduct(const Tensor& w, int64_t rows, int64_t steps) : w_(w), rows_(rows) {
    const std::string& forced = forced_path();
    const bool f32 = w.scalar_type() == at::kFloat && w.device().is_cpu();
    const bool chosen_by_rule = forced == "auto" || forced == "static";
    if (!f32 || forced == "aten" || (chosen_by_rule && steps < kPrepareSteps)) return;
    Path want = forced == "onednn" ? Path::onednn : Path::packed;
    if (forced == "static") want = static_path(w.size(0), w.size(1));
    if (forced == "auto") want = measured_path(w, rows);
    prepare(want);
  }

  Path path() const { return path_; }

  // out (m × N, contiguous) holds the addend; a (m × K, contiguous) the left factor.
  // Adds a·w to out, in place.
  template <typename scalar_t>
  void add(scalar_t* out, const scalar_t* a, int64_t m) const {
    const scalar_t* p = partial(out, a, m);
    if (p == out) return;
    at::parallel_for(0, m * w_.size(1), 32768, [&](int64_t k0, int64_t k1) {
      scalar_t* __restrict__ o = out;
      const scalar_t* __restrict__ q = p;
      for (int64_t k = k0; k < k1; ++k) o[k] += q[k];
    });
  }

  // The same product, for a caller that adds it itself: returns `out` when a·w has
  // been added to it in place (the packed GEMM, at::addmm), or else (oneDNN) a buffer
  // owned by this object until the next call that holds a·w alone, out untouched.
  // oneDNN's fused "add" post-op cost 20–40 µs a call more than the bare product on
  // the project's AVX-512 EPYC (2026-12-08, 2 threads: 77 against 57 µs at
  // 32 × 256 by 256 × 1024), more than the step's elementwise work; the forward rows
  // add the two while they read them anyway.
  template <typename scalar_t>
  const scalar_t* partial(scalar_t* out, const scalar_t* a, int64_t m) const {
    const int64_t K = w_.size(0), N = w_.size(1);
    if (m == 0) return out;
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (path_ == Path::packed && m == rows_) {
        Libraries::get().compute(kRowMajor, kNoTrans, kPacked, m, N, K, a, K,
                                 packed_.data_ptr<float>(), N, 1.0f, out, N);
        return out;
      }
      if (path_ == Path::onednn) {
        product_ = onednn_product(at::from_blob(const_cast<float*>(a), {m, K}, w_.options()),
                                  packed_);
        return product_.data_ptr<float>();
      }
    }
    const auto options = w_.options();
    at::from_blob(out, {m, N}, options)
        .addmm_(at::from_blob(const_cast<scalar_t*>(a), {m, K}, options), w_);
    return out;
  }

 private:
  StepProduct(const Tensor& w, int64_t rows, Path path) : w_(w), rows_(rows) { prepare(path); }

  Path static_path(int64_t K, int64_t N) const {
    return rows_ * K * N > kOneDnnWork ? Path::onednn : Path::packed;
  }

  // Prepare the matrix for `want`, or the next path that can run here.
  void prepare(Path want) {
    const auto& libs = Libraries::get();
    const int64_t K = w_.size(0), N = w_.size(1);
    // A (K, N) operand that is the transpose of a contiguous (N, K) matrix (the forward
    // loops pass the weight as it lies) is read as it is: a transposing copy of a
    // 1,024 × 256 matrix took 150 µs on the project's EPYC, a third of a step.
    const bool transposed = !w_.is_contiguous() && w_.t().is_contiguous();
    if (want == Path::onednn && libs.onednn()) {
      path_ = Path::onednn;
      packed_ = libs.reorder->call(w_.t().contiguous(), rows_);  // (N, K), oneDNN's layout
    } else if (want != Path::aten && libs.pack != nullptr) {
      path_ = Path::packed;
      const Tensor wc = transposed ? w_ : w_.contiguous();
      const size_t bytes = libs.pack_size(kBMatrix, rows_, N, K);
      packed_ = at::empty({static_cast<int64_t>(bytes / sizeof(float)) + 16}, w_.options());
      libs.pack(kRowMajor, kBMatrix, transposed ? kTrans : kNoTrans, rows_, N, K, 1.0f,
                wc.data_ptr<float>(), transposed ? K : N, packed_.data_ptr<float>());
    }
  }

  // The faster of oneDNN and the packed GEMM for this step's shape on this machine,
  // timed once per (rows, K, N, threads) and kept; the static rule where either
  // library is missing. The operands are constants: timing draws no random numbers,
  // so it leaves a seeded run's stream as it was.
  Path measured_path(const Tensor& w, int64_t rows) const {
    const auto& libs = Libraries::get();
    const int64_t K = w.size(0), N = w.size(1);
    const Path incumbent = static_path(K, N);
    if (!libs.onednn() || libs.pack == nullptr) return incumbent;
    static Kept<ShapeKey, Path> kept;
    return kept.get({rows, K, N, 0, at::get_num_threads()}, [&] {
      const StepProduct one(w, rows, Path::onednn), two(w, rows, Path::packed);
      const Tensor a = at::full({rows, K}, 0.01, w.options().requires_grad(false));
      Tensor out = at::zeros({rows, N}, a.options());
      auto times = [&](const StepProduct& p) {
        return [&out, &a, rows, product = &p] {
          product->add(out.data_ptr<float>(), a.data_ptr<float>(), rows);
        };
      };
      const StepProduct& incumbent_product = incumbent == Path::onednn ? one : two;
      const StepProduct& other_product = incumbent == Path::onednn ? two : one;
      const Path other = incumbent == Path::onednn ? Path::packed : Path::onednn;
      return beats(times(other_product), times(incumbent_product)) ? other : incumbent;
    });
  }

  Tensor w_;
  int64_t rows_;
  Path path_ = Path::aten;
  Tensor packed_;
  mutable Tensor product_;  // the last oneDNN product
};

// Set the path of the per-step products ("auto", "static", "onednn", "packed",
// "aten"); returns the previous setting. For tests and benchmarks.
std::string step_product(std::string_view path) {
  TORCH_CHECK(path == "auto" || path == "static" || path == "onednn" || path == "packed" ||
                  path == "aten",
              "rnnkit loops: step_product expects auto, static, onednn, packed or aten, got ",
              path);
  std::string previous = forced_path();
  forced_path() = std::string(path);
  return previous;
}

// The path StepProduct takes for this right operand (K, N) and row count, in a loop
// long enough to prepare the matrix ("auto": measured, if not yet, and kept).
std::string step_product_path(const Tensor& w, int64_t rows) {
  switch (StepProduct(w, rows, kPrepareSteps).path()) {  // a loop long enough to prepare
    case StepProduct::Path::onednn: return "onednn";
    case StepProduct::Path::packed: return "packed";
    default: return "aten";
  }
}

// ----------------------------------------------------------------- helpers

int64_t rows_at(at::IntArrayRef batch_sizes, int64_t t, int64_t B) {
  return batch_sizes.empty() ? B : batch_sizes[t];
}

void check_buffer(const Tensor& x, const char* name, int64_t dim) {
  TORCH_CHECK(x.device().is_cpu(), "rnnkit loops: ", name, " must be on the CPU");
  TORCH_CHECK(x.dim() == dim, "rnnkit loops: ", name, " must have ", dim, " dimensions");
  TORCH_CHECK(x.is_contiguous(), "rnnkit loops: ", name, " must be contiguous");
}

void check_sizes(at::IntArrayRef batch_sizes, int64_t T) {
  TORCH_CHECK(batch_sizes.empty() || static_cast<int64_t>(batch_sizes.size()) == T,
              "rnnkit loops: expected ", T, " batch sizes, got ", batch_sizes.size());
}

// Run body(first_row, last_row) over rows [0, b), in parallel only when the step
// has enough elements to pay for it (same grain as ATen's elementwise kernels).
template <typename F>
void over_rows(int64_t b, int64_t row_width, const F& body) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_width));
  at::parallel_for(0, b, grain, body);
}

// The backward loops keep ∂L/∂(pre-activations) of only the last K steps, in two
// ring buffers that alternate between consecutive chunks of K steps (step t + 1,
// needed by step t, may sit in the other one). When a chunk is done, its terms of
// ∂L/∂x, ∂L/∂U, ∂L/∂W and ∂L/∂b are added with a few matrix multiplies over its
// K·B rows. Compared with one (T, B, G·H) buffer and one multiply after the loop,
// this touches K/T of the memory (no page faults for a fresh buffer, which cost
// as much as the arithmetic here) and the multiplies read rows that are still in
// cache. K·B·width is about 2^18 elements (1 MiB in float32) in the usual chunk.
//
// The chunks' weight gradients (∂L/∂W += Dᵀ·h, ∂L/∂U += Dᵀ·x, a sum over the chunk's
// rows) go to at::addmm_ (MKL) or to oneDNN's inner-product backward for weights (on
// copies of both operands in its own tensors). oneDNN pays only on long sums: on the
// project's AVX-512 EPYC (2026-12-07, 2 threads) a 1024 × 256 gradient over 256 rows
// took 754 µs through MKL and 889 through oneDNN, over 1,024 rows 3,197 and 1,671. So
// the plan of a backward is measured: chunks of at least kGradRows rows with oneDNN,
// timed against MKL on that chunk's shape at the first backward of each (B, width, H,
// threads), or, where MKL wins or either is missing, the usual chunks with MKL.
constexpr int64_t kGradRows = 1024;

// "auto" (measured), "onednn" (long chunks with oneDNN wherever it runs), "aten": for
// tests (oneDNN's path at small chunks too) and benchmarks.
std::string& weight_grad_forced() {
  static std::string path = "auto";
  return path;
}

// Set one of the backward's library choices (`forced`: weight_grad_forced() or
// input_grad_forced()) to auto, onednn or aten; returns the previous setting.
std::string force_grad_path(std::string& forced, std::string_view path, const char* name) {
  TORCH_CHECK(path == "auto" || path == "onednn" || path == "aten", "rnnkit loops: ", name,
              " expects auto, onednn or aten, got ", path);
  std::string previous = forced;
  forced = std::string(path);
  return previous;
}

std::string weight_grad_path(std::string_view path) {
  return force_grad_path(weight_grad_forced(), path, "weight_grad_path");
}

bool onednn_grads_available(const at::TensorOptions& options) {
  return options.dtype() == at::kFloat && options.device().is_cpu() && at::hasMKLDNN() &&
         Libraries::get().onednn();
}

// A chunk's ∂L/∂(pre-activations) D, the left factor of its weight gradients. oneDNN
// reads a copy in its own tensor, made at the first use and shared: an RNN's or
// LSTM's D feeds both ∂L/∂W and ∂L/∂U, and it is the widest operand (G·H columns).
class GradRows {
 public:
  explicit GradRows(Tensor dense) : dense_(std::move(dense)) {}
  const Tensor& dense() const { return dense_; }
  const Tensor& onednn() const {
    if (!copy_.defined()) copy_ = dense_.contiguous().to_mkldnn();
    return copy_;
  }

 private:
  Tensor dense_;
  mutable Tensor copy_;
};

// dst += Dᵀ·X (D: (rows, M), X: (rows, K), dst: (M, K), any view).
void add_weight_grad(Tensor dst, const GradRows& D, const Tensor& X, bool onednn) {
  if (!onednn) {
    dst.addmm_(D.dense().t(), X);
    return;
  }
  const Tensor shape = at::empty({D.dense().size(1), X.size(1)},
                                 D.dense().options().layout(c10::kMkldnn));
  const auto grads = at::mkldnn_linear_backward_weights(D.onednn(), X.contiguous().to_mkldnn(),
                                                        shape, false);
  dst.add_(std::get<0>(grads).to_dense());
}

// How a backward cuts its steps into chunks, and which library sums their weight gradients.
struct ChunkPlan {
  int64_t steps;
  bool onednn;
};

// The usual chunk: about 2^18 elements of ∂L/∂(pre-activations) (1 MiB in float32).
int64_t usual_steps(int64_t T, int64_t B, int64_t width) {
  return std::min<int64_t>(T, std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, B * width)));
}

// chunk > 0 forces the steps per chunk (tests use small chunks to cover the chunk
// boundaries); the library is then oneDNN only where forced.
// `size_width`: the elements per row of what the chunks hold (sizes the usual chunk);
// `width`: the gradient's rows (G·H), `H` its columns, for the measurement.
ChunkPlan plan_chunks(int64_t T, int64_t B, int64_t size_width, int64_t width, int64_t H,
                      const at::TensorOptions& options, int64_t chunk) {
  const std::string& forced = weight_grad_forced();
  const bool available = onednn_grads_available(options);
  if (chunk > 0) return {std::min<int64_t>(T, chunk), available && forced == "onednn"};
  const int64_t usual = usual_steps(T, B, size_width);
  const int64_t longer = std::min<int64_t>(T, std::max<int64_t>(usual, (kGradRows + B - 1) / B));
  if (!available || forced == "aten") return {usual, false};
  if (forced == "onednn") return {longer, true};
  if (longer * B < kGradRows / 2) return {usual, false};  // too short a sum to pay
  static Kept<ShapeKey, bool> kept;
  const bool faster = kept.get({B, width, H, longer, at::get_num_threads()}, [&] {
    const auto scratch = options.requires_grad(false);
    const Tensor D = at::full({longer * B, width}, 0.01, scratch);
    const Tensor X = at::full({longer * B, H}, 0.01, scratch);
    Tensor dst = at::zeros({width, H}, scratch);
    // A fresh GradRows per call: each one pays for its copy of D.
    return beats([&] { add_weight_grad(dst, GradRows(D), X, true); },
                 [&] { add_weight_grad(dst, GradRows(D), X, false); });
  });
  return faster ? ChunkPlan{longer, true} : ChunkPlan{usual, false};
}

struct Chunks {
  int64_t T, B, K;
  bool onednn;  // the weight gradients' library (ChunkPlan)
  Tensor ring[2];  // (K, B, width) each

  Chunks(int64_t T_, int64_t B_, int64_t width, const at::TensorOptions& options,
         const ChunkPlan& plan)
      : T(T_), B(B_), K(plan.steps), onednn(plan.onednn) {
    ring[0] = at::empty({K, B, width}, options);
    ring[1] = at::empty({K, B, width}, options);
  }
  int64_t index(int64_t t) const { return (T - 1 - t) / K; }
  int64_t first(int64_t t) const { return std::max<int64_t>(0, T - (index(t) + 1) * K); }
  int64_t length(int64_t t) const { return T - index(t) * K - first(t); }
  // This step's (B, width) slot, as a tensor and as a pointer (no view: per step).
  Tensor at(int64_t t) const { return ring[index(t) % 2][t - first(t)]; }
  template <typename scalar_t>
  scalar_t* ptr(int64_t t) const {
    return ring[index(t) % 2].data_ptr<scalar_t>() + (t - first(t)) * B * ring[0].size(2);
  }
  // The rows of the chunk that ends (going backwards) at step t: (n·B, width).
  Tensor rows(int64_t t) const {
    const int64_t n = length(t);
    return ring[index(t) % 2].narrow(0, 0, n).view({n * B, ring[0].size(2)});
  }
};

// ∂L/∂W += Σ_t D_tᵀ·h_{t−1} over the chunk [t0, t0 + n): h_{−1} = h0, h_t = Y[t]. The
// first chunk's h rows are [h0; Y[0 : n − 1]], copied together (H columns), so that
// its D is read whole, as ∂L/∂U reads it.
void add_recurrent_term(Tensor& dW, const GradRows& D, const Tensor& Y, const Tensor& h0,
                        int64_t t0, int64_t n, int64_t B, bool onednn) {
  const int64_t H = Y.size(2);
  if (t0 > 0) {
    add_weight_grad(dW, D, Y.narrow(0, t0 - 1, n).view({n * B, H}), onednn);
    return;
  }
  const Tensor h = n == 1 ? h0 : at::cat({h0, Y.narrow(0, 0, n - 1).view({(n - 1) * B, H})});
  add_weight_grad(dW, D, h, onednn);
}

// The chunks' input gradients ∂L/∂x = D·U (D: a chunk's (rows, width), U: a block of
// the input weight's rows, (width, I)). at::mm is MKL, which on the project's AVX-512
// EPYC (2026-12-08, 2 threads) ran 1,600 × 1,024 by 1,024 × 256 in 5.0 ms where
// oneDNN's inner product, on Uᵀ reordered once per backward, took 2.2 ms (2.3× over
// 256 to 3,200 rows, I from 64 to 256). Which is faster depends on the CPU, so it is
// measured at the first backward of each (rows, width, I, D's row stride, threads),
// MKL the incumbent; "onednn" or "aten" forces one (tests, benchmarks).
std::string& input_grad_forced() {
  static std::string path = "auto";
  return path;
}

std::string input_grad_path(std::string_view path) {
  return force_grad_path(input_grad_forced(), path, "input_grad_path");
}

class InputGrad {
 public:
  // U: (width, I), any strides; rows: the longest chunk's rows; stride: D's row stride
  // (a GRU's reset and update columns are read in place from a wider chunk).
  InputGrad(const Tensor& U, int64_t rows, int64_t stride, bool needed) : U_(U) {
    if (!needed || !onednn_grads_available(U.options())) return;
    const std::string& forced = input_grad_forced();
    if (forced == "aten" || (forced == "auto" && !measured_onednn(rows, stride))) return;
    weight_ = Libraries::get().reorder->call(U.t().contiguous(), rows);  // (I, width)
  }

  // out (rows, I, contiguous) = D·U, or += D·U where `accumulate`.
  void run(Tensor out, const Tensor& D, bool accumulate) const {
    if (!weight_.defined()) {
      accumulate ? void(out.addmm_(D, U_)) : void(at::mm_out(out, D, U_));
      return;
    }
    const Tensor product = onednn_product(D, weight_);
    accumulate ? void(out.add_(product)) : void(out.copy_(product));
  }

 private:
  InputGrad(const Tensor& U, int64_t rows, bool onednn) : U_(U) {
    if (onednn) weight_ = Libraries::get().reorder->call(U.t().contiguous(), rows);
  }

  bool measured_onednn(int64_t rows, int64_t stride) const {
    const int64_t width = U_.size(0), I = U_.size(1);
    static Kept<ShapeKey, bool> kept;
    return kept.get({rows, width, I, stride, at::get_num_threads()}, [&] {
      const auto scratch = U_.options().requires_grad(false);
      const Tensor D = at::full({rows, stride}, 0.01, scratch).narrow(1, 0, width);
      const Tensor U = at::full({width, I}, 0.01, scratch);
      Tensor out = at::empty({rows, I}, scratch);
      const InputGrad one(U, rows, true), two(U, rows, false);
      return beats([&] { one.run(out, D, false); }, [&] { two.run(out, D, false); });
    });
  }

  Tensor U_;
  Tensor weight_;  // Uᵀ in oneDNN's layout, where oneDNN runs the product
};

// ∂L/∂x[t0 : t0 + n] = D·U, ∂L/∂U += Dᵀ·x, ∂L/∂b += Σ D, for the columns [c0, c0 + width)
// of the gate blocks (U's rows); `times_U` holds those rows of U.
void add_input_terms(Tensor& dx, Tensor& dU, Tensor& db, const GradRows& rows,
                     const Tensor& x, const InputGrad& times_U, int64_t t0, int64_t n, int64_t B,
                     int64_t c0, bool first_part, bool onednn) {
  const Tensor& D = rows.dense();
  const int64_t I = x.size(2), width = D.size(1);
  if (dx.defined()) times_U.run(dx.narrow(0, t0, n).view({n * B, I}), D, !first_part);
  if (dU.defined()) {
    add_weight_grad(dU.narrow(0, c0, width), rows, x.narrow(0, t0, n).view({n * B, I}), onednn);
  }
  if (db.defined()) db.narrow(0, c0, width).add_(D.sum(0));
}

// δ_t for rows [0, b): G_t (+ ∂L/∂h_final at the last step) + D_{t+1}·W, with `next`
// = D_{t+1} (B rows, contiguous). G_t is copied into `delta` first; the product then
// adds to it, and the pointer returned is `delta`. G may have any strides (an expanded or
// transposed ∂L/∂Y is read in place); rows [b, B) of `delta` are zeroed, so a later,
// larger step never reads stale rows.
template <typename scalar_t>
const scalar_t* seed_delta(Tensor& delta, const Tensor& G, const std::optional<Tensor>& grad_h,
                           const scalar_t* next, const StepProduct& times_W, int64_t t,
                           int64_t b) {
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2);
  scalar_t* d = delta.data_ptr<scalar_t>();
  if (b < B) std::fill(d + b * H, d + B * H, scalar_t(0));
  if (b == 0) return d;
  if (G.stride(2) == 1) {  // rows of G_t copied as they lie, no tensor views per step
    const scalar_t* g = G.data_ptr<scalar_t>() + t * G.stride(0);
    for (int64_t r = 0; r < b; ++r) std::memcpy(d + r * H, g + r * G.stride(1), H * sizeof(scalar_t));
  } else {
    delta.narrow(0, 0, b).copy_(G[t].narrow(0, 0, b));
  }
  if (t == T - 1) {
    if (grad_h.has_value() && grad_h->defined()) delta.narrow(0, 0, b).add_(grad_h->narrow(0, 0, b));
    return d;
  }
  times_W.add(d, next, b);
  return d;
}

// ∂L/∂h0 = D_0·W (D_0: step 0's (B, width) slot), where asked for: the per-step
// products' own prepared matrix (oneDNN's or the packed GEMM), not at::mm (MKL's
// generic kernels, twice as slow at B = 128, H = 256 on the project's EPYC).
Tensor initial_grad(bool needed, const Tensor& D0, const StepProduct& times_W, int64_t H) {
  if (!needed) return Tensor();
  const int64_t B = D0.size(0);
  Tensor dh0 = at::zeros({B, H}, D0.options());
  AT_DISPATCH_FLOATING_TYPES(D0.scalar_type(), "initial_grad", [&] {
    times_W.add(dh0.data_ptr<scalar_t>(), D0.data_ptr<scalar_t>(), B);
  });
  return dh0;
}

Tensor zeros_if(bool needed, at::IntArrayRef sizes, const at::TensorOptions& options) {
  return needed ? at::zeros(sizes, options) : Tensor();
}

// ----------------------------------------------------------------- Elman RNN

// Y holds U·x_t + b for every step; step t adds W·h_{t−1} and applies f, in place.
// Rows past their sequence's end are set to 0 (the outputs there are zeros).
Tensor rnn_forward(Tensor Y, const Tensor& h0_, const Tensor& w_t, at::IntArrayRef batch_sizes,
                   bool relu) {
  at::AutoDispatchBelowADInplaceOrView guard;
  check_buffer(Y, "Y", 3);
  const Tensor h0 = h0_.contiguous();
  const int64_t T = Y.size(0), B = Y.size(1), H = Y.size(2);
  check_sizes(batch_sizes, T);
  const StepProduct times_W(w_t, B, T);
  AT_DISPATCH_FLOATING_TYPES(Y.scalar_type(), "rnn_forward", [&] {
    scalar_t* Yp = Y.data_ptr<scalar_t>();
    const scalar_t* h0p = h0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      scalar_t* y = Yp + t * B * H;
      if (b < B) std::fill(y + b * H, y + B * H, scalar_t(0));
      if (b == 0) continue;
      const scalar_t* hp = t == 0 ? h0p : Yp + (t - 1) * B * H;
      const scalar_t* a = times_W.partial(y, hp, b);  // a_t, or W·h_{t−1} alone
      over_rows(b, H, [&](int64_t r0, int64_t r1) {
        // a is y itself or the product's buffer; each pass sees one of them only.
        scalar_t* __restrict__ v = y + r0 * H;
        const scalar_t* __restrict__ u = a == y ? v : a + r0 * H;
        const int64_t n = (r1 - r0) * H;
        if (a == y) {
          if (relu) {
            for (int64_t k = 0; k < n; ++k) v[k] = v[k] > scalar_t(0) ? v[k] : scalar_t(0);
          } else {
            for (int64_t k = 0; k < n; ++k) v[k] = tanh_(v[k]);
          }
        } else if (relu) {  // a_t = (U·x_t + b) + W·h_{t−1}
          for (int64_t k = 0; k < n; ++k) {
            const scalar_t s = v[k] + u[k];
            v[k] = s > scalar_t(0) ? s : scalar_t(0);
          }
        } else {
          for (int64_t k = 0; k < n; ++k) v[k] = tanh_(v[k] + u[k]);
        }
      });
    }
  });
  return Y;
}

// δ_T−1 = G_T−1 (+ ∂L/∂h_final), δ_t = G_t + dA_{t+1}·W; dA_t = δ_t ⊙ f'(a_t), with
// f' read from the outputs (1 − h² for tanh, [h > 0] for ReLU). G (∂L/∂Y, padding
// zeroed) is only read. needs = (x, U, W, b, h0). Returns (∂L/∂x, ∂L/∂U, ∂L/∂W, ∂L/∂b,
// ∂L/∂h0); the ones not needed are undefined (None in Python).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& G_, const std::optional<Tensor>& grad_h, const Tensor& Y, const Tensor& x_,
    const Tensor& h0_, const Tensor& w_ih, const Tensor& w_hh, at::IntArrayRef batch_sizes,
    bool relu, at::IntArrayRef needs, int64_t chunk) {
  at::AutoDispatchBelowADInplaceOrView guard;
  check_buffer(Y, "Y", 3);
  const Tensor& G = G_;
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous();
  const int64_t T = Y.size(0), B = Y.size(1), H = Y.size(2), I = x.size(2);
  check_sizes(batch_sizes, T);
  const auto options = Y.options();
  TORCH_CHECK(needs.size() == 5, "rnnkit loops: needs is (x, U, W, b, h0)");
  Tensor dx = needs[0] ? at::empty({T, B, I}, options) : Tensor();
  Tensor dU = zeros_if(needs[1], {H, I}, options), dW = zeros_if(needs[2], {H, H}, options);
  Tensor db = zeros_if(needs[3], {H}, options);
  Chunks chunks(T, B, H, options, plan_chunks(T, B, H, H, H, options, chunk));
  Tensor delta = at::empty({B, H}, options);
  const StepProduct times_W(w_hh, B, T);
  const InputGrad times_U(w_ih, chunks.K * B, H, dx.defined());
  AT_DISPATCH_FLOATING_TYPES(Y.scalar_type(), "rnn_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      scalar_t* da = chunks.ptr<scalar_t>(t);  // (B, H), becomes dA_t
      if (b < B) std::fill(da + b * H, da + B * H, scalar_t(0));
      const scalar_t* next = t < T - 1 ? chunks.ptr<scalar_t>(t + 1) : nullptr;
      const scalar_t* dv_ = seed_delta(delta, G, grad_h, next, times_W, t, b);
      if (b > 0) {
        const scalar_t* __restrict__ dv = dv_;
        const scalar_t* __restrict__ y = Y.data_ptr<scalar_t>() + t * B * H;
        over_rows(b, H, [&](int64_t r0, int64_t r1) {
          for (int64_t k = r0 * H; k < r1 * H; ++k) {
            const scalar_t slope = relu ? scalar_t(y[k] > scalar_t(0)) : scalar_t(1) - y[k] * y[k];
            da[k] = dv[k] * slope;
          }
        });
      }
      if (t == chunks.first(t)) {
        const Tensor D = chunks.rows(t);
        const int64_t n = chunks.length(t);
        const GradRows rows(D);
        if (dW.defined()) add_recurrent_term(dW, rows, Y, h0, t, n, B, chunks.onednn);
        add_input_terms(dx, dU, db, rows, x, times_U, t, n, B, 0, true, chunks.onednn);
      }
    }
  });
  return {dx, dU, dW, db, initial_grad(needs[4], chunks.at(0), times_W, H)};
}

// ----------------------------------------------------------------- LSTM

// A holds [U_o·x+b_o, U_i·x+b_i, U_f·x+b_f, 2(U_g·x+b_g)] for every step (the internal
// gate order of fused.py, g rows doubled); step t adds W·h_{t−1} (W's g rows doubled
// too, in w_t) and replaces the pre-activations with [o, i, f, ĝ], ĝ = σ(2·a_g), so
// g = 2ĝ − 1 = tanh(a_g). Returns (C, Y): c_t and h_t, zero past the end.
std::tuple<Tensor, Tensor> lstm_forward(Tensor A, const Tensor& h0_, const Tensor& c0_,
                                                const Tensor& w_t, at::IntArrayRef batch_sizes) {
  at::AutoDispatchBelowADInplaceOrView guard;
  check_buffer(A, "A", 3);
  const Tensor h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const int64_t T = A.size(0), B = A.size(1), H = A.size(2) / 4;
  check_sizes(batch_sizes, T);
  const bool full = batch_sizes.empty();
  const auto options = A.options();
  Tensor C = full ? at::empty({T, B, H}, options) : at::zeros({T, B, H}, options);
  Tensor Y = full ? at::empty({T, B, H}, options) : at::zeros({T, B, H}, options);
  const StepProduct times_W(w_t, B, T);
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "lstm_forward", [&] {
    scalar_t* Ap = A.data_ptr<scalar_t>();
    scalar_t* Cp = C.data_ptr<scalar_t>();
    scalar_t* Yp = Y.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      if (b == 0) continue;
      scalar_t* a = Ap + t * B * 4 * H;
      const scalar_t* hp = t == 0 ? h0.data_ptr<scalar_t>() : Yp + (t - 1) * B * H;
      const scalar_t* pre = times_W.partial(a, hp, b);  // U·x_t + b + W·h_{t−1}, or W·h_{t−1}
      const scalar_t* cprev = t == 0 ? c0.data_ptr<scalar_t>() : Cp + (t - 1) * B * H;
      scalar_t* c = Cp + t * B * H;
      scalar_t* y = Yp + t * B * H;
      over_rows(b, 4 * H, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          scalar_t* o = a + r * 4 * H;
          if (pre == a) {
            lstm_forward_row<scalar_t, true>(o, o, o + H, o + 2 * H, o + 3 * H, cprev + r * H,
                                             c + r * H, y + r * H, H);
          } else {
            lstm_forward_row<scalar_t, false>(pre + r * 4 * H, o, o + H, o + 2 * H, o + 3 * H,
                                              cprev + r * H, c + r * H, y + r * H, H);
          }
        }
      });
    }
  });
  return {C, Y};
}

// G is ∂L/∂h_t from the outputs (ragged batches: padding zeroed and ∂L/∂h_final
// folded in, grad_h None), only read. Per step: δ_t = G_t + dA_{t+1}·W, then in one pass
//   ε_t  = carry + δ_t ⊙ o ⊙ (1 − tanh²c_t)           (∂L/∂c_t)
//   dA_t = [δ_t ⊙ tanh c_t ⊙ o(1 − o), ε_t ⊙ g ⊙ i(1 − i),
//           ε_t ⊙ c_{t−1} ⊙ f(1 − f), ε_t ⊙ i ⊙ 4ĝ(1 − ĝ)]
//   carry = ε_t ⊙ f_t                                    (what reaches c_{t−1})
// ∂L/∂c_final enters a row's carry at its last step. u and w are U and W in the
// internal gate order (g rows not doubled). needs = (x, U, W, b, h0). Returns
// (∂L/∂x, ∂L/∂U, ∂L/∂W, ∂L/∂b, ∂L/∂h0, ∂L/∂c0), gradients of U, W, b in the internal
// order; the ones not needed are undefined.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& G, const std::optional<Tensor>& grad_h, const Tensor& A, const Tensor& C,
    const Tensor& Y, const Tensor& x_, const Tensor& h0_, const Tensor& c0_, const Tensor& u,
    const Tensor& w, const std::optional<Tensor>& grad_c_, at::IntArrayRef batch_sizes,
    at::IntArrayRef needs, int64_t chunk) {
  at::AutoDispatchBelowADInplaceOrView guard;
  TORCH_CHECK(G.dim() == 3, "rnnkit loops: G must have 3 dimensions");
  for (const auto& [t, name] : {std::pair<const Tensor&, const char*>{A, "A"}, {C, "C"},
                                {Y, "Y"}}) {
    check_buffer(t, name, 3);
  }
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous(), c0 = c0_.contiguous();
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2), I = x.size(2);
  check_sizes(batch_sizes, T);
  const bool full = batch_sizes.empty();
  const auto options = G.options();
  TORCH_CHECK(needs.size() == 5, "rnnkit loops: needs is (x, U, W, b, h0)");
  Tensor dx = needs[0] ? at::empty({T, B, I}, options) : Tensor();
  Tensor dU = zeros_if(needs[1], {4 * H, I}, options), dW = zeros_if(needs[2], {4 * H, H}, options);
  Tensor db = zeros_if(needs[3], {4 * H}, options);
  Chunks chunks(T, B, 4 * H, options, plan_chunks(T, B, 4 * H, 4 * H, H, options, chunk));
  const InputGrad times_U(u, chunks.K * B, 4 * H, dx.defined());
  Tensor carry = at::zeros({B, H}, options);
  Tensor delta = at::empty({B, H}, options);
  const bool has_grad_c = grad_c_.has_value() && grad_c_->defined();
  const Tensor grad_c = has_grad_c ? grad_c_->contiguous() : Tensor();
  if (has_grad_c && full) carry.copy_(grad_c);
  int64_t joined = 0;  // rows whose backward pass has started (a prefix of the sorted batch)
  const StepProduct times_W(w, B, T);
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      if (!full && b > joined) {
        if (has_grad_c) carry.narrow(0, joined, b - joined).copy_(grad_c.narrow(0, joined, b - joined));
        joined = b;
      }
      scalar_t* dat = chunks.ptr<scalar_t>(t);  // (B, 4H), becomes dA_t
      if (b < B) std::fill(dat + b * 4 * H, dat + B * 4 * H, scalar_t(0));
      const scalar_t* next = t < T - 1 ? chunks.ptr<scalar_t>(t + 1) : nullptr;
      const scalar_t* gt = seed_delta(delta, G, grad_h, next, times_W, t, b);
      if (b > 0) {
        const scalar_t* at_ = A.data_ptr<scalar_t>() + t * B * 4 * H;
        const scalar_t* ct = C.data_ptr<scalar_t>() + t * B * H;
        const scalar_t* cprev =
            t == 0 ? c0.data_ptr<scalar_t>() : C.data_ptr<scalar_t>() + (t - 1) * B * H;
        scalar_t* kc = carry.data_ptr<scalar_t>();
        over_rows(b, 4 * H, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const scalar_t* o = at_ + r * 4 * H;
            scalar_t* d_o = dat + r * 4 * H;
            lstm_backward_row(gt + r * H, o, o + H, o + 2 * H, o + 3 * H, ct + r * H,
                              cprev + r * H, d_o, d_o + H, d_o + 2 * H, d_o + 3 * H, kc + r * H, H);
          }
        });
      }
      if (t == chunks.first(t)) {
        const Tensor D = chunks.rows(t);
        const int64_t n = chunks.length(t);
        const GradRows rows(D);
        if (dW.defined()) add_recurrent_term(dW, rows, Y, h0, t, n, B, chunks.onednn);
        add_input_terms(dx, dU, db, rows, x, times_U, t, n, B, 0, true, chunks.onednn);
      }
    }
  });
  return {dx, dU, dW, db, initial_grad(needs[4], chunks.at(0), times_W, H), carry};
}

// ----------------------------------------------------------------- GRU

// S holds [U_r·x + b_r, U_z·x + b_z, b_hn] and N holds U_n·x + b_in for every step.
// Step t adds W·h_{t−1} to S, then in one pass: S_t = [r, z, W_n·h + b_hn],
// N_t = n = tanh(N_t + r ⊙ (W_n·h + b_hn)), h_t = n + z ⊙ (h_{t−1} − n).
// Returns Y (T, B, H), zero past each row's end.
Tensor gru_forward(Tensor S, Tensor N, const Tensor& h0_, const Tensor& w_t,
                   at::IntArrayRef batch_sizes) {
  at::AutoDispatchBelowADInplaceOrView guard;
  check_buffer(S, "S", 3);
  check_buffer(N, "N", 3);
  const Tensor h0 = h0_.contiguous();
  const int64_t T = N.size(0), B = N.size(1), H = N.size(2);
  check_sizes(batch_sizes, T);
  Tensor Y = batch_sizes.empty() ? at::empty({T, B, H}, N.options()) : at::zeros({T, B, H}, N.options());
  const StepProduct times_W(w_t, B, T);
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "gru_forward", [&] {
    scalar_t* Yp = Y.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      if (b == 0) continue;
      scalar_t* st = S.data_ptr<scalar_t>() + t * B * 3 * H;
      const scalar_t* hprev = t == 0 ? h0.data_ptr<scalar_t>() : Yp + (t - 1) * B * H;
      const scalar_t* pre = times_W.partial(st, hprev, b);  // [a_r, a_z, W_n·h + b_hn], or the W·h part
      scalar_t* nt = N.data_ptr<scalar_t>() + t * B * H;
      scalar_t* yt = Yp + t * B * H;
      over_rows(b, 3 * H, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          scalar_t* rg = st + r * 3 * H;
          if (pre == st) {
            gru_forward_row<scalar_t, true>(rg, rg, rg + H, rg + 2 * H, nt + r * H,
                                            hprev + r * H, yt + r * H, H);
          } else {
            gru_forward_row<scalar_t, false>(pre + r * 3 * H, rg, rg + H, rg + 2 * H, nt + r * H,
                                             hprev + r * H, yt + r * H, H);
          }
        }
      });
    }
  });
  return Y;
}

// G is ∂L/∂h_t from the outputs (as for the LSTM), only read. Per step:
//   δ_t = G_t + z_{t+1} ⊙ δ_{t+1} + dS_{t+1}·W,
//   dS_t = [δ_t ⊙ ∂h/∂a^n ⊙ ĥ ⊙ r(1 − r), δ_t ⊙ (h_{t−1} − n) ⊙ z(1 − z), δ_t ⊙ ∂h/∂a^n ⊙ r]
// with ∂h/∂a^n = (1 − z) ⊙ (1 − n²) and ĥ = W_n·h_{t−1} + b_hn. dS is the gradient of
// the W side (W·h + b_hh); the U side (U·x + b_ih) has the same r and z blocks and
// δ ⊙ ∂h/∂a^n as its n block (no r). needs = (x, U, W, b_ih, b_hh, h0). Returns
// (∂L/∂x, ∂L/∂U, ∂L/∂W, ∂L/∂b_ih, ∂L/∂b_hh, ∂L/∂h0); the ones not needed are undefined.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& G, const std::optional<Tensor>& grad_h, const Tensor& S, const Tensor& N,
    const Tensor& Y, const Tensor& x_, const Tensor& h0_, const Tensor& w_ih, const Tensor& w_hh,
    at::IntArrayRef batch_sizes, at::IntArrayRef needs, int64_t chunk) {
  at::AutoDispatchBelowADInplaceOrView guard;
  TORCH_CHECK(G.dim() == 3, "rnnkit loops: G must have 3 dimensions");
  for (const auto& [t, name] : {std::pair<const Tensor&, const char*>{S, "S"}, {N, "N"},
                                {Y, "Y"}}) {
    check_buffer(t, name, 3);
  }
  const Tensor x = x_.contiguous(), h0 = h0_.contiguous();
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2), I = x.size(2);
  check_sizes(batch_sizes, T);
  const auto options = G.options();
  TORCH_CHECK(needs.size() == 6, "rnnkit loops: needs is (x, U, W, b_ih, b_hh, h0)");
  Tensor dx = needs[0] ? at::empty({T, B, I}, options) : Tensor();
  Tensor dU = zeros_if(needs[1], {3 * H, I}, options), dW = zeros_if(needs[2], {3 * H, H}, options);
  Tensor db_ih = zeros_if(needs[3], {3 * H}, options), db_hh = zeros_if(needs[4], {3 * H}, options);
  const ChunkPlan plan = plan_chunks(T, B, 4 * H, 3 * H, H, options, chunk);
  Chunks chunks(T, B, 3 * H, options, plan);  // dS_t
  Chunks slopes(T, B, H, options, plan);  // δ_t ⊙ ∂h/∂a^n, same chunk boundaries
  Tensor deltas[2] = {at::empty({B, H}, options), at::empty({B, H}, options)};  // δ_t, δ_{t+1}
  const StepProduct times_W(w_hh, B, T);
  const InputGrad times_U(w_ih.narrow(0, 0, 2 * H), chunks.K * B, 3 * H, dx.defined());
  const InputGrad times_Un(w_ih.narrow(0, 2 * H, H), chunks.K * B, H, dx.defined());
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "gru_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t b = rows_at(batch_sizes, t, B);
      scalar_t* qt = chunks.ptr<scalar_t>(t);
      scalar_t* sl = slopes.ptr<scalar_t>(t);
      if (b < B) {
        std::fill(qt + b * 3 * H, qt + B * 3 * H, scalar_t(0));
        std::fill(sl + b * H, sl + B * H, scalar_t(0));
      }
      Tensor& delta = deltas[t % 2];
      const scalar_t* next = t < T - 1 ? chunks.ptr<scalar_t>(t + 1) : nullptr;
      // δ_t is read at step t − 1 too (z_t ⊙ δ_t) and updated in place, in delta.
      seed_delta(delta, G, grad_h, next, times_W, t, b);
      if (b > 0) {
        scalar_t* gt = delta.data_ptr<scalar_t>();
        const scalar_t* gnext = t < T - 1 ? deltas[(t + 1) % 2].data_ptr<scalar_t>() : nullptr;
        const scalar_t* znext =
            t < T - 1 ? S.data_ptr<scalar_t>() + (t + 1) * B * 3 * H + H : nullptr;
        const scalar_t* st = S.data_ptr<scalar_t>() + t * B * 3 * H;
        const scalar_t* nt = N.data_ptr<scalar_t>() + t * B * H;
        const scalar_t* hprev =
            t == 0 ? h0.data_ptr<scalar_t>() : Y.data_ptr<scalar_t>() + (t - 1) * B * H;
        over_rows(b, 3 * H, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const scalar_t* rg = st + r * 3 * H;
            scalar_t* q = qt + r * 3 * H;
            gru_backward_row(gt + r * H, gnext == nullptr ? nullptr : gnext + r * H,
                             znext == nullptr ? nullptr : znext + r * 3 * H, rg, rg + H,
                             rg + 2 * H, nt + r * H, hprev + r * H, q, q + H, q + 2 * H,
                             sl + r * H, H);
          }
        });
      }
      if (t == chunks.first(t)) {
        const Tensor D = chunks.rows(t), Dn = slopes.rows(t);  // (n·B, 3H), (n·B, H)
        const int64_t n = chunks.length(t);
        if (dW.defined()) add_recurrent_term(dW, GradRows(D), Y, h0, t, n, B, chunks.onednn);
        if (db_hh.defined()) db_hh.add_(D.sum(0));
        add_input_terms(dx, dU, db_ih, GradRows(D.narrow(1, 0, 2 * H)), x, times_U, t, n, B, 0, true,
                        chunks.onednn);
        add_input_terms(dx, dU, db_ih, GradRows(Dn), x, times_Un, t, n, B, 2 * H, false,
                        chunks.onednn);
      }
    }
  });
  // ∂L/∂h0 = dS_0·W + z_0 ⊙ δ_0
  Tensor dh0 = initial_grad(needs[5], chunks.at(0), times_W, H);
  if (dh0.defined()) dh0.addcmul_(S[0].narrow(1, H, H), deltas[0]);
  return {dx, dU, dW, db_ih, db_hh, dh0};
}

}  // namespace

TORCH_LIBRARY(rnnkit_loops, m) {
  m.def("step_product(str path) -> str", &step_product);
  m.def("step_product_path(Tensor w, int rows) -> str", &step_product_path);
  m.def("weight_grad_path(str path) -> str", &weight_grad_path);
  m.def("input_grad_path(str path) -> str", &input_grad_path);
  m.def("rnn_forward(Tensor(a!) Y, Tensor h0, Tensor w_t, int[] batch_sizes, bool relu) -> Tensor(a!)",
        &rnn_forward);
  m.def("rnn_backward(Tensor G, Tensor? grad_h, Tensor Y, Tensor x, Tensor h0, Tensor w_ih, "
        "Tensor w_hh, int[] batch_sizes, bool relu, int[] needs, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
        &rnn_backward);
  m.def("lstm_forward(Tensor(a!) A, Tensor h0, Tensor c0, Tensor w_t, int[] batch_sizes) -> (Tensor, Tensor)",
        &lstm_forward);
  m.def("lstm_backward(Tensor G, Tensor? grad_h, Tensor A, Tensor C, Tensor Y, Tensor x, Tensor h0, "
        "Tensor c0, Tensor u, Tensor w, Tensor? grad_c, int[] batch_sizes, int[] needs, int chunk) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        &lstm_backward);
  m.def("gru_forward(Tensor(a!) S, Tensor(b!) N, Tensor h0, Tensor w_t, int[] batch_sizes) -> Tensor",
        &gru_forward);
  m.def("gru_backward(Tensor G, Tensor? grad_h, Tensor S, Tensor N, Tensor Y, Tensor x, Tensor h0, Tensor w_ih, "
        "Tensor w_hh, int[] batch_sizes, int[] needs, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        &gru_backward);
}
