// Linear predictors on a quadratic parametrisation: f(x; theta) = <x, phi(theta)>, phi quadratic.
//
// Matrix sensing (phi = vec(U U^T) or vec(U V^T), x = vec(A)) and diagonal linear networks
// (phi = u*u - v*v, u*v or w*w) are of this form. Because phi is quadratic, the gradient of
// <g, phi(theta)> is linear in theta: it is H_g theta for a symmetric p x p matrix H_g (the
// Hessian of <g, phi>). Everything the model concept (model.hpp) needs follows from that, for a
// batch X (n x m, one x_i per row) and residual seeds delta:
//
//   forward     F = X phi(theta)                                   one matrix-vector product
//   gradient    J^T delta = H_g theta,  g = X^T delta              one matrix-vector product
//   Jacobian    row i = H_{x_i} theta;  R_i = ||H_{x_i} theta||^2
//   grad R      sum_i 2 H_{x_i} (H_{x_i} theta)                    (H_{x_i} is symmetric)
//   J v         X dphi(theta; v)                                   (dphi: the tangent of phi)
//   H u         H_{X^T q} theta + H_{X^T 2c r} u,  q = 2c J u, r = F - Y
//               (the second term is the residual curvature: H_g is linear in g)
//
// A model derives from QuadraticModel<Derived, T> and provides
//   Index n_params() const; Index n_in() const;          (n_in = m, the length of phi)
//   void phi(const T* theta, T* out) const;              out = phi(theta)                  (m)
//   void tangent(const T* theta, const T* v, T* out) const;   out = d/dt phi(theta + t v)  (m)
//   void canonical(T* g) const;   rewrites g (m) in place into the form pull_back expects
//                                 (e.g. A -> A + A^T for <A, U U^T>); may be a no-op
//   void pull_back(const T* theta, const T* g, T* out, bool add) const;
//                                 out (+)= H_g theta = grad_theta <g, phi(theta)>, g canonical
#pragma once

#include <algorithm>

#include "config.hpp"
#include "kernels.hpp"
#include "loss.hpp"
#include "model.hpp"
#include "objective.hpp"
#include "second_order.hpp"

namespace implicitreg {

template <class Derived, class T>
class QuadraticModel {
 public:
  using Scalar = T;

  struct Workspace {
    Vec<T> phi, g, P;    // phi(theta); canonical X^T delta (or one x_i); H_g theta
    RowMat<T> F, delta;  // (rows x 1): outputs; dL/dF
  };

  Index n_out() const { return 1; }

  const RowMat<T>& outputs(const Workspace& ws) const { return ws.F; }

  void forward(const T* theta, const MatRef<T>& X, Workspace& ws) const {
    ws.phi.resize(self().n_in());
    self().phi(theta, ws.phi.data());
    ws.F.resize(X.rows(), 1);
    VecMap<T>(ws.F.data(), X.rows()).noalias() = X * ws.phi;
  }

  template <class DF>
  void seed_output(const DF& dF, Workspace& ws) const {
    ws.delta = dF;
  }

