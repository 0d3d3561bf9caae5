// Shared scalar/array aliases. Every numerical type in the core is templated on the scalar T
// (float or double); matrices are row-major so that numpy's C-order arrays map without copies.
#pragma once

#include <Eigen/Core>
#include <cstdint>

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

}  // namespace implicitreg
