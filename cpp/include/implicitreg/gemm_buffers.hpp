// Eigen's GEMM allocates its packing buffers on every product, on the heap once they pass 128 KB
// (a 256 x 256 layer needs two of 512 KB), and glibc hands freed blocks of that size back to the
// kernel: each such product can then page-fault its buffers in again (whether it does depends on
// the process's malloc history; in a C++ benchmark of the EGR direction on the W5 net, page faults
// took ~5% of the samples and the call went from 9.0 to 7.0 ms). This specialises Eigen's blocking
// for dynamic-size products so that the buffers live per thread, grow on demand and are reused. The
// block sizes are Eigen's own (computeProductBlockingSizes, same arguments), so the products are
// the same arithmetic, bit for bit. Include before any product is instantiated (config.hpp does).
#pragma once

#include <Eigen/Core>

namespace implicitreg {

// The calling thread's packing buffer `which` (0: lhs, 1: rhs), at least `size` scalars. A
// product never runs inside another on one thread, so one pair per thread suffices.
template <class Scalar>
Scalar* gemm_buffer(int which, Eigen::Index size) {
  thread_local Eigen::Matrix<Scalar, Eigen::Dynamic, 1> buffers[2];
  if (buffers[which].size() < size) buffers[which].resize(size);
  return buffers[which].data();
}

}  // namespace implicitreg

namespace Eigen::internal {

template <int StorageOrder, typename Scalar>
class gemm_blocking_space<StorageOrder, Scalar, Scalar, Dynamic, Dynamic, Dynamic, 1, false>
    : public level3_blocking<Scalar, Scalar> {
 public:
  gemm_blocking_space(Index rows, Index cols, Index depth, Index num_threads, bool l3_blocking) {
    set_sizes(rows, cols, depth);
    if (l3_blocking) {
      computeProductBlockingSizes<Scalar, Scalar, 1>(this->m_kc, this->m_mc, this->m_nc,
                                                     num_threads);
    } else {
      Index n = this->m_nc;
      computeProductBlockingSizes<Scalar, Scalar, 1>(this->m_kc, this->m_mc, n, num_threads);
    }
    allocateAll();  // non-null buffers: the sequential product packs into them, not the heap
  }

  // Eigen's parallel GEMM (not compiled here: EIGEN_DONT_PARALLELIZE) sizes the blocks again.
  void initParallel(Index rows, Index cols, Index depth, Index num_threads) {
    set_sizes(rows, cols, depth);
    Index m = this->m_mc;
    computeProductBlockingSizes<Scalar, Scalar, 1>(this->m_kc, m, this->m_nc, num_threads);
    allocateAll();
  }

  void allocateA() {
    this->m_blockA = implicitreg::gemm_buffer<Scalar>(0, this->m_mc * this->m_kc);
  }
  void allocateB() {
    this->m_blockB = implicitreg::gemm_buffer<Scalar>(1, this->m_kc * this->m_nc);
  }
  void allocateAll() {
    allocateA();
    allocateB();
  }

 private:
  void set_sizes(Index rows, Index cols, Index depth) {
    constexpr bool transpose = StorageOrder == RowMajor;
    this->m_mc = transpose ? cols : rows;
    this->m_nc = transpose ? rows : cols;
    this->m_kc = depth;
  }
};

}  // namespace Eigen::internal
