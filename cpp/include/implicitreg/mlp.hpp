// Multilayer perceptron with hand-coded per-sample backprop.
//
// Layers l = 0..L-1 map a_{l} (in_l) to a_{l+1} = act_l(W_l a_l + b_l) (out_l); the last layer's
// activation is the output activation (identity by default). A batch is a row-major matrix with
// one sample per row, so a layer computes Z = A W^T + 1 b^T as torch.nn.Linear does.
//
// Flat parameter layout (theta): for each layer in order, W_l row-major (out_l x in_l), then b_l
// (out_l) if the layer has a bias: the order of torch's nn.Sequential.parameters().
#pragma once

#include <stdexcept>
#include <type_traits>
#include <vector>

#include "activation.hpp"
#include "config.hpp"
#include "kernels.hpp"
#include "products.hpp"

namespace implicitreg {

template <class T>
class MLP {
 public:
  using Scalar = T;

  struct Layer {
    Index in, out;
    Activation act;
    bool bias;
    Index w_offset, b_offset;  // b_offset = -1 without bias
  };

  // Buffers for one batch size; reused across calls so that a step allocates nothing.
  struct Workspace {
    Index rows = -1;
    std::vector<RowMat<T>> Z, A, Delta;  // per layer: pre-activation, activation, d(.)/dZ
    RowMat<T> D;                         // scratch for act'(Z)
    std::vector<Vec<T>> in_sq;           // regularizer: ||a_{l-1,i}||^2 + 1[bias_l] per layer
    Vec<T> rowsq;                        // regularizer: ||Delta_{l,i}||^2
    Vec<T> hidden, seed;  // 1-m-1 relu step: relu(z) of the hidden layer (rows x m); d(.)/df
  };

  MLP(const std::vector<Index>& sizes, const std::vector<Activation>& acts,
      const std::vector<bool>& bias) {
    if (sizes.size() < 2) throw std::invalid_argument("sizes needs at least input and output size");
    const std::size_t L = sizes.size() - 1;
    if (acts.size() != L || bias.size() != L)
      throw std::invalid_argument("one activation and one bias flag per layer");
    Index off = 0;
    for (std::size_t l = 0; l < L; ++l) {
      Layer layer{sizes[l], sizes[l + 1], acts[l], bias[l], off, -1};
      if (layer.in < 1 || layer.out < 1) throw std::invalid_argument("layer sizes must be >= 1");
      off += layer.in * layer.out;
      if (layer.bias) {
        layer.b_offset = off;
        off += layer.out;
      }
      layers_.push_back(layer);
    }
    n_params_ = off;
  }

  Index n_params() const { return n_params_; }
  Index n_in() const { return layers_.front().in; }
  Index n_out() const { return layers_.back().out; }
  const std::vector<Layer>& layers() const { return layers_; }

  // Sizes the buffers for `rows` samples; a workspace last used by another MLP is resized too.
  void prepare(Workspace& ws, Index rows) const {
    const std::size_t L = layers_.size();
    if (ws.rows == rows && ws.Z.size() == L) {
      bool same = true;
      for (std::size_t l = 0; l < L; ++l) same = same && ws.Z[l].cols() == layers_[l].out;
      if (same) return;
    }
    ws.Z.resize(L);
    ws.A.resize(L);
    ws.Delta.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
      ws.Z[l].resize(rows, layers_[l].out);
      ws.A[l].resize(rows, layers_[l].out);
      ws.Delta[l].resize(rows, layers_[l].out);
    }
    ws.rows = rows;
  }

  // Outputs of the last forward pass, (rows x n_out).
  const RowMat<T>& outputs(const Workspace& ws) const { return ws.A.back(); }

