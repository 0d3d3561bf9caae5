// Elementwise activations with their first and second derivatives (second-order code needs both).
// relu'(0) = 0, as in PyTorch.
#pragma once

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "config.hpp"

namespace implicitreg {

enum class Activation { identity, relu, tanh, sigmoid, softplus };

inline Activation activation_from_name(const std::string& name) {
  if (name == "identity") return Activation::identity;
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "softplus") return Activation::softplus;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

// 2^k from v = k + (2^52 + 1023), k a small integer: v's low mantissa bits hold k + 1023, the
// biased exponent of 2^k, so shifting v's bits left by 52 gives 2^k. Shifts on x86 packets;
// Eigen's general pldexp (several times slower) elsewhere.
template <class Packet>
Packet pow2_from_biased(const Packet& /*biased*/, const Packet& k) {
  return Eigen::internal::pldexp(Eigen::internal::pset1<Packet>(1.0), k);
}
#ifdef EIGEN_VECTORIZE_SSE2
inline __m128d pow2_from_biased(const __m128d& v, const __m128d&) {
  return _mm_castsi128_pd(_mm_slli_epi64(_mm_castpd_si128(v), 52));
}
#endif
#ifdef EIGEN_VECTORIZE_AVX2
inline __m256d pow2_from_biased(const __m256d& v, const __m256d&) {
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(v), 52));
}
#endif
#ifdef EIGEN_VECTORIZE_AVX512
inline __m512d pow2_from_biased(const __m512d& v, const __m512d&) {
  return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(v), 52));
}
#endif

// tanh of one packet of doubles, one formula over the whole range: tanh|x| = e/(e + 2) with
// e = expm1(2|x|), the sign of x copied back. expm1(t) = 2^k (1 + p) - 1 with t = k ln2 + r,
// |r| <= ln2/2, p = expm1(r) by its Taylor series to r^13 (truncation below 1e-17 relative);
// t is capped at 40, where tanh is 1 in double. Within 2.5 ulp of the exact value (measured
// against long double over 1e-12 .. 25), NaN stays NaN, -0 stays -0. One exp-like evaluation and
// one division per element (1.2 ns per element, AVX2). The series is summed by Estrin's scheme
// (powers r^2, r^4, r^8 and pairs of terms): over a matrix, Horner's twelve dependent FMAs made
// the loop wait on their latency (12% slower).
template <class Packet>
EIGEN_STRONG_INLINE Packet tanh_packet(const Packet& x) {
  using namespace Eigen::internal;
  const auto c = [](double value) { return pset1<Packet>(value); };
  const Packet t = pmin(padd(pabs(x), pabs(x)), c(40.0));  // pmin(NaN, 40) is NaN
  // k = round(t / ln2), rounded by adding 2^52 + 1023; the sum's bits also give 2^k.
  const Packet shift = c(4503599627371519.0);
  const Packet biased = padd(pmul(t, c(1.4426950408889634)), shift);
  const Packet k = psub(biased, shift);
  // r = t - k ln2 in two parts (Cody and Waite; k ln2_hi is exact).
  Packet r = pmadd(pnegate(k), c(6.93147180369123816490e-01), t);
  r = pmadd(pnegate(k), c(1.90821492927058770002e-10), r);
  // expm1(r) = r + r^2 q(r), q(r) = sum_{j < 12} f_j r^j with f_j = 1/(j + 2)!
  constexpr auto f = [] {
    std::array<double, 12> inverse{};
    double factorial = 2;
    for (int j = 0; j < 12; ++j) {
      inverse[j] = 1 / factorial;
      factorial *= j + 3;
    }
    return inverse;
  }();
  const auto pair = [&](int j) { return pmadd(c(f[j + 1]), r, c(f[j])); };  // f_j + f_{j+1} r
  const Packet r2 = pmul(r, r), r4 = pmul(r2, r2), r8 = pmul(r4, r4);
  const Packet q0 = pmadd(pmadd(pair(6), r2, pair(4)), r4, pmadd(pair(2), r2, pair(0)));
  const Packet q = pmadd(pmadd(pair(10), r2, pair(8)), r8, q0);
  const Packet p = pmadd(r2, q, r);
  const Packet pow2k = pow2_from_biased(biased, k);
  const Packet e = pmadd(pow2k, p, psub(pow2k, c(1.0)));  // 2^k - 1 is exact for k <= 53
  const Packet magnitude = pdiv(e, padd(e, c(2.0)));
  return pxor(magnitude, pand(x, c(-0.0)));
}

// sigmoid of one packet: 1/(1 + e) for x >= 0 and e/(1 + e) below, e = exp(-|x|), so that the
// result keeps its relative accuracy where it is tiny (large negative x), never overflowing.
template <class Packet>
Packet sigmoid_packet(const Packet& x) {
  using namespace Eigen::internal;
  const Packet e = pexp(pnegate(pabs(x)));
  const Packet s = pdiv(pset1<Packet>(1), padd(pset1<Packet>(1), e));
  return pselect(pcmp_lt(x, pzero(x)), pmul(e, s), s);
}

