// Exact second-order quantities, hand-coded (no autodiff, no per-sample Jacobian):
//
//   loss_grad_hvp         L, g = grad L and H u in one forward-backward plus one R-op pass
//   hvp                   H v,  H = Hessian of L = c * sum_i ||f(x_i) - y_i||^2 (loss.hpp)
//   gnvp                  G v = 2c J^T (J v), the Gauss-Newton part of H
//   egr_direction         g + 2 mu H g = grad [L + mu ||grad L||^2] (explicit gradient regularizer)
//   regularizer_and_grad  R = sum_i sum_o ||d f_o(x_i) / d theta||^2 and grad R
//
// Layering: a model type specialises SecondOrderWorkspace<Model> and provides jvp, vjp,
// loss_grad_hvp and regularizer_and_grad under these names (here for MLP<T>); hvp, gnvp and
// egr_direction are written once over those. Workspaces keep every buffer between calls, so a
// loop of calls with the same batch size allocates nothing.
//
// MLP notation (mlp.hpp): A_{-1} = X, Z_l = A_{l-1} W_l^T + 1 b_l^T, A_l = act_l(Z_l), F = A_last.
// Loss backward: G_l = dL/dA_l (G_last = 2c (F - Y)), Delta_l = dL/dZ_l = G_l * act_l'(Z_l),
// G_{l-1} = Delta_l W_l. Pearlmutter's R-op R{.} = d/dt (.)(theta + t u) at t = 0, with
// u = (U_l, c_l) per layer, differentiates each line of that program:
//   RZ_l = RA_{l-1} W_l^T + A_{l-1} U_l^T + 1 c_l^T,   RA_l = act_l'(Z_l) * RZ_l,
//   RG_last = 2c RA_last,   RDelta_l = RG_l * act_l' + G_l * act_l'' * RZ_l,
//   RG_{l-1} = RDelta_l W_l + Delta_l U_l,
//   (H u)_{W_l} = RDelta_l^T A_{l-1} + Delta_l^T RA_{l-1},   (H u)_{b_l} = colsum RDelta_l.
#pragma once

#include <cstddef>
#include <vector>

#include "activation.hpp"
#include "config.hpp"
#include "loss.hpp"
#include "mlp.hpp"
#include "objective.hpp"
#include "products.hpp"

