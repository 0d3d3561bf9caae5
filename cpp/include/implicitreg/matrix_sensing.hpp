// Matrix sensing: f(A; U) = <A, U U^T> (symmetric factorisation) or <A, U V^T> (asymmetric),
// U, V in R^{d x k} (k = d: overparametrised). A QuadraticModel (quadratic.hpp) with
// phi(theta) = vec(U V^T), V = U in the symmetric case.
//
// theta: vec(U) row-major, then vec(V) row-major (asymmetric only). One sample is vec(A_i)
// row-major (d*d numbers), so a batch is the (n x d^2) matrix whose products with vec(U V^T) and
// with the residuals are a full-batch step: two matrix-vector products over A.
// Gradients of <S, U V^T>: S V (for U) and S^T U (for V); symmetric: (S + S^T) U, so canonical()
// symmetrises S once and pull_back is one (d x d)(d x k) product. Per-sample gradients are
// (A_i + A_i^T) U, or (A_i V, A_i^T U): R_i = ||(A_i + A_i^T) U||_F^2 (+ the analogous sum).
//
// Packed form (symmetric only; what a Simulation runs on): <A, U U^T> only sees A + A^T, so a
// sample becomes its d(d+1)/2 upper-triangle entries a_kl = A_kl + A_lk (k < l), a_kk = A_kk,
// and phi the upper triangle of U U^T. The passes over the data read half as many numbers; a
// packed gradient g unpacks to the symmetric S + S^T (off-diagonal g_kl, diagonal 2 g_kk).
// Packed rows are padded with zeros to a multiple of 8 numbers and of the packet size (phi too):
// in the batches a simulation allocates (aligned by Eigen), every row then starts on a packet
// boundary, so the passes' packet loads never straddle a cache line, and no row has a scalar tail.
#pragma once

#include <algorithm>
#include <stdexcept>

#include "quadratic.hpp"

namespace implicitreg {

template <class T>
class MatrixSensing : public QuadraticModel<MatrixSensing<T>, T> {
 public:
  MatrixSensing(Index d, Index k, bool asymmetric) : d_(d), k_(k), asym_(asymmetric) {
    if (d < 1 || k < 1) throw std::invalid_argument("d and k must be >= 1");
  }

  Index d() const { return d_; }
  Index k() const { return k_; }
  bool asymmetric() const { return asym_; }
  Index n_params() const { return (asym_ ? 2 : 1) * d_ * k_; }
  Index n_in() const {
    // At least 8 numbers (64 bytes for double), and whole packets (AVX-512: 16 floats).
    constexpr Index pad = std::max<Index>(8, Eigen::internal::packet_traits<T>::size);
    return packed_ ? (n_upper() + pad - 1) / pad * pad : d_ * d_;
  }

  // The same model on packed samples (see above); asymmetric models have no packed form.
  MatrixSensing packed() const {
    MatrixSensing m = *this;
    m.packed_ = !asym_;
    return m;
  }

  // Samples (rows of vec(A_i)) in the form packed() reads.
  RowMat<T> pack(const RowMat<T>& X) const {
    if (asym_) return X;
    RowMat<T> P = RowMat<T>::Zero(X.rows(), packed().n_in());
    for (Index i = 0; i < X.rows(); ++i) {
      ConstMatMap<T> A(X.row(i).data(), d_, d_);
      Index q = 0;
      for (Index k = 0; k < d_; ++k)
        for (Index l = k; l < d_; ++l) P(i, q++) = l == k ? A(k, k) : A(k, l) + A(l, k);
    }
    return P;
  }

  void phi(const T* theta, T* out) const {
    if (!packed_) {
      MatMap<T>(out, d_, d_).noalias() = U(theta) * V(theta).transpose();
      return;
    }
    // The upper triangle of U U^T, four rows at a time from the diagonal on (small_gemm with
    // U^T's rows, which a small transpose gives).
    RowMat<T>& Ut = scratch(Scratch::transpose, k_, d_);
    small_transpose(d_, k_, theta, k_, Ut.data(), d_);
    RowMat<T>& M = scratch(Scratch::square, d_, d_);
    for (Index i = 0; i < d_; i += 4)
      small_gemm(std::min<Index>(4, d_ - i), d_ - i, k_, theta + i * k_, k_, Ut.data() + i, d_,
                 M.data() + i * d_ + i, d_, false);
    pack_upper(M, out);
  }

  void tangent(const T* theta, const T* v, T* out) const {
    RowMat<T>& M = scratch(Scratch::square, d_, d_);
    MatMap<T> dM(packed_ ? M.data() : out, d_, d_);
    dM.noalias() = U(v) * V(theta).transpose();
    dM.noalias() += U(theta) * V(v).transpose();
    if (packed_) pack_upper(M, out);
  }

  void canonical(T* g) const {
    if (asym_ || packed_) return;  // packed: pull_back unpacks
    MatMap<T> S(g, d_, d_);
    for (Index i = 0; i < d_; ++i)
      for (Index j = 0; j <= i; ++j) S(i, j) = S(j, i) = S(i, j) + S(j, i);
  }

  void pull_back(const T* theta, const T* g, T* out, bool add) const {
    if (packed_) {  // (S + S^T) U: unpacked (rows of the upper triangle, then its mirror)
      RowMat<T>& M = scratch(Scratch::square, d_, d_);
      for (Index k = 0, q = 0; k < d_; q += d_ - k, ++k) {
        std::copy_n(g + q, d_ - k, &M(k, k));
        M(k, k) *= T(2);
      }
      for (Index k = 0; k < d_; ++k)
        for (Index l = k + 1; l < d_; ++l) M(l, k) = M(k, l);
      small_gemm(d_, k_, d_, M.data(), d_, theta, k_, out, k_, add);
      return;
    }
    ConstMatMap<T> S(g, d_, d_);
    MatMap<T> gU(out, d_, k_);
    if (add)
      gU.noalias() += S * V(theta);
    else
      gU.noalias() = S * V(theta);
    if (!asym_) return;
    MatMap<T> gV(out + d_ * k_, d_, k_);
    if (add)
      gV.noalias() += S.transpose() * U(theta);
    else
      gV.noalias() = S.transpose() * U(theta);
  }

 private:
  ConstMatMap<T> U(const T* theta) const { return ConstMatMap<T>(theta, d_, k_); }
  ConstMatMap<T> V(const T* theta) const {  // U itself in the symmetric case
    return ConstMatMap<T>(theta + (asym_ ? d_ * k_ : 0), d_, k_);
  }

  // Buffers of the calling thread (replicas step on several threads at once).
  enum class Scratch { square, transpose };
  static RowMat<T>& scratch(Scratch which, Index rows, Index cols) {
    thread_local RowMat<T> buffers[2];
    RowMat<T>& M = buffers[static_cast<int>(which)];
    M.resize(rows, cols);
    return M;
  }

  Index n_upper() const { return d_ * (d_ + 1) / 2; }

  void pack_upper(const RowMat<T>& M, T* out) const {
    Index q = 0;
    for (Index k = 0; k < d_; ++k)
      for (Index l = k; l < d_; ++l) out[q++] = M(k, l);
    std::fill(out + q, out + n_in(), T(0));
  }

  Index d_, k_;
  bool asym_;
  bool packed_ = false;
};

template <class T>
struct SecondOrderWorkspace<MatrixSensing<T>> : QuadraticSecondOrderWorkspace<T> {};

}  // namespace implicitreg
