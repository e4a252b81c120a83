// The activations of rnnkit's compiled loops (loops.cpp) and step (step.cpp):
// float versions built on one vectorisable exp, double versions on the C library's.
// Included by each .cpp of the library; rnnkit.bptt.compiled hashes it with them.
#pragma once

#include <cmath>
#include <cstdint>

namespace rnnkit_math {

// Always inlined: a call in a loop stops gcc from vectorising it (it did, in the RNN
// forward's four-way loop, before this attribute).
__attribute__((always_inline)) inline float exp_fast(float x) {
  // e^x = 2^n · e^r, n = round(x / ln 2), |r| ≤ ln 2 / 2; ln 2 split in two
  // (Cody-Waite) so that x − n·ln 2 is exact enough in float.
  // Clamped with comparisons, not fmin/fmax: gcc vectorises these (with
  // -fno-trapping-math), and the loops calling exp_fast with them.
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [−126, 127]
  return er * __builtin_bit_cast(float, bits);
}

__attribute__((always_inline)) inline float sigmoid(float x) { return 1.0f / (1.0f + exp_fast(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// tanh(x) = 1 − 2 / (1 + e^{2x}): saturates to ±1 without overflow.
__attribute__((always_inline)) inline float tanh_(float x) { return 1.0f - 2.0f / (1.0f + exp_fast(2.0f * x)); }
inline double tanh_(double x) { return std::tanh(x); }

}  // namespace rnnkit_math