  // grad = J^T dF with dF = two_c (F - Y), F = X phi, in one pass over X (a forward, the residual
  // and backward() together): the long-run step of Simulation; F is not kept. Rows go in blocks
  // of kBlock, software-pipelined: the sweep that computes the residuals of one block also adds
  // the previous block (still in L1) into X^T dF. Six rows: each sweep keeps 2 x 6 packets in
  // registers (accumulators and residuals), which the 16 AVX registers hold.
  void residual_backward(const T* theta, const MatRef<T>& X, const MatRef<T>& Y, T two_c,
                         Workspace& ws, T* grad) const {
    constexpr int B = kBlock;
    const Index m = self().n_in(), n = X.rows(), stride = X.outerStride();
    ws.phi.resize(m);
    self().phi(theta, ws.phi.data());
    ws.g.setZero(m);
    const T* phi = ws.phi.data();
    T* g = ws.g.data();
    auto residuals = [&](Index i, int rows, T* r) {
      for (int j = 0; j < rows; ++j) r[j] = two_c * (r[j] - Y(i + j, 0));
    };
    Index i = 0;
    if (n >= B) {
      T r[B], next[B];
      dot_add_rows<B, 0, T>(X.row(0).data(), nullptr, stride, m, phi, r, nullptr, nullptr);
      residuals(0, B, r);
      for (i = B; i + B <= n; i += B) {
        dot_add_rows<B, B, T>(X.row(i).data(), X.row(i - B).data(), stride, m, phi, next, r, g);
        residuals(i, B, next);
        std::copy_n(next, B, r);
      }
      dot_add_rows<0, B, T>(nullptr, X.row(i - B).data(), stride, m, nullptr, nullptr, r, g);
    }
    for (; i < n; ++i) {
      T r;
      dot_add_rows<1, 0, T>(X.row(i).data(), nullptr, stride, m, phi, &r, nullptr, nullptr);
      residuals(i, 1, &r);
      dot_add_rows<0, 1, T>(nullptr, X.row(i).data(), stride, m, nullptr, nullptr, &r, g);
    }
    self().canonical(g);
    self().pull_back(theta, g, grad, false);
  }

  void backward(const T* theta, const MatRef<T>& X, Workspace& ws, T* grad) const {
    ws.g.noalias() = X.transpose() * ConstVecMap<T>(ws.delta.data(), X.rows());
    self().canonical(ws.g.data());
    self().pull_back(theta, ws.g.data(), grad, false);
  }

  void add_regularizer(const T* theta, const MatRef<T>& X, Workspace& ws, Vec<T>& r) const {
    ws.P.resize(self().n_params());
    for (Index i = 0; i < X.rows(); ++i) {
      sample_gradient(theta, X, i, ws.g, ws.P.data());
      r[i] += ws.P.squaredNorm();
    }
  }

  void jacobian(const T* theta, const MatRef<T>& X, Workspace& ws, MatMap<T>& J) const {
    for (Index i = 0; i < X.rows(); ++i) sample_gradient(theta, X, i, ws.g, J.row(i).data());
  }

  // out = grad f(x_i) = H_{x_i} theta; leaves the canonical x_i in g.
  void sample_gradient(const T* theta, const MatRef<T>& X, Index i, Vec<T>& g, T* out) const {
    g = X.row(i).transpose();
    self().canonical(g.data());
    self().pull_back(theta, g.data(), out, false);
  }

