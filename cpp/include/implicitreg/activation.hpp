// Elementwise activations with their first and second derivatives (second-order code needs both).
// relu'(0) = 0, as in PyTorch.
#pragma once

#include <stdexcept>
#include <string>

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

// a = act(z), elementwise. `z` and `a` may alias.
template <class T, class In, class Out>
void apply_activation(Activation act, const In& z, Out&& a) {
  switch (act) {
    case Activation::identity: a = z; break;
    case Activation::relu: a = z.array().max(T(0)).matrix(); break;
    case Activation::tanh: a = z.array().tanh().matrix(); break;
    // 1/(1+e^-z) written through tanh: no overflow for large |z|.
    case Activation::sigmoid: a = (T(0.5) * (T(0.5) * z.array()).tanh() + T(0.5)).matrix(); break;
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
    case Activation::softplus: d = (T(0.5) * (T(0.5) * z.array()).tanh() + T(0.5)).matrix(); break;
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
    case Activation::softplus: {
      // sigma(z)(1 - sigma(z))
      auto sig = (T(0.5) * (T(0.5) * z.array()).tanh() + T(0.5));
      s = (sig * (T(1) - sig)).matrix();
      break;
    }
  }
}

}  // namespace implicitreg
