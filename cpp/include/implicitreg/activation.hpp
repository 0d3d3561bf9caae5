// Elementwise activations with their first and second derivatives (second-order code needs both).
// relu'(0) = 0, as in PyTorch.
#pragma once

#include <algorithm>
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

// tanh of one packet of doubles: Cephes' rational approximation for |x| < 0.625 (relative error
// below 3e-16), 1 - 2/(exp(2|x|) + 1) with the sign of x beyond (Eigen's vectorised exp): a couple
// of ulp. Written on packets because Eigen's select() is not vectorised: an array expression
// would fall back to one libm exp per element.
template <class Packet>
Packet tanh_packet(const Packet& x) {
  using namespace Eigen::internal;
  const Packet ax = pabs(x), x2 = pmul(x, x);
  const Packet p = pmadd(pmadd(pset1<Packet>(-9.64399179425052238628e-1), x2,
                               pset1<Packet>(-9.92877231001918586564e1)),
                         x2, pset1<Packet>(-1.61468768441708447952e3));
  const Packet q = pmadd(pmadd(padd(x2, pset1<Packet>(1.12811678491632931402e2)), x2,
                               pset1<Packet>(2.23548839060100448583e3)),
                         x2, pset1<Packet>(4.84406305325125486048e3));
  const Packet small = pmul(x, padd(pset1<Packet>(1.0), pmul(x2, pdiv(p, q))));
  const Packet e = pexp(padd(ax, ax));
  Packet big = psub(pset1<Packet>(1.0), pdiv(pset1<Packet>(2.0), padd(e, pset1<Packet>(1.0))));
  big = pselect(pcmp_lt(x, pzero(x)), pnegate(big), big);
  return pselect(pcmp_lt(ax, pset1<Packet>(0.625)), small, big);
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

// out = tanh(z), elementwise, `out` a plain matrix (it may be `z` itself). Eigen vectorises tanh
// for float only; double goes through tanh_packet.
template <class In, class Out>
void tanh_into(const In& z, Out& out) {
  using T = typename Out::Scalar;
  out = z;
  if constexpr (std::is_same_v<T, double>) {
    map_packets(out.data(), out.data(), out.size(), [](const auto& x) { return tanh_packet(x); });
  } else {
    out.array() = out.array().tanh();
  }
}

// out = sigmoid(z), elementwise, `out` a plain matrix.
template <class In, class Out>
void sigmoid_into(const In& z, Out& out) {
  out = z;
  map_packets(out.data(), out.data(), out.size(), [](const auto& x) { return sigmoid_packet(x); });
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