namespace implicitreg {

// Buffers of the second-order functions of one model type; each model type specialises it. The
// generic functions below use only `hu` (a Vec of the model's scalar).
template <class Model>
struct SecondOrderWorkspace;

template <class T>
struct SecondOrderWorkspace<MLP<T>> {
  typename MLP<T>::Workspace base;  // Z_l, A_l of the forward pass
  Index rows = -1;
  // Per layer: loss backward G_l, Delta_l; R-op RZ_l, RA_l, RG_l, RDelta_l.
  std::vector<RowMat<T>> G, Delta, RZ, RA, RG, RDelta;
  // Regularizer, for one output o: d_l = df_o/dZ_l and P_l = d_l W_l (n x in_l); adjoints
  // dbar_l = dR/dd_l, Pbar_l = dR/dP_l, Abar_l = dR/dA_l, D1bar_l = dR/d act'(Z_l).
  std::vector<RowMat<T>> d, P, dbar, Pbar, Abar, D1bar;
  Vec<T> r;   // per sample: R_i (the norm trick's factors and row norms: base.in_sq, base.rowsq)
  Vec<T> hu;  // H g inside egr_direction
};

// Bytes held by a workspace: the bindings drop a cached one that grew large. 0 for models
// without an overload (their workspaces are small).
template <class W>
std::size_t workspace_bytes(const W&) {
  return 0;
}

template <class T>
std::size_t workspace_bytes(const SecondOrderWorkspace<MLP<T>>& ws) {
  std::size_t count = static_cast<std::size_t>(ws.r.size() + ws.base.rowsq.size() + ws.hu.size());
  for (const auto* v : {&ws.base.Z, &ws.base.A, &ws.base.Delta, &ws.G, &ws.Delta, &ws.RZ, &ws.RA,
                        &ws.RG, &ws.RDelta, &ws.d, &ws.P, &ws.dbar, &ws.Pbar, &ws.Abar, &ws.D1bar})
    for (const auto& M : *v) count += static_cast<std::size_t>(M.size());
  for (const auto& v : ws.base.in_sq) count += static_cast<std::size_t>(v.size());
  return count * sizeof(T);
}

namespace so_detail {

// act'' is zero for these (relu: almost everywhere), so their curvature terms are skipped.
constexpr bool curved(Activation a) { return a != Activation::identity && a != Activation::relu; }

template <class T>
void size_layers(std::vector<RowMat<T>>& v, const MLP<T>& m, Index rows, bool in_width) {
  const auto& ls = m.layers();
  v.resize(ls.size());
  for (std::size_t l = 0; l < ls.size(); ++l) v[l].resize(rows, in_width ? ls[l].in : ls[l].out);
}

template <class T>
void prepare(const MLP<T>& m, SecondOrderWorkspace<MLP<T>>& ws, Index rows) {
  // A workspace may be reused with another model (bindings cache one per thread): check shapes.
  const auto& ls = m.layers();
  bool same = ws.rows == rows && ws.P.size() == ls.size();
  for (std::size_t l = 0; same && l < ls.size(); ++l)
    same = ws.G[l].cols() == ls[l].out && ws.P[l].cols() == ls[l].in;
  if (same) return;
  ws.base.rows = -1;  // MLP::prepare checks only the row count
  for (auto* v :
       {&ws.G, &ws.Delta, &ws.RZ, &ws.RA, &ws.RG, &ws.RDelta, &ws.d, &ws.dbar, &ws.Abar, &ws.D1bar})
    size_layers(*v, m, rows, false);
  size_layers(ws.P, m, rows, true);
  size_layers(ws.Pbar, m, rows, true);
  ws.r.resize(rows);
  ws.rows = rows;
}

// Input of layer l: X or A_{l-1} (a view, no copy).
template <class T>
MatRef<T> layer_input(const SecondOrderWorkspace<MLP<T>>& ws, const MatRef<T>& X, std::size_t l) {
  return l == 0 ? X : MatRef<T>(ws.base.A[l - 1]);
}

// The forward pass into ws.base, the workspace sized for X first.
template <class T>
void forward(const MLP<T>& m, const T* theta, const MatRef<T>& X,
             SecondOrderWorkspace<MLP<T>>& ws) {
  prepare(m, ws, X.rows());
  m.forward(theta, X, ws.base);
}

// f(i, k, as, act) over the entries of layer l's (rows x out) matrices: packets along each row,
// then its tail one entry at a time (as: kernels.hpp); act is the layer's activation as a
// compile-time tag, so that the loop has no switch.
template <class T, class F>
void for_each_entry(const MLP<T>& m, std::size_t l, Index rows, F f) {
  with_activation(m.layers()[l].act, [&](auto act) {
    for (Index i = 0; i < rows; ++i)
      for_each_packet<T>(m.layers()[l].out, [&](Index k, auto as) { f(i, k, as, act); });
  });
}

// out = M * act_l'(Z_l), act' formed on the fly, and colsum = the column sums of out unless null,
// in one pass.
template <class T>
void times_act_derivative(const MLP<T>& m, const SecondOrderWorkspace<MLP<T>>& ws, std::size_t l,
                          const RowMat<T>& M, RowMat<T>& out, typename MLP<T>::Scalar* colsum) {
  using namespace Eigen::internal;
  const Index cols = M.cols();
  const T *z = ws.base.Z[l].data(), *a = ws.base.A[l].data();
  if (colsum) std::fill(colsum, colsum + cols, T(0));
  for_each_entry(m, l, M.rows(), [&](Index i, Index k, auto as, auto act) {
    const Index at = i * cols + k;
    const auto v =
        times_derivative<act.value>(load(as, M.data() + at), load(as, z + at), load(as, a + at));
    pstoreu(out.data() + at, v);
    if (colsum) pstoreu(colsum + k, padd(load(as, colsum + k), v));
  });
}

// From G_last (set by the caller): Delta_l and G_l of every layer; grad = J^T G_last if non-null.
template <class T>
void backward(const MLP<T>& m, const T* theta, const MatRef<T>& X, SecondOrderWorkspace<MLP<T>>& ws,
              T* grad) {
  for (std::size_t l = m.layers().size(); l-- > 0;) {
    const auto& ly = m.layers()[l];
    T* bias_grad = grad && ly.bias ? grad + ly.b_offset : nullptr;
    times_act_derivative(m, ws, l, ws.G[l], ws.Delta[l], bias_grad);
    if (grad)
      MatMap<T>(grad + ly.w_offset, ly.out, ly.in).noalias() =
          ws.Delta[l].transpose() * layer_input(ws, X, l);
    if (l > 0)
      assign_product(ws.G[l - 1], ws.Delta[l], ConstMatMap<T>(theta + ly.w_offset, ly.out, ly.in));
  }
}

// Forward tangents RZ_l, RA_l along u (after a forward pass): the bias c_l enters with the
// product (affine_product), act' in one pass after it.
template <class T>
void tangent(const MLP<T>& m, const T* theta, const T* u, const MatRef<T>& X,
             SecondOrderWorkspace<MLP<T>>& ws) {
  using namespace Eigen::internal;
  for (std::size_t l = 0; l < m.layers().size(); ++l) {
    const auto& ly = m.layers()[l];
    RowMat<T>& RZ = ws.RZ[l];
    affine_product(RZ, layer_input(ws, X, l),
                   ConstMatMap<T>(u + ly.w_offset, ly.out, ly.in).transpose(),
                   ly.bias ? u + ly.b_offset : nullptr);
    if (l > 0)
      add_product(RZ, ws.RA[l - 1], ConstMatMap<T>(theta + ly.w_offset, ly.out, ly.in).transpose());
    const T *rz = RZ.data(), *z = ws.base.Z[l].data(), *a = ws.base.A[l].data();
    T* ra = ws.RA[l].data();
    for_each_entry(m, l, RZ.rows(), [&](Index i, Index k, auto as, auto act) {
      const Index at = i * ly.out + k;
      pstoreu(ra + at,
              times_derivative<act.value>(load(as, rz + at), load(as, z + at), load(as, a + at)));
    });
  }
}

}  // namespace so_detail

// ---- MLP primitives ---------------------------------------------------------------------------

// A batch X or Y for MLP<T>. T is not deduced from it (only from the model), so that a RowMat
// argument converts to the Ref.
template <class T>
using BatchRef = MatRef<ScalarOf<MLP<T>>>;

// J v as an (n x out) matrix: forward pass on X and forward tangents along v.
template <class T>
const RowMat<T>& jvp(const MLP<T>& m, const T* theta, const BatchRef<T>& X, const T* v,
                     SecondOrderWorkspace<MLP<T>>& ws) {
  so_detail::forward(m, theta, X, ws);
  so_detail::tangent(m, theta, v, X, ws);
  return ws.RA.back();
}

// out = J^T S for an (n x out) S (an expression is fine if it does not read ws.G), after jvp() or a
// forward pass on the same X.
template <class T, class Seed>
void vjp(const MLP<T>& m, const T* theta, const BatchRef<T>& X, const Seed& S,
         SecondOrderWorkspace<MLP<T>>& ws, T* out) {
  ws.G.back() = S;
  so_detail::backward(m, theta, X, ws, out);
}

// Returns L; writes grad L into `grad` (skipped if null) and H u into `hu`. `u` may point to
// `grad` (u is read only after the gradient is complete: the EGR direction uses u = g); `hu`
// must not overlap `u` or `grad`.
template <class T>
double loss_grad_hvp(const MLP<T>& m, const T* theta, const BatchRef<T>& X, const BatchRef<T>& Y,
                     const LossNorm& norm, const T* u, SecondOrderWorkspace<MLP<T>>& ws, T* grad,
                     T* hu) {
  const auto& ls = m.layers();
  const std::size_t last = ls.size() - 1;
  const double c = norm.scale(X.rows());
  const T two_c = static_cast<T>(2 * c);
  so_detail::forward(m, theta, X, ws);
  ws.G[last] = ws.base.A[last] - Y;
  const double value = c * static_cast<double>(ws.G[last].squaredNorm());
  ws.G[last] *= two_c;
  so_detail::backward(m, theta, X, ws, grad);
  so_detail::tangent(m, theta, u, X, ws);
  ws.RG[last] = two_c * ws.RA[last];
  for (std::size_t l = last + 1; l-- > 0;) {
    const auto& ly = ls[l];
    RowMat<T>& RD = ws.RDelta[l];
    // RD = RG * act' + G * act'' * RZ (the residual, second-derivative term: absent from the
    // Gauss-Newton product), and the bias entries of H u as its column sums, in one pass.
    T* hb = ly.bias ? hu + ly.b_offset : nullptr;
    if (hb) std::fill(hb, hb + ly.out, T(0));
    const T *z = ws.base.Z[l].data(), *a = ws.base.A[l].data();
    const T *rg = ws.RG[l].data(), *g = ws.G[l].data(), *rz = ws.RZ[l].data();
    so_detail::for_each_entry(m, l, RD.rows(), [&](Index i, Index k, auto as, auto act) {
      using namespace Eigen::internal;
      const Index at = i * ly.out + k;
      const auto zk = load(as, z + at), ak = load(as, a + at);
      auto v = times_derivative<act.value>(load(as, rg + at), zk, ak);
      if constexpr (so_detail::curved(act.value))
        v = padd(v, pmul(pmul(load(as, g + at), second_derivative<act.value>(zk, ak)),
                         load(as, rz + at)));
      pstoreu(RD.data() + at, v);
      if (hb) pstoreu(hb + k, padd(load(as, hb + k), v));
    });
    MatMap<T> hW(hu + ly.w_offset, ly.out, ly.in);
    hW.noalias() = RD.transpose() * so_detail::layer_input(ws, X, l);
    if (l > 0) hW.noalias() += ws.Delta[l].transpose() * ws.RA[l - 1];
    if (l > 0) {
      assign_product(ws.RG[l - 1], RD, ConstMatMap<T>(theta + ly.w_offset, ly.out, ly.in));
      add_product(ws.RG[l - 1], ws.Delta[l], ConstMatMap<T>(u + ly.w_offset, ly.out, ly.in));
    }
  }
  return value;
}

// Returns R = sum_i sum_o ||d f_o(x_i)/d theta||^2; writes grad R into `grad` unless null (R
// alone is MLP::add_regularizer's per-sample norm trick).
//
// Per output o, with d_l = df_o/dZ_l (d_last = e_o^T act_last'(Z_last), d_{l-1} = P_l * act'_{l-1},
// P_l = d_l W_l) and s_l,i = ||a_{l-1,i}||^2 + 1[bias_l], the per-layer norm trick gives
// R_o = sum_l sum_i s_l,i ||d_l,i||^2. Reverse mode through that program: bottom-up through the
// d recursion (dbar_l = 2 s_l d_l + Pbar_l W_l^T, Pbar_l = dbar_{l-1} * act'_{l-1},
// dR/dW_l += d_l^T Pbar_l, dR/d act'_{l-1} += dbar_{l-1} * P_l,
// dR/dA_{l-1} += 2 ||d_l||^2 A_{l-1}),
// accumulated over outputs; then once top-down through the forward pass with
// dR/dZ_l = dR/dA_l * act_l' + dR/d act_l' * act_l''. The output bias enters only through act'',
// so with an identity output its gradient is exactly 0.
template <class T>
double regularizer_and_grad(const MLP<T>& m, const T* theta, const BatchRef<T>& X,
                            SecondOrderWorkspace<MLP<T>>& ws, T* grad) {
  if (!grad) {  // R alone: the per-sample norm trick, its passes fused (mlp.hpp)
    so_detail::forward(m, theta, X, ws);
    ws.r.setZero();
    m.add_regularizer(theta, X, ws.base, ws.r);
    return ws.r.template cast<double>().sum();
  }
  const auto& ls = m.layers();
  const std::size_t L = ls.size();
  so_detail::forward(m, theta, X, ws);
  m.input_norms(X, ws.base);
  const std::vector<Vec<T>>& s = ws.base.in_sq;
  Vec<T>& rowsq = ws.base.rowsq;
  ws.r.setZero();
  VecMap<T>(grad, m.n_params()).setZero();
  // Sums over outputs: the first output assigns them (below the top layer), so only the top
  // layer's are zeroed. Abar_last stays 0: R depends on A_last only through act'.
  ws.Abar[L - 1].setZero();
  ws.D1bar[L - 1].setZero();
  auto W = [&](std::size_t l) {
    return ConstMatMap<T>(theta + ls[l].w_offset, ls[l].out, ls[l].in);
  };
  RowMat<T>& top_d1 = ws.base.D;  // act'_last(Z_last)
  top_d1.resize(X.rows(), m.n_out());
  activation_derivative<T>(ls[L - 1].act, ws.base.Z[L - 1], ws.base.A[L - 1], top_d1);
  for (Index o = 0; o < m.n_out(); ++o) {
    // dst = e for the first output, dst += e for the others.
    const auto accumulate = [first = o == 0](auto&& dst, const auto& e) {
      if (first)
        dst = e;
      else
        dst += e;
    };
    ws.d[L - 1].setZero();
    ws.d[L - 1].col(o) = top_d1.col(o);
    for (std::size_t l = L - 1; l > 0; --l) {
      assign_product(ws.P[l], ws.d[l], W(l));
      so_detail::times_act_derivative(m, ws, l - 1, ws.P[l], ws.d[l - 1], nullptr);
    }
    for (std::size_t l = 0; l < L; ++l) {
      rowsq = ws.d[l].rowwise().squaredNorm();
      ws.r.array() += s[l].array() * rowsq.array();
      if (l > 0)
        accumulate(ws.Abar[l - 1].noalias(), (T(2) * rowsq).asDiagonal() * ws.base.A[l - 1]);
    }
    for (std::size_t l = 0; l < L; ++l) {
      ws.dbar[l].noalias() = (T(2) * s[l]).asDiagonal() * ws.d[l];
      if (l == 0) continue;
      so_detail::times_act_derivative(m, ws, l - 1, ws.dbar[l - 1], ws.Pbar[l], nullptr);
      if (so_detail::curved(ls[l - 1].act))
        accumulate(ws.D1bar[l - 1].array(), ws.dbar[l - 1].array() * ws.P[l].array());
      MatMap<T>(grad + ls[l].w_offset, ls[l].out, ls[l].in).noalias() +=
          ws.d[l].transpose() * ws.Pbar[l];
      ws.dbar[l].noalias() += ws.Pbar[l] * W(l).transpose();
    }
    if (so_detail::curved(ls[L - 1].act)) ws.D1bar[L - 1].col(o) += ws.dbar[L - 1].col(o);
  }
  for (std::size_t l = L; l-- > 0;) {
    const auto& ly = ls[l];
    // dR/dA_l becomes dR/dZ_l = dR/dA_l * act' + dR/d act' * act'' in place, with the bias
    // gradient as its column sums, in one pass.
    RowMat<T>& Zbar = ws.Abar[l];
    T* bias_grad = ly.bias ? grad + ly.b_offset : nullptr;
    const T *z = ws.base.Z[l].data(), *a = ws.base.A[l].data(), *d1bar = ws.D1bar[l].data();
    so_detail::for_each_entry(m, l, Zbar.rows(), [&](Index i, Index k, auto as, auto act) {
      using namespace Eigen::internal;
      const Index at = i * ly.out + k;
      const auto zk = load(as, z + at), ak = load(as, a + at);
      auto v = times_derivative<act.value>(load(as, Zbar.data() + at), zk, ak);
      if constexpr (so_detail::curved(act.value))
        v = padd(v, pmul(load(as, d1bar + at), second_derivative<act.value>(zk, ak)));
      pstoreu(Zbar.data() + at, v);
      if (bias_grad) pstoreu(bias_grad + k, padd(load(as, bias_grad + k), v));
    });
    MatMap<T>(grad + ly.w_offset, ly.out, ly.in).noalias() +=
        Zbar.transpose() * so_detail::layer_input(ws, X, l);
    if (l > 0) add_product(ws.Abar[l - 1], Zbar, W(l));
  }
  return ws.r.template cast<double>().sum();
}

// ---- generic over models providing jvp, vjp and loss_grad_hvp ---------------------------------

// H v of the loss (gradient not formed).
template <class Model>
void hvp(const Model& model, const ScalarOf<Model>* theta, const MatRef<ScalarOf<Model>>& X,
         const MatRef<ScalarOf<Model>>& Y, const LossNorm& norm, const ScalarOf<Model>* v,
         SecondOrderWorkspace<Model>& ws, ScalarOf<Model>* out) {
  loss_grad_hvp(model, theta, X, Y, norm, v, ws, static_cast<ScalarOf<Model>*>(nullptr), out);
}

// Gauss-Newton product G v = 2c J^T (J v); independent of the targets.
template <class Model>
void gnvp(const Model& model, const ScalarOf<Model>* theta, const MatRef<ScalarOf<Model>>& X,
          const LossNorm& norm, const ScalarOf<Model>* v, SecondOrderWorkspace<Model>& ws,
          ScalarOf<Model>* out) {
  using T = ScalarOf<Model>;
  const T two_c = static_cast<T>(2 * norm.scale(X.rows()));
  const auto& Jv = jvp(model, theta, X, v, ws);
  vjp(model, theta, X, two_c * Jv, ws, out);
}

// Writes dir = g + 2 mu H g = grad [L + mu ||grad L||^2] (EGR step direction) and returns L.
// Cost: one forward-backward plus one R-op pass.
template <class Model>
double egr_direction(const Model& model, const ScalarOf<Model>* theta,
                     const MatRef<ScalarOf<Model>>& X, const MatRef<ScalarOf<Model>>& Y,
                     const LossNorm& norm, double mu, SecondOrderWorkspace<Model>& ws,
                     ScalarOf<Model>* dir) {
  using T = ScalarOf<Model>;
  ws.hu.resize(model.n_params());
  const double value = loss_grad_hvp(model, theta, X, Y, norm, dir, ws, dir, ws.hu.data());
  VecMap<T>(dir, model.n_params()) += static_cast<T>(2 * mu) * ws.hu;
  return value;
}

}  // namespace implicitreg