// out[k] = f(z[k]) for n scalars with a packet function f (z and out may alias). The tail goes
// through a padded packet, so an element's value does not depend on its position.
template <class T, class F>
void map_packets(const T* z, T* out, Index n, F f) {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index P = Eigen::internal::packet_traits<T>::size;
  Index k = 0;
  for (; k + P <= n; k += P)
    Eigen::internal::pstoreu(out + k, f(Eigen::internal::ploadu<Packet>(z + k)));
  if (k < n) {
    T buf[P] = {};
    std::copy(z + k, z + n, buf);
    Eigen::internal::pstoreu(buf, f(Eigen::internal::ploadu<Packet>(buf)));
    std::copy(buf, buf + (n - k), out + k);
  }
}

// out[k] = f(z[k]) for a packet function f, `out` a plain matrix (it may be `z` itself). A plain
// `z` of the same type is read in place; an expression is evaluated into `out` first.
template <class In, class Out, class F>
void map_into(const In& z, Out& out, F f) {
  // A block (a column of a row-major matrix, say) is not contiguous: map_packets would run over
  // the wrong numbers.
  static_assert(std::is_base_of_v<Eigen::PlainObjectBase<Out>, Out>, "out: a plain matrix");
  if constexpr (std::is_same_v<In, Out>) {
    out.resize(z.rows(), z.cols());
    map_packets(z.data(), out.data(), out.size(), f);
  } else {
    out = z;
    map_packets(out.data(), out.data(), out.size(), f);
  }
}

// out = tanh(z), elementwise. Eigen vectorises tanh for float only; double goes through
// tanh_packet.
template <class In, class Out>
void tanh_into(const In& z, Out& out) {
  if constexpr (std::is_same_v<typename Out::Scalar, double>) {
    map_into(z, out, [](const auto& x) { return tanh_packet(x); });
  } else {
    out = z.array().tanh().matrix();
  }
}

// out = sigmoid(z), elementwise.
template <class In, class Out>
void sigmoid_into(const In& z, Out& out) {
  map_into(z, out, [](const auto& x) { return sigmoid_packet(x); });
}

// a = act(z), elementwise. `z` and `a` may alias.
template <class T, class In, class Out>
void apply_activation(Activation act, const In& z, Out&& a) {
  switch (act) {
    case Activation::identity: a = z; break;
    case Activation::relu: a = z.array().max(T(0)).matrix(); break;
    case Activation::tanh: tanh_into(z, a); break;
    case Activation::sigmoid: sigmoid_into(z, a); break;
    // log(1+e^z) = max(z,0) + log1p(e^-|z|): no overflow for large z.
    case Activation::softplus:
      a = (z.array().max(T(0)) + (-z.array().abs()).exp().log1p()).matrix();
      break;
  }
}

// A = act(Z) for the layer passes (the bias is already in Z: affine_product), every activation
// but softplus on packets, float tanh too (Eigen's ptanh); the tail goes through a padded packet
// (map_packets), so an element's value does not depend on its position.
template <class T>
void activate(Activation act, const RowMat<T>& Z, RowMat<T>& A) {
  using namespace Eigen::internal;
  A.resize(Z.rows(), Z.cols());
  const auto map = [&](auto f) { map_packets(Z.data(), A.data(), Z.size(), f); };
  switch (act) {
    case Activation::identity: A = Z; break;
    case Activation::relu: map([](const auto& x) { return pmax(x, pzero(x)); }); break;
    case Activation::tanh:
      if constexpr (std::is_same_v<T, double>)
        map([](const auto& x) { return tanh_packet(x); });
      else
        map([](const auto& x) { return ptanh(x); });
      break;
    case Activation::sigmoid: map([](const auto& x) { return sigmoid_packet(x); }); break;
    case Activation::softplus: apply_activation<T>(act, Z, A); break;
  }
}

// f(std::integral_constant<Activation, act>{}): a kernel instantiated for the activation, so
// that its inner loop has no switch.
template <class F>
void with_activation(Activation act, F f) {
  switch (act) {
    case Activation::identity: f(std::integral_constant<Activation, Activation::identity>{}); break;
    case Activation::relu: f(std::integral_constant<Activation, Activation::relu>{}); break;
    case Activation::tanh: f(std::integral_constant<Activation, Activation::tanh>{}); break;
    case Activation::sigmoid: f(std::integral_constant<Activation, Activation::sigmoid>{}); break;
    case Activation::softplus: f(std::integral_constant<Activation, Activation::softplus>{}); break;
  }
}

