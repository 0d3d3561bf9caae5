// Diagonal linear networks: f(x) = <beta(theta), x> with the effective linear predictor
//   u2_minus_v2  beta = u*u - v*v   theta = (u, v)   (Woodworth et al.; HaoChen et al.; LWA)
//   uv           beta = u*v         theta = (u, v)   (Andriushchenko et al.; d = 1: f = a b x)
//   w2           beta = w*w         theta = w        (Pillaud-Vivien et al., non-negative beta)
// A QuadraticModel (quadratic.hpp) with phi = beta; pull_back is the chain rule through beta.
#pragma once

#include <stdexcept>
#include <string>

#include "quadratic.hpp"

namespace implicitreg {

enum class DiagonalKind { u2_minus_v2 = 0, uv = 1, w2 = 2 };

inline DiagonalKind diagonal_kind_from_name(const std::string& name) {
  if (name == "u2-v2") return DiagonalKind::u2_minus_v2;
  if (name == "uv") return DiagonalKind::uv;
  if (name == "w2") return DiagonalKind::w2;
  throw std::invalid_argument("unknown diagonal network kind '" + name + "'");
}

template <class T>
class DiagonalLinear : public QuadraticModel<DiagonalLinear<T>, T> {
 public:
  DiagonalLinear(Index d, DiagonalKind kind) : d_(d), kind_(kind) {
    if (d < 1) throw std::invalid_argument("d must be >= 1");
  }

  DiagonalKind kind() const { return kind_; }
  Index n_params() const { return kind_ == DiagonalKind::w2 ? d_ : 2 * d_; }
  Index n_in() const { return d_; }

  void phi(const T* theta, T* out) const {
    VecMap<T> b(out, d_);
    switch (kind_) {
      case DiagonalKind::u2_minus_v2: b = a(theta).square() - a(theta, 1).square(); break;
      case DiagonalKind::uv: b = a(theta) * a(theta, 1); break;
      case DiagonalKind::w2: b = a(theta).square(); break;
    }
  }

  void tangent(const T* theta, const T* v, T* out) const {
    VecMap<T> db(out, d_);
    switch (kind_) {
      case DiagonalKind::u2_minus_v2: db = T(2) * (a(theta) * a(v) - a(theta, 1) * a(v, 1)); break;
      case DiagonalKind::uv: db = a(v) * a(theta, 1) + a(theta) * a(v, 1); break;
      case DiagonalKind::w2: db = T(2) * a(theta) * a(v); break;
    }
  }

  void canonical(T*) const {}

  // out (+)= (d beta / d theta)^T g
  void pull_back(const T* theta, const T* g, T* out, bool add) const {
    const auto G = ConstVecMap<T>(g, d_).array();
    switch (kind_) {
      case DiagonalKind::u2_minus_v2:
        put(out, add, T(2) * a(theta) * G);
        put(out + d_, add, T(-2) * a(theta, 1) * G);
        break;
      case DiagonalKind::uv:
        put(out, add, a(theta, 1) * G);
        put(out + d_, add, a(theta) * G);
        break;
      case DiagonalKind::w2: put(out, add, T(2) * a(theta) * G); break;
    }
  }

 private:
  // Block `block` (u = 0, v = 1) of a parameter-shaped vector, as an array.
  auto a(const T* x, Index block = 0) const { return ConstVecMap<T>(x + block * d_, d_).array(); }

  template <class E>
  void put(T* out, bool add, const E& e) const {
    if (add)
      VecMap<T>(out, d_).array() += e;
    else
      VecMap<T>(out, d_).array() = e;
  }

  Index d_;
  DiagonalKind kind_;
};

template <class T>
struct SecondOrderWorkspace<DiagonalLinear<T>> : QuadraticSecondOrderWorkspace<T> {};

}  // namespace implicitreg
