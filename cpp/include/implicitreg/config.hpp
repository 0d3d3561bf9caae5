// Shared scalar/array aliases. Every numerical type in the core is templated on the scalar T
// (float or double); matrices are row-major so that numpy's C-order arrays map without copies.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "gemm_buffers.hpp"

namespace implicitreg {

using Index = Eigen::Index;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

template <class T>
using MatMap = Eigen::Map<RowMat<T>>;
template <class T>
using ConstMatMap = Eigen::Map<const RowMat<T>>;
template <class T>
using VecMap = Eigen::Map<Vec<T>>;
template <class T>
using ConstVecMap = Eigen::Map<const Vec<T>>;

template <class T>
using MatRef = Eigen::Ref<const RowMat<T>>;
template <class T>
using VecRef = Eigen::Ref<const Vec<T>>;

// True if every entry is finite: an OR of per-element flags, vectorised (a sum would be a chain
// of dependent adds, and overflow for large finite entries).
template <class T>
bool all_finite(const T* x, Index n) {
  // Flags as wide as T, so that a vector compare feeds the OR without repacking.
  std::conditional_t<sizeof(T) == 8, std::int64_t, std::int32_t> bad = 0;
#pragma omp simd reduction(| : bad)
  for (Index k = 0; k < n; ++k) bad |= !(std::abs(x[k]) <= std::numeric_limits<T>::max());
  return bad == 0;
}

}  // namespace implicitreg