// m where z > 0, else +0 (NaN: +0), for packets or scalars: relu'(z) m with relu'(0) = 0, and
// relu(z) itself with m = z. Generic: an all-ones/zero mask vector, then an and. AVX-512 builds
// compare into a mask register and zero-mask the move instead: two instructions, not three
// (Eigen's compare there writes the mask register into a vector first).
template <class Packet>
EIGEN_ALWAYS_INLINE Packet where_positive(const Packet& z, const Packet& m) {
  using namespace Eigen::internal;
  return pand(pcmp_lt(pzero(z), z), m);
}
#ifdef EIGEN_VECTORIZE_AVX512
EIGEN_ALWAYS_INLINE __m512 where_positive(const __m512& z, const __m512& m) {
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_setzero_ps(), z, _CMP_LT_OQ), m);
}
EIGEN_ALWAYS_INLINE __m512d where_positive(const __m512d& z, const __m512d& m) {
  return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(_mm512_setzero_pd(), z, _CMP_LT_OQ), m);
}
#ifdef __AVX512VL__
EIGEN_ALWAYS_INLINE __m256 where_positive(const __m256& z, const __m256& m) {
  return _mm256_maskz_mov_ps(_mm256_cmp_ps_mask(_mm256_setzero_ps(), z, _CMP_LT_OQ), m);
}
EIGEN_ALWAYS_INLINE __m256d where_positive(const __m256d& z, const __m256d& m) {
  return _mm256_maskz_mov_pd(_mm256_cmp_pd_mask(_mm256_setzero_pd(), z, _CMP_LT_OQ), m);
}
EIGEN_ALWAYS_INLINE __m128 where_positive(const __m128& z, const __m128& m) {
  return _mm_maskz_mov_ps(_mm_cmp_ps_mask(_mm_setzero_ps(), z, _CMP_LT_OQ), m);
}
EIGEN_ALWAYS_INLINE __m128d where_positive(const __m128d& z, const __m128d& m) {
  return _mm_maskz_mov_pd(_mm_cmp_pd_mask(_mm_setzero_pd(), z, _CMP_LT_OQ), m);
}
#endif
#endif

// m * act'(z) for a packet (or one scalar) m, z and a = act(z), act' formed on the fly: the
// numbers of multiplying by activation_derivative()'s matrix (relu: m where z > 0, else +0).
template <Activation act, class Packet>
EIGEN_ALWAYS_INLINE Packet times_derivative(const Packet& m, const Packet& z, const Packet& a) {
  using namespace Eigen::internal;
  const Packet one = pset1<Packet>(1);
  if constexpr (act == Activation::identity) return m;
  if constexpr (act == Activation::relu) return where_positive(z, m);
  if constexpr (act == Activation::tanh) return pmul(m, psub(one, pmul(a, a)));
  if constexpr (act == Activation::sigmoid) return pmul(m, pmul(a, psub(one, a)));
  // softplus' = sigmoid; one scalar (a row's tail) goes through a packet too, for the same numbers.
  if constexpr (act == Activation::softplus) {
    if constexpr (std::is_arithmetic_v<Packet>) {
      using Full = typename packet_traits<Packet>::type;
      return m * pfirst(sigmoid_packet(pset1<Full>(z)));
    } else {
      return pmul(m, sigmoid_packet(z));
    }
  }
}

// act''(z) for a packet (or one scalar) z and a = act(z), formed on the fly: the numbers of
// activation_second_derivative()'s matrix. Zero for the identity and relu.
template <Activation act, class Packet>
EIGEN_ALWAYS_INLINE Packet second_derivative(const Packet& z, const Packet& a) {
  using namespace Eigen::internal;
  const Packet one = pset1<Packet>(1);
  if constexpr (act == Activation::identity || act == Activation::relu) return pzero(z);
  if constexpr (act == Activation::tanh)
    return pmul(pmul(pset1<Packet>(-2), a), psub(one, pmul(a, a)));
  if constexpr (act == Activation::sigmoid)
    return pmul(pmul(a, psub(one, a)), psub(one, pmul(pset1<Packet>(2), a)));
  if constexpr (act == Activation::softplus) {  // sigma(z) (1 - sigma(z))
    const Packet s = times_derivative<act>(one, z, a);
    return pmul(s, psub(one, s));
  }
}

// d = act'(z) given z and a = act(z).
template <class T, class In, class Out>
void activation_derivative(Activation act, const In& z, const In& a, Out&& d) {
  switch (act) {
    case Activation::identity: d.setOnes(); break;
    case Activation::relu: d = (z.array() > T(0)).template cast<T>().matrix(); break;
    case Activation::tanh: d = (T(1) - a.array().square()).matrix(); break;
    case Activation::sigmoid: d = (a.array() * (T(1) - a.array())).matrix(); break;
    case Activation::softplus: sigmoid_into(z, d); break;
  }
}

// s = act''(z) given z and a = act(z).
template <class T, class In, class Out>
void activation_second_derivative(Activation act, const In& z, const In& a, Out&& s) {
  switch (act) {
    case Activation::identity:
    case Activation::relu: s.setZero(); break;
    case Activation::tanh: s = (T(-2) * a.array() * (T(1) - a.array().square())).matrix(); break;
    case Activation::sigmoid:
      s = (a.array() * (T(1) - a.array()) * (T(1) - T(2) * a.array())).matrix();
      break;
    case Activation::softplus:  // sigma(z)(1 - sigma(z))
      sigmoid_into(z, s);
      s.array() *= T(1) - s.array();
      break;
  }
}

}  // namespace implicitreg