  void forward(const T* theta, const MatRef<T>& X, Workspace& ws) const {
    prepare(ws, X.rows());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const Layer& ly = layers_[l];
      RowMat<T>& Z = ws.Z[l];
      const bool relu = ly.act == Activation::relu;
      // Thin layers (width-1 input or output, as in small regression nets) are an axpy or a dot
      // per row, relu in the same pass: a GEMM with inner size 1 costs more than it computes.
      const bool thin = ly.in == 1 || ly.out == 1;
      if (thin) {
        const T* in = l == 0 ? X.data() : ws.A[l - 1].data();
        const Index stride = l == 0 ? X.outerStride() : ly.in;
        for (Index i = 0; i < X.rows(); ++i)
          thin_forward_row(ly, theta, in + i * stride, Z.row(i).data(),
                           relu ? ws.A[l].row(i).data() : nullptr);
        if (!relu) apply_activation<T>(ly.act, Z, ws.A[l]);
      } else {
        ConstMatMap<T> W(theta + ly.w_offset, ly.out, ly.in);
        const T* b = ly.bias ? theta + ly.b_offset : nullptr;
        if (l == 0)
          affine_product(Z, X, W.transpose(), b);
        else
          affine_product(Z, ws.A[l - 1], W.transpose(), b);
        activate<T>(ly.act, Z, ws.A[l]);
      }
    }
  }

  // Seeds the backward pass: Delta_last = dF (d loss / d outputs) times act'_last(Z_last).
  template <class DF>
  void seed_output(const DF& dF, Workspace& ws) const {
    const std::size_t last = layers_.size() - 1;
    if (layers_[last].act == Activation::identity) {
      ws.Delta[last] = dF;
    } else {
      ws.D.resize(ws.Z[last].rows(), ws.Z[last].cols());
      activation_derivative<T>(layers_[last].act, ws.Z[last], ws.A[last], ws.D);
      ws.Delta[last] = dF.cwiseProduct(ws.D);
    }
  }

  // Delta_{l-1} = (Delta_l W_l) * act'_{l-1}(Z_{l-1}), elementwise.
  void propagate(const T* theta, std::size_t l, Workspace& ws) const {
    delta_below(theta, l, ws, nullptr);
  }

  // grad = sum over rows of d(<Delta_seed, F>)/d theta, after forward() and seed_output().
  void backward(const T* theta, const MatRef<T>& X, Workspace& ws, T* grad) const {
    backward_into(theta, X, ws, GradSink{grad});
  }

  // One gradient step on the squared loss c * sum_i ||f(x_i) - y_i||^2 (two_c = 2c): theta -=
  // lr * grad, without a gradient buffer. Each layer's weights are updated right after they
  // propagated Delta to the layer below; a two-layer net with scalar input and output (the
  // 1-D regression nets) takes one sample in two passes over its hidden units. Element by element
  // the same arithmetic as forward(), seed_output(two_c (F - Y)), backward(), `theta -= lr grad`.
  // Leaves the workspace's Delta unspecified.
  void sgd_step(T* theta, const MatRef<T>& X, const MatRef<T>& Y, T two_c, Workspace& ws,
                T lr) const {
    if (scalar_two_layer()) {
      scalar_two_layer_step(theta, X, Y, two_c, ws, lr);
      return;
    }
    forward(theta, X, ws);
    seed_output(two_c * (outputs(ws) - Y), ws);
    backward_into(theta, X, ws, StepSink{theta, lr});
  }

  // One sample of a run of one-sample steps (sgd_steps): its input row, label, learning rate.
  struct OneSample {
    const T* x;
    T y, lr;
  };

  // n one-sample SGD steps, step j on sample(j) (called once per step, in order): the
  // numbers of n sgd_step calls, bit for bit. A 1-m-1 relu net takes them fused (relu_steps).
  template <class Sample>
  void sgd_steps(T* theta, std::int64_t n, Sample sample, T two_c, Workspace& ws) const {
    if (n <= 0) return;
    if (scalar_two_layer() && layers_[0].act == Activation::relu) {
      if (layers_[0].bias)
        relu_steps<true>(theta, n, sample, two_c, ws);
      else
        relu_steps<false>(theta, n, sample, two_c, ws);
      return;
    }
    for (std::int64_t j = 0; j < n; ++j) {
      const OneSample s = sample(j);
      sgd_step(theta, MatRef<T>(ConstMatMap<T>(s.x, 1, n_in())),
               MatRef<T>(ConstMatMap<T>(&s.y, 1, 1)), two_c, ws, s.lr);
    }
  }

  // ws.in_sq[l](i) = ||a_{l-1,i}||^2 + 1[bias_l] (a_{-1} = x): the norm trick's input factor,
  // the same for every output. Requires forward().
  void input_norms(const MatRef<T>& X, Workspace& ws) const {
    ws.in_sq.resize(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      ws.in_sq[l] =
          l == 0 ? Vec<T>(X.rowwise().squaredNorm()) : ws.A[l - 1].rowwise().squaredNorm();
      if (layers_[l].bias) ws.in_sq[l].array() += T(1);
    }
  }

  // Per-sample R_i = sum_o ||d f_o(x_i)/d theta||^2 added into r (n), by the per-layer norm trick
  // ||grad_{W_l} f||^2 + ||grad_{b_l} f||^2 = (||a_{l-1}||^2 + 1[bias]) ||delta_l||^2: no Jacobian.
  // Each layer's delta comes with its row norms from one pass (delta_below). Requires forward().
  void add_regularizer(const T* theta, const MatRef<T>& X, Workspace& ws, Vec<T>& r) const {
    const std::size_t last = layers_.size() - 1;
    input_norms(X, ws);
    ws.rowsq.resize(X.rows());
    ws.D.resize(X.rows(), n_out());  // act'_last(Z_last)
    activation_derivative<T>(layers_[last].act, ws.Z[last], ws.A[last], ws.D);
    RowMat<T>& top = ws.Delta[last];
    for (Index o = 0; o < n_out(); ++o) {
      top.setZero();  // delta_last = e_o act'_last(Z_last): column o only
      top.col(o) = ws.D.col(o);
      r.array() += ws.in_sq[last].array() * top.col(o).array().square();
      for (std::size_t l = last; l > 0; --l) {
        delta_below(theta, l, ws, ws.rowsq.data());
        r.array() += ws.in_sq[l - 1].array() * ws.rowsq.array();
      }
    }
  }

  // Per-sample Jacobian J (n*out x p), row i*out + o = d f_o(x_i) / d theta. Requires forward().
  void jacobian(const T* theta, const MatRef<T>& X, Workspace& ws, MatMap<T>& J) const {
    const std::size_t last = layers_.size() - 1;
    const Index n = X.rows(), out = n_out();
    RowMat<T> seed = RowMat<T>::Zero(n, out);
    for (Index o = 0; o < out; ++o) {
      seed.setZero();
      seed.col(o).setOnes();
      seed_output(seed, ws);
      for (std::size_t l = last + 1; l-- > 0;) {
        const Layer& ly = layers_[l];
        for (Index i = 0; i < n; ++i) {
          T* row = J.row(i * out + o).data();
          MatMap<T> gW(row + ly.w_offset, ly.out, ly.in);
          if (l == 0)
            gW.noalias() = ws.Delta[0].row(i).transpose() * X.row(i);
          else
            gW.noalias() = ws.Delta[l].row(i).transpose() * ws.A[l - 1].row(i);
          if (ly.bias) VecMap<T>(row + ly.b_offset, ly.out) = ws.Delta[l].row(i).transpose();
        }
        if (l > 0) propagate(theta, l, ws);
      }
    }
  }

 private:
  // ---- row kernels: the hot path of small nets ----------------------------------------------
  // Plain loops over contiguous rows, vectorised with `omp simd` or written on Eigen packets
  // (for_each_packet) where GCC would leave a branch per element (reductions too: a fixed
  // summation order per build, not -ffast-math).

  // Delta_{l-1} = (Delta_l W_l) * act'_{l-1}(Z_{l-1}), and its squared row norms into rowsq unless
  // null; the product (an outer product when layer l has one output) and act' in one pass.
  void delta_below(const T* theta, std::size_t l, Workspace& ws, T* rowsq) const {
    using namespace Eigen::internal;
    const Layer& ly = layers_[l];
    const T* W = theta + ly.w_offset;
    const RowMat<T>& D = ws.Delta[l];
    RowMat<T>& prev = ws.Delta[l - 1];
    if (ly.out == 1) {  // row i is Delta_l(i) W
      times_derivative_rows(l - 1, ws, rowsq, [&](Index i, Index k, auto as) {
        using P = typename decltype(as)::type;
        return pmul(pset1<P>(D(i, 0)), load(as, W + k));
      });
      return;
    }
    if (ly.in == 1)
      for (Index i = 0; i < D.rows(); ++i) prev(i, 0) = dot(W, D.row(i).data(), ly.out);
    else
      prev.noalias() = D * ConstMatMap<T>(W, ly.out, ly.in);
    times_derivative_rows(l - 1, ws, rowsq, [&](Index i, Index k, auto as) {
      return load(as, prev.data() + i * prev.cols() + k);
    });
  }

  // Delta_l(i, k) = m(i, k) * act_l'(Z_l(i, k)) with m(i, k, as) a packet (or one T) computed on
  // the fly (it may read Delta_l itself at (i, k)), and rowsq[i] = ||Delta_l(i, :)||^2 unless null.
  template <class M>
  void times_derivative_rows(std::size_t l, Workspace& ws, T* rowsq, M m) const {
    RowMat<T>& out = ws.Delta[l];
    const Index cols = out.cols();
    with_activation(layers_[l].act, [&](auto act) {
      for (Index i = 0; i < out.rows(); ++i) {
        const T *z = ws.Z[l].row(i).data(), *a = ws.A[l].row(i).data();
        T* o = out.row(i).data();
        const auto entry = [&](Index k, auto as) {
          const auto v = times_derivative<act.value>(m(i, k, as), load(as, z + k), load(as, a + k));
          Eigen::internal::pstoreu(o + k, v);
          return v;
        };
        if (rowsq)
          rowsq[i] = sum_with<T>(cols, [&](Index k, auto as) {
            const auto v = entry(k, as);
            return Eigen::internal::pmul(v, v);
          });
        else
          for_each_packet<T>(cols, entry);
      }
    });
  }

  // z = W a + b for one input row a of a thin layer (in == 1 or out == 1); also a_relu =
  // max(z, 0) if a_relu is given.
  static void thin_forward_row(const Layer& ly, const T* theta, const T* a, T* z, T* a_relu) {
    const T* W = theta + ly.w_offset;
    const T* b = ly.bias ? theta + ly.b_offset : nullptr;
    if (ly.out == 1) {
      z[0] = dot(W, a, ly.in);
      if (b) z[0] += b[0];
      if (a_relu) a_relu[0] = z[0] > T(0) ? z[0] : T(0);
      return;
    }
    const T a0 = a[0];
    if (b && a_relu) {
#pragma omp simd
      for (Index j = 0; j < ly.out; ++j) {
        const T v = W[j] * a0 + b[j];
        z[j] = v;
        a_relu[j] = v > T(0) ? v : T(0);
      }
      return;
    }
    if (b) {
#pragma omp simd
      for (Index j = 0; j < ly.out; ++j) z[j] = W[j] * a0 + b[j];
    } else {
#pragma omp simd
      for (Index j = 0; j < ly.out; ++j) z[j] = W[j] * a0;
    }
    if (a_relu) {
#pragma omp simd
      for (Index j = 0; j < ly.out; ++j) a_relu[j] = z[j] > T(0) ? z[j] : T(0);
    }
  }

  // 1 -> m -> 1 with a linear output: f(x) = sum_j v_j act(w_j x + b_j) + c.
  bool scalar_two_layer() const {
    return layers_.size() == 2 && layers_[0].in == 1 && layers_[1].out == 1 &&
           layers_[1].act == Activation::identity;
  }

  // sgd_step for a scalar_two_layer() net on B samples: f and d_i = two_c (f_i - y_i), then one
  // pass over the hidden units that propagates d to them (delta_ik = d_i v_k act'(z_ik)), sums
  // the parameters' gradients over the samples in order and updates v, w and b together (delta
  // from v before v is updated). Relu units and f come from one pass per sample that stores only
  // relu(z). One sample: element by element the arithmetic of the layer-by-layer path; more:
  // the same up to the order of the sums over samples (round-off).
  void scalar_two_layer_step(T* theta, const MatRef<T>& X, const MatRef<T>& Y, T two_c,
                             Workspace& ws, T lr) const {
    const bool relu = layers_[0].act == Activation::relu, bias = layers_[0].bias;
    const bool scaled = !relu && layers_[0].act != Activation::identity;  // needs act'(z_j)
    // The kind of unit and the bias fixed at compile time: no test inside the loops.
    // One sample compiled apart: its loops over the samples vanish and d stays in a register.
    const auto step = [&](auto relu_c, auto scaled_c, auto bias_c) {
      constexpr bool R = decltype(relu_c)::value, S = decltype(scaled_c)::value,
                     B = decltype(bias_c)::value;
      if (X.rows() == 1)
        scalar_two_layer_step<R, S, B, true>(theta, X, Y, two_c, ws, lr);
      else
        scalar_two_layer_step<R, S, B, false>(theta, X, Y, two_c, ws, lr);
    };
    const std::true_type yes{};
    const std::false_type no{};
    if (relu)
      bias ? step(yes, no, yes) : step(yes, no, no);
    else if (scaled)
      bias ? step(no, yes, yes) : step(no, yes, no);
    else
      bias ? step(no, no, yes) : step(no, no, no);
  }

  template <bool Relu, bool Scaled, bool Bias, bool One>
  void scalar_two_layer_step(T* theta, const MatRef<T>& X, const MatRef<T>& Y, T two_c,
                             Workspace& ws, T lr) const {
    using namespace Eigen::internal;
    const Layer &hidden = layers_[0], &out = layers_[1];
    const Index m = hidden.out, B = One ? 1 : X.rows(), xs = X.outerStride();
    const T* x = X.data();  // x_i = x[i * xs]
    T *w = theta + hidden.w_offset, *v = theta + out.w_offset;
    T* b = Bias ? theta + hidden.b_offset : nullptr;
    T d_one;
    if (!One && ws.seed.size() != B) ws.seed.resize(B);
    T* d = One ? &d_one : ws.seed.data();
    const T* a;  // a_ik = a[i * m + k]
    const T* act_d = nullptr;
    if constexpr (Relu) {
      if (ws.hidden.size() != B * m) ws.hidden.resize(B * m);
      for (Index i = 0; i < B; ++i) {
        T* relu_out = ws.hidden.data() + i * m;
        const T xi = x[i * xs];
        // Lambdas capture by value: a reference to a local could alias the stores, and the loop
        // would reload it after each one. z_j and relu(z_j) as thin_forward_row computes them.
        T f = dot_with(v, m, [=](Index k, auto as) {
          const auto relu_z = relu_unit<Bias>(as, load(as, w + k), b, k, xi);
          pstoreu(relu_out + k, relu_z);
          return relu_z;
        });
        if (out.bias) f += theta[out.b_offset];
        d[i] = two_c * (f - Y(i, 0));
      }
      a = ws.hidden.data();
    } else {
      forward(theta, X, ws);
      for (Index i = 0; i < B; ++i) d[i] = two_c * (ws.A[1](i, 0) - Y(i, 0));
      a = ws.A[0].data();
      if constexpr (Scaled) {
        ws.D.resize(B, m);
        activation_derivative<T>(hidden.act, ws.Z[0], ws.A[0], ws.D);
        act_d = ws.D.data();
      }
    }
    const HiddenUpdate u{v, w, b, a, act_d, d, x, m, B, xs, d[0], x[0], lr};
    for_each_packet<T, true>(m, [=](Index k, auto as) {
      const auto n = update_packet<Relu, Scaled, Bias, One>(k, as, u);
      store_packet<Bias>(k, u, n);
    });
    if (out.bias) {
      T gc = d[0];
      for (Index i = 1; i < B; ++i) gc += d[i];
      theta[out.b_offset] -= lr * gc;
    }
  }

  // relu(w x + b) of packets (b read only with a bias), as thin_forward_row computes it.
  template <bool Bias, class As, class P>
  static EIGEN_ALWAYS_INLINE P relu_unit(As as, const P& w, const T* b, Index k, T x) {
    using namespace Eigen::internal;
    const P wx = pmul(w, pset1<P>(x));
    const P z = Bias ? padd(wx, load(as, b + k)) : wx;
    return where_positive(z, z);
  }

  // The inputs of an update pass over the hidden units of a 1-m-1 step on B samples: a_ik =
  // a[i * m + k] the hidden units, act_d the same for act'(z) (Scaled only), d_i = d[i] = dL/df_i,
  // x_i = x[i * xs]; d0 and x0 the first ones as values (one sample: no loads that the stores
  // might alias).
  struct HiddenUpdate {
    T *v, *w, *b;
    const T *a, *act_d, *d, *x;
    Index m, B, xs;
    T d0, x0, lr;
  };
  template <class P>
  struct HiddenPacket {
    P v, w, b;
  };

  // Packet k of the new v, w and b (b: only with a bias): v -= lr sum_i d_i a_ik,
  // w -= lr sum_i delta_ik x_i, b -= lr sum_i delta_ik with delta_ik = d_i v_k act'(z_ik) (v before
  // its update), the samples' terms summed in order.
  template <bool Relu, bool Scaled, bool Bias, bool One, class As>
  static EIGEN_ALWAYS_INLINE auto update_packet(Index k, As as, const HiddenUpdate& u) {
    using namespace Eigen::internal;
    using P = typename As::type;
    const Index m = u.m;
    const P vk = load(as, u.v + k);
    // Sample i's terms: d_i a_ik (for v), delta_ik x_i (for w) and delta_ik (for b).
    const auto terms = [&](Index i, P& tv, P& tw, P& delta) {
      const P ak = load(as, u.a + i * m + k), di = pset1<P>(One ? u.d0 : u.d[i]), dv = pmul(di, vk);
      delta = dv;
      if constexpr (Relu) delta = where_positive(ak, dv);  // relu(z) > 0 where z > 0
      if constexpr (Scaled) delta = pmul(dv, load(as, u.act_d + i * m + k));
      tv = pmul(di, ak);
      tw = pmul(delta, pset1<P>(One ? u.x0 : u.x[i * u.xs]));
    };
    P gv, gw, gb;
    terms(0, gv, gw, gb);
    for (Index i = 1; i < (One ? 1 : u.B); ++i) {
      P tv, tw, delta;
      terms(i, tv, tw, delta);
      gv = padd(gv, tv);
      gw = padd(gw, tw);
      gb = padd(gb, delta);
    }
    const P rate = pset1<P>(u.lr);
    HiddenPacket<P> n;
    n.v = psub(vk, pmul(rate, gv));
    n.w = psub(load(as, u.w + k), pmul(rate, gw));
    if constexpr (Bias) n.b = psub(load(as, u.b + k), pmul(rate, gb));
    return n;
  }
  template <bool Bias, class P>
  static EIGEN_ALWAYS_INLINE void store_packet(Index k, const HiddenUpdate& u,
                                               const HiddenPacket<P>& n) {
    Eigen::internal::pstoreu(u.v + k, n.v);
    Eigen::internal::pstoreu(u.w + k, n.w);
    if constexpr (Bias) Eigen::internal::pstoreu(u.b + k, n.b);
  }

  // sgd_steps on a 1-m-1 relu net: step j's update pass also computes relu(z) and the output of
  // step j+1 from the new parameters (the term of its dot product, in dot_with's order), so each
  // step makes one pass over the hidden units, not two. The numbers of sgd_step, bit for bit.
  template <bool Bias, class Sample>
  void relu_steps(T* theta, std::int64_t n, Sample& sample, T two_c, Workspace& ws) const {
    using namespace Eigen::internal;
    const Layer &hidden = layers_[0], &out = layers_[1];
    const Index m = hidden.out;
    T *w = theta + hidden.w_offset, *v = theta + out.w_offset;
    T* b = Bias ? theta + hidden.b_offset : nullptr;
    T* c = out.bias ? theta + out.b_offset : nullptr;
    if (ws.hidden.size() != m) ws.hidden.resize(m);
    T* a = ws.hidden.data();
    OneSample s = sample(0);
    const T x_first = s.x[0];
    T f = dot_with(v, m, [=](Index k, auto as) {
      const auto relu_z = relu_unit<Bias>(as, load(as, w + k), b, k, x_first);
      pstoreu(a + k, relu_z);
      return relu_z;
    });
    if (c) f += *c;
    for (std::int64_t j = 0;; ++j) {
      const T d = two_c * (f - s.y);
      const HiddenUpdate u{v, w, b, a, nullptr, nullptr, s.x, m, 1, 1, d, s.x[0], s.lr};
      if (j + 1 == n) {  // the last step: its update alone
        for_each_packet<T, true>(m, [=](Index k, auto as) {
          const auto p = update_packet<true, false, Bias, true>(k, as, u);
          store_packet<Bias>(k, u, p);
        });
        if (c) *c -= s.lr * d;
        return;
      }
      if (c) *c -= s.lr * d;  // before the next output adds it
      s = sample(j + 1);
      const T x_next = s.x[0];
      f = sum_with<T, true>(m, [=](Index k, auto as) {
        const auto p = update_packet<true, false, Bias, true>(k, as, u);
        store_packet<Bias>(k, u, p);
        const auto relu_z = relu_unit<Bias>(as, p.w, b, k, x_next);
        pstoreu(a + k, relu_z);
        return pmul(p.v, relu_z);  // dot_with's term: pmul(v, y)
      });
      if (c) f += *c;
    }
  }

  // Where backward_into puts d(.)/d theta of a block of parameters (a layer's W or b): written
  // into a gradient (GradSink), or subtracted times lr from theta itself (StepSink). `put(off,
  // n, g)` handles n entries g(k); `gemm(off, rows, cols, expr)` a product expression.
  struct GradSink {
    T* grad;
    template <class G>
    void put(Index off, Index n, G g) const {
      T* out = grad + off;
#pragma omp simd
      for (Index k = 0; k < n; ++k) out[k] = g(k);
    }
    template <class E>
    void gemm(Index off, Index rows, Index cols, const E& e) const {
      MatMap<T>(grad + off, rows, cols).noalias() = e;
    }
    template <class E>
    void vec(Index off, Index n, const E& e) const {
      VecMap<T>(grad + off, n) = e;
    }
  };
  struct StepSink {
    T* theta;
    T lr;
    template <class G>
    void put(Index off, Index n, G g) const {
      T* out = theta + off;
      const T rate = lr;
#pragma omp simd
      for (Index k = 0; k < n; ++k) out[k] -= rate * g(k);
    }
    template <class E>
    void gemm(Index off, Index rows, Index cols, const E& e) const {
      // theta -= lr * (lhs rhs) as one GEMM (or GEMV) with alpha = -lr, called directly: written
      // as an expression, lr * (Delta^T x) for a one-input layer is a GEMV whose scaled operand
      // Eigen copies into a temporary, one allocation per step.
      MatMap<T> dst(theta + off, rows, cols);
      Eigen::internal::generic_product_impl<typename E::LhsNestedCleaned,
                                            typename E::RhsNestedCleaned>::scaleAndAddTo(dst,
                                                                                         e.lhs(),
                                                                                         e.rhs(),
                                                                                         -lr);
    }
    template <class E>
    void vec(Index off, Index n, const E& e) const {
      VecMap<T>(theta + off, n) -= lr * e;
    }
  };

  // Backward pass from Delta_last, layer by layer: Delta[l-1] from the layer's weights first, then
  // the layer's parameter derivatives to the sink (which may overwrite those weights).
  template <class Sink>
  void backward_into(const T* theta, const MatRef<T>& X, Workspace& ws, const Sink& sink) const {
    for (std::size_t l = layers_.size(); l-- > 0;) {
      const Layer& ly = layers_[l];
      if (l > 0) propagate(theta, l, ws);
      if (X.rows() == 1) {
        layer_grad_one(ly, l == 0 ? X.data() : ws.A[l - 1].data(), ws.Delta[l].data(), sink);
        continue;
      }
      sink.gemm(ly.w_offset, ly.out, ly.in,
                ws.Delta[l].transpose() * (l == 0 ? X : MatRef<T>(ws.A[l - 1])));
      if (ly.bias) sink.vec(ly.b_offset, ly.out, ws.Delta[l].colwise().sum().transpose());
    }
  }

  // d(.)/dW = d a^T and d(.)/db = d of layer `ly` for one input row a, to the sink.
  template <class Sink>
  static void layer_grad_one(const Layer& ly, const T* a, const T* d, const Sink& sink) {
    if (ly.in == 1) {
      const T a0 = a[0];
      sink.put(ly.w_offset, ly.out, [=](Index j) { return d[j] * a0; });
    } else {
      for (Index j = 0; j < ly.out; ++j) {
        const T dj = d[j];
        sink.put(ly.w_offset + j * ly.in, ly.in, [=](Index k) { return dj * a[k]; });
      }
    }
    if (ly.bias) sink.put(ly.b_offset, ly.out, [=](Index j) { return d[j]; });
  }

  std::vector<Layer> layers_;
  Index n_params_ = 0;
};

}  // namespace implicitreg
