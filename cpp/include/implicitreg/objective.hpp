// Full-data quantities of any model: squared loss (normalisation in loss.hpp), its gradient, and
// the implicit regularizer R(theta) = sum_i sum_o ||d f_o(x_i)/d theta||^2.
#pragma once

#include "config.hpp"
#include "loss.hpp"

namespace implicitreg {

template <class Model>
using ScalarOf = typename Model::Scalar;

// L = c * sum ||F - Y||^2 after a forward pass on X.
template <class Model>
double loss_value(const Model& model, const ScalarOf<Model>* theta,
                  const MatRef<ScalarOf<Model>>& X, const MatRef<ScalarOf<Model>>& Y,
                  const LossNorm& norm, typename Model::Workspace& ws) {
  model.forward(theta, X, ws);
  const double c = norm.scale(X.rows());
  return c * static_cast<double>((model.outputs(ws) - Y).squaredNorm());
}

// Writes grad L into `grad` (n_params) and returns L.
template <class Model>
double loss_and_grad(const Model& model, const ScalarOf<Model>* theta,
                     const MatRef<ScalarOf<Model>>& X, const MatRef<ScalarOf<Model>>& Y,
                     const LossNorm& norm, typename Model::Workspace& ws, ScalarOf<Model>* grad) {
  using T = ScalarOf<Model>;
  model.forward(theta, X, ws);
  const double c = norm.scale(X.rows());
  RowMat<T> residual = model.outputs(ws) - Y;
  const double value = c * static_cast<double>(residual.squaredNorm());
  residual *= static_cast<T>(2 * c);
  model.seed_output(residual, ws);
  model.backward(theta, X, ws, grad);
  return value;
}

// Per-sample R_i (n) and their sum.
template <class Model>
Vec<ScalarOf<Model>> regularizer_per_sample(const Model& model, const ScalarOf<Model>* theta,
                                            const MatRef<ScalarOf<Model>>& X,
                                            typename Model::Workspace& ws) {
  model.forward(theta, X, ws);
  Vec<ScalarOf<Model>> r = Vec<ScalarOf<Model>>::Zero(X.rows());
  model.add_regularizer(theta, X, ws, r);
  return r;
}

}  // namespace implicitreg
