// Elementwise activations with their first and second derivatives (second-order code needs both).
// relu'(0) = 0, as in PyTorch.
#pragma once

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

// out = tanh(z), elementwise, `out` a plain matrix (it may be `z` itself). Vectorised for
// double too: Eigen vectorises tanh for float only, and a libm call per element dominated tanh
// networks. Cephes' rational approximation for |x| < 0.625 (relative error below 3e-16), and
// 1 - 2/(exp(2|x|) + 1) with the sign of x beyond (Eigen's vectorised exp): a couple of ulp.
template <class In, class Out>
void tanh_into(const In& z, Out& out) {
  using T = typename Out::Scalar;
  out = z;
  auto x = out.array();
  if constexpr (std::is_same_v<T, double>) {
    const auto x2 = x.square();
    const auto p = (-9.64399179425052238628e-1 * x2 - 9.92877231001918586564e1) * x2 -
                   1.61468768441708447952e3;
    const auto q = ((x2 + 1.12811678491632931402e2) * x2 + 2.23548839060100448583e3) * x2 +
                   4.84406305325125486048e3;
    const auto big = 1.0 - 2.0 / ((2.0 * x.abs()).exp() + 1.0);
    x = (x.abs() < 0.625).select(x * (1.0 + x2 * (p / q)), (x < 0.0).select(-big, big));
  } else {
    x = x.tanh();
  }
}

// out = sigmoid(z) = (1 + tanh(z/2)) / 2: no overflow for large |z|.
template <class In, class Out>
void sigmoid_into(const In& z, Out& out) {
  using T = typename Out::Scalar;
  tanh_into((T(0.5) * z.array()).matrix(), out);
  out.array() = T(0.5) * out.array() + T(0.5);
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
