// Matrix products of the layer passes, in the forms that spare Eigen's GEMM work that computes
// nothing. The numbers are those of the plain product:
//   - an inner size of 1 (the layer below a width-1 output) is an outer product: one multiply
//     per entry. Eigen's GEMM path would zero dst, pack both factors and run its kernel at depth
//     1; the coefficient-based product writes each entry once, with the same rounding.
//   - dst = lhs rhs + 1 b^T fills dst with b and adds the product into it: GEMM adds into dst
//     anyway, so this replaces its zero fill and spares a separate pass that adds b. With the
//     depth in one GEMM block (Eigen's kc, 256 or more at these widths) each entry is rounded as
//     (sum over k) + b, exactly as before; a deeper product adds its blocks after b.
#pragma once

#include "config.hpp"

namespace implicitreg {

// dst = lhs rhs.
template <class Dst, class Lhs, class Rhs>
void assign_product(Dst&& dst, const Lhs& lhs, const Rhs& rhs) {
  if (lhs.cols() == 1)
    dst.noalias() = lhs.lazyProduct(rhs);
  else
    dst.noalias() = lhs * rhs;
}

// dst += lhs rhs.
template <class Dst, class Lhs, class Rhs>
void add_product(Dst&& dst, const Lhs& lhs, const Rhs& rhs) {
  if (lhs.cols() == 1)
    dst.noalias() += lhs.lazyProduct(rhs);
  else
    dst.noalias() += lhs * rhs;
}

// dst = lhs rhs + 1 b^T (b: dst.cols() entries, or null for none).
template <class T, class Lhs, class Rhs>
void affine_product(RowMat<T>& dst, const Lhs& lhs, const Rhs& rhs, const T* b) {
  if (!b) {
    assign_product(dst, lhs, rhs);
    return;
  }
  dst.resize(lhs.rows(), rhs.cols());
  dst.rowwise() = ConstVecMap<T>(b, dst.cols()).transpose();
  add_product(dst, lhs, rhs);
}

}  // namespace implicitreg