 private:
  static constexpr int kBlock = 6;

  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

// Second-order buffers shared by the quadratic models (each model's SecondOrderWorkspace derives
// from it). Two columns so that an HVP can read X twice, not four times.
template <class T>
struct QuadraticSecondOrderWorkspace {
  using Cols2 = Eigen::Matrix<T, Eigen::Dynamic, 2>;
  Cols2 phi2, F2, seed2, g2;  // (m x 2), (n x 2), (n x 2), (m x 2)
  RowMat<T> Jv, delta;        // (n x 1)
  Vec<T> g, P, hu;
};

// Batches are MatRef<ScalarOf<D>>: T is deduced from the model only, so a RowMat converts.
template <class D, class T>
const RowMat<T>& jvp(const QuadraticModel<D, T>& model, const T* theta,
                     const MatRef<ScalarOf<D>>& X, const T* v,
                     QuadraticSecondOrderWorkspace<T>& ws) {
  const D& m = static_cast<const D&>(model);
  ws.g.resize(m.n_in());
  m.tangent(theta, v, ws.g.data());
  ws.Jv.resize(X.rows(), 1);
  VecMap<T>(ws.Jv.data(), X.rows()).noalias() = X * ws.g;
  return ws.Jv;
}

template <class D, class T, class Seed>
void vjp(const QuadraticModel<D, T>& model, const T* theta, const MatRef<ScalarOf<D>>& X,
         const Seed& S, QuadraticSecondOrderWorkspace<T>& ws, T* out) {
  const D& m = static_cast<const D&>(model);
  ws.delta = S;
  ws.g.noalias() = X.transpose() * ConstVecMap<T>(ws.delta.data(), X.rows());
  m.canonical(ws.g.data());
  m.pull_back(theta, ws.g.data(), out, false);
}

template <class D, class T>
double loss_grad_hvp(const QuadraticModel<D, T>& model, const T* theta,
                     const MatRef<ScalarOf<D>>& X, const MatRef<ScalarOf<D>>& Y,
                     const LossNorm& norm, const T* u, QuadraticSecondOrderWorkspace<T>& ws,
                     T* grad, T* hu) {
  const D& m = static_cast<const D&>(model);
  const Index n = X.rows(), dim = m.n_in();
  const double c = norm.scale(n);
  const T two_c = static_cast<T>(2 * c);
  // EGR passes u = grad, to be read once the gradient is complete: then X is read four times;
  // otherwise [phi, dphi] and [2c r, q] go through X together.
  const bool sequential = grad != nullptr && u == grad;
  ws.phi2.resize(dim, 2);
  ws.F2.resize(n, 2);
  ws.seed2.resize(n, 2);
  ws.g2.resize(dim, 2);
  m.phi(theta, ws.phi2.col(0).data());
  if (sequential) {
    ws.F2.col(0).noalias() = X * ws.phi2.col(0);
  } else {
    m.tangent(theta, u, ws.phi2.col(1).data());
    ws.F2.noalias() = X * ws.phi2;
  }
  ws.seed2.col(0) = ws.F2.col(0) - Y.col(0);
  const double value = c * static_cast<double>(ws.seed2.col(0).squaredNorm());
  ws.seed2.col(0) *= two_c;
  if (sequential) {
    ws.g2.col(0).noalias() = X.transpose() * ws.seed2.col(0);
    m.canonical(ws.g2.col(0).data());
    m.pull_back(theta, ws.g2.col(0).data(), grad, false);
    m.tangent(theta, u, ws.phi2.col(1).data());
    ws.F2.col(1).noalias() = X * ws.phi2.col(1);
    ws.seed2.col(1) = two_c * ws.F2.col(1);
    ws.g2.col(1).noalias() = X.transpose() * ws.seed2.col(1);
    m.canonical(ws.g2.col(1).data());
  } else {
    ws.seed2.col(1) = two_c * ws.F2.col(1);
    ws.g2.noalias() = X.transpose() * ws.seed2;
    m.canonical(ws.g2.col(0).data());
    m.canonical(ws.g2.col(1).data());
    if (grad) m.pull_back(theta, ws.g2.col(0).data(), grad, false);
  }
  m.pull_back(theta, ws.g2.col(1).data(), hu, false);  // Gauss-Newton part
  m.pull_back(u, ws.g2.col(0).data(), hu, true);       // residual curvature
  return value;
}

template <class D, class T>
double regularizer_and_grad(const QuadraticModel<D, T>& model, const T* theta,
                            const MatRef<ScalarOf<D>>& X, QuadraticSecondOrderWorkspace<T>& ws,
                            T* grad) {
  const D& m = static_cast<const D&>(model);
  const Index p = m.n_params();
  ws.P.resize(p);
  if (grad) VecMap<T>(grad, p).setZero();
  double R = 0;
  for (Index i = 0; i < X.rows(); ++i) {
    ws.g = X.row(i).transpose();
    m.canonical(ws.g.data());
    m.pull_back(theta, ws.g.data(), ws.P.data(), false);
    R += static_cast<double>(ws.P.squaredNorm());
    if (grad) m.pull_back(ws.P.data(), ws.g.data(), grad, true);
  }
  if (grad) VecMap<T>(grad, p) *= T(2);
  return R;
}

}  // namespace implicitreg
