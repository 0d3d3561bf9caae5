// The model concept: what a model type must provide to be simulated, differentiated and bound.
//
// Every model is a class template on the scalar T (float or double) used as a template parameter
// (Simulation<Model>, the functions of objective.hpp and second_order.hpp, bind_model_methods in
// bindings.cpp); there is no virtual dispatch in a step. A model `M` provides:
//
//   using Scalar = T;
//   struct Workspace;                        buffers of one batch size, reused across calls
//   Index n_params() const;                  length of the flat parameter vector theta
//   Index n_in() const;  Index n_out() const;  one sample is a row of n_in numbers; f has n_out
//   void forward(const T* theta, const MatRef<T>& X, Workspace&) const;
//   const RowMat<T>& outputs(const Workspace&) const;          (rows x n_out), after forward()
//   template <class DF> void seed_output(const DF& dF, Workspace&) const;   dF = dL/dF
//   void backward(const T* theta, const MatRef<T>& X, Workspace&, T* grad) const;
//                                           grad = J^T dF (overwritten), after forward + seed
//   void add_regularizer(const T* theta, const MatRef<T>& X, Workspace&, Vec<T>& r) const;
//                                           r_i += sum_o ||d f_o(x_i)/d theta||^2, after forward
//   void jacobian(const T* theta, const MatRef<T>& X, Workspace&, MatMap<T>& J) const;
//                                           J (n*n_out x p), row i*n_out+o, after forward
//
// and, for the second-order functions (second_order.hpp), a specialisation of
// SecondOrderWorkspace<M> (with a member `Vec<T> hu`) and these free functions, found by ADL:
//
//   const RowMat<T>& jvp(const M&, theta, X, v, SecondOrderWorkspace<M>&);   J v, (n x n_out)
//   void vjp(const M&, theta, X, S, SecondOrderWorkspace<M>&, T* out);       out = J^T S
//   double loss_grad_hvp(const M&, theta, X, Y, LossNorm, u, ws, T* grad, T* hu);
//                                           L; grad L (if grad); H u. u may alias grad.
//   double regularizer_and_grad(const M&, theta, X, ws, T* grad);   R and grad R (if grad)
//
// Optional, detected by Simulation (simulation.hpp) and used in long runs when present:
//
//   void sgd_step(T* theta, const MatRef<T>& X, const MatRef<T>& Y, T two_c, Workspace&,
//                 T lr) const;
//                                           theta -= lr * J^T two_c (F - Y), updating in the
//                                           backward pass (MLP); with it
//   template <class Sample> void sgd_steps(T* theta, std::int64_t n, Sample sample, T two_c,
//                                          Workspace&) const;
//                                           n one-sample steps, sample(j) -> OneSample{x, y, lr}
//   void residual_backward(theta, X, Y, T two_c, Workspace&, T* grad) const;
//                                           forward, residual and backward in one pass (quadratic)
//   RowMat<T> pack(const RowMat<T>& X) const;  M packed() const;
//                                           the data once in a faster form, and the model that
//                                           reads it (symmetric matrix sensing)
//
// hvp, gnvp and egr_direction are written once over these. Implementations:
//   mlp.hpp + second_order.hpp         MLP<T> (per-layer backprop, Pearlmutter R-op)
//   quadratic.hpp                      QuadraticModel<Derived, T>: f(x) = <x, phi(theta)> with
//                                      phi quadratic; implements all of the above from three
//                                      model-specific maps (phi, its tangent, its pull-back)
//   matrix_sensing.hpp, diagonal_linear.hpp   the two QuadraticModel models
//
// Adding a model: write the class and these functions (or derive from QuadraticModel), bind it
// in bindings.cpp with bind_model_methods<M>, and add a Python facade in models.py.
#pragma once

#include "config.hpp"
