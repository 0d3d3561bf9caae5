// Small vector kernels on Eigen packets, shared by the models' hot loops. Reductions use a fixed
// order for each build (no -ffast-math): results are reproducible, not merely close.
#pragma once

#include "config.hpp"

namespace implicitreg {

// A packet type, or the scalar T itself, as an argument: kernels written once on Eigen's packet
// functions (which take scalars too) run their main loop on packets and their tail on smaller
// ones. (As<T>: a full packet of T; As<T, T>: one T; As<T, Half>: a half packet, ...)
template <class T, class Packet = typename Eigen::internal::packet_traits<T>::type>
struct As {
  using type = Packet;
};

// Tails: the numbers k.. (fewer than a packet) as one half packet, one quarter packet, ... while
// smaller packets exist (AVX-512 has three sizes), f(k, As<T, Smaller>{}) for each; k advances.
template <class T, class Packet, class F>
EIGEN_ALWAYS_INLINE void smaller_packets(Index& k, Index n, F f) {
  using namespace Eigen::internal;
  using Half = typename unpacket_traits<Packet>::half;
  constexpr Index H = unpacket_traits<Half>::size;
  if constexpr (H < unpacket_traits<Packet>::size) {
    if (k + H <= n) {
      f(k, As<T, Half>{});
      k += H;
    }
    smaller_packets<T, Half>(k, n, f);
  }
}

// f(k, As<T>{}) at k = 0, P, 2P, ... while a whole packet fits, then (Halves: on smaller packets,
// then) f(k, As<T, T>{}) for the rest: an elementwise kernel written once. Halves needs a kernel
// written on the functions every packet size has (arithmetic, compares, loads and stores).
template <class T, bool Halves = false, class F>
EIGEN_ALWAYS_INLINE void for_each_packet(Index n, F f) {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index P = Eigen::internal::packet_traits<T>::size;
  Index k = 0;
  for (; k + P <= n; k += P) f(k, As<T>{});
  if constexpr (Halves) smaller_packets<T, Packet>(k, n, f);
  for (; k < n; ++k) f(k, As<T, T>{});
}

// A packet (or one T) from p, for kernels written on As.
template <class T, class Packet>
auto load(As<T, Packet>, const T* p) {
  return Eigen::internal::ploadu<Packet>(p);
}

// sum_k term(k), with term(k, As<T>{}) the terms at k..k+P-1 as a packet (or a smaller packet or
// one T at the tail, as for_each_packet) computed on the fly. Four packet accumulators
// (independent chains: one chain is bound by the add latency), reduced pairwise, then the tail's
// terms one after the other; a fixed order for each n.
template <class T, bool Halves = false, class Term>
EIGEN_ALWAYS_INLINE T sum_with(Index n, Term term) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = packet_traits<T>::size;
  const As<T> packet;
  Packet a0 = pset1<Packet>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  Index k = 0;
  for (; k + 4 * P <= n; k += 4 * P) {
    a0 = padd(a0, term(k, packet));
    a1 = padd(a1, term(k + P, packet));
    a2 = padd(a2, term(k + 2 * P, packet));
    a3 = padd(a3, term(k + 3 * P, packet));
  }
  for (; k + P <= n; k += P) a0 = padd(a0, term(k, packet));
  T acc = predux(padd(padd(a0, a1), padd(a2, a3)));
  if constexpr (Halves)
    smaller_packets<T, Packet>(k, n, [&](Index q, auto as) { acc += predux(term(q, as)); });
  for (; k < n; ++k) acc += term(k, As<T, T>{});
  return acc;
}

// sum_k x[k] y_k, with y_k = y(k, As<T>{}) the value at k as a packet (or a smaller packet or
// one T at the tail: y must be written on the functions every packet size has) computed on the
// fly; dot_with(x, n, loads of y) is dot(x, y, n) bit for bit.
template <class T, class Y>
EIGEN_ALWAYS_INLINE T dot_with(const T* x, Index n, Y y) {
  return sum_with<T, true>(
      n, [&](Index k, auto as) { return Eigen::internal::pmul(load(as, x + k), y(k, as)); });
}

// One sweep over k = 0..n-1 doing two things (either may be empty):
//   dots[j] = sum_k xd_j[k] y[k]           for the RD rows xd_j = xd + j * stride
//   g[k] += sum_{j < RA} coef[j] xa_j[k]    for the RA rows xa_j = xa + j * stride
// y is read once for all RD rows (one packet accumulator per row: RD >= 4 hides the adds'
// latency) and g once for all RA rows (added into g in row order). Doing both at once pipelines
// a pass that needs each row twice (a residual from its dot product, then the row scaled by it):
// the second use of one block of rows, from L1, overlaps the first reads of the next block from
// L2. Fused multiply-adds (pmadd; where the build has FMA, one rounding per term): the loop
// issues one arithmetic instruction per number read, not two, and is bound by its loads. Each
// result is the same number whether RD or RA is zero or not.
template <int RD, int RA, class T>
void dot_add_rows(const T* xd, const T* xa, Index stride, Index n, const T* y, T* dots,
                  const T* coef, T* g) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = packet_traits<T>::size;
  Packet acc[RD > 0 ? RD : 1], c[RA > 0 ? RA : 1];
  for (int j = 0; j < RD; ++j) acc[j] = pset1<Packet>(T(0));
  for (int j = 0; j < RA; ++j) c[j] = pset1<Packet>(coef[j]);
  Index k = 0;
  for (; k + P <= n; k += P) {
    if constexpr (RD > 0) {
      const Packet yk = ploadu<Packet>(y + k);
      for (int j = 0; j < RD; ++j) acc[j] = pmadd(ploadu<Packet>(xd + j * stride + k), yk, acc[j]);
    }
    if constexpr (RA > 0) {
      Packet gk = ploadu<Packet>(g + k);
      for (int j = 0; j < RA; ++j) gk = pmadd(c[j], ploadu<Packet>(xa + j * stride + k), gk);
      pstoreu(g + k, gk);
    }
  }
  for (int j = 0; j < RD; ++j) {
    dots[j] = predux(acc[j]);
    for (Index q = k; q < n; ++q) dots[j] = pmadd(xd[j * stride + q], y[q], dots[j]);
  }
  if constexpr (RA > 0)
    for (; k < n; ++k)
      for (int j = 0; j < RA; ++j) g[k] = pmadd(coef[j], xa[j * stride + k], g[k]);
}

// C (R rows x NP packets) (+)= the same rows of A times B: one register tile of small_gemm,
// summed over c in order (mul then add). Packet may be a full or half packet, or T itself.
template <class Packet, int R, int NP, class T>
EIGEN_ALWAYS_INLINE void gemm_tile(Index kk, const T* A, Index lda, const T* B, Index ldb, T* C,
                                   Index ldc, bool add) {
  using namespace Eigen::internal;
  constexpr Index P = unpacket_traits<Packet>::size;
  Packet acc[R][NP];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = pset1<Packet>(T(0));
  for (Index c = 0; c < kk; ++c) {
    Packet b[NP];
    for (int p = 0; p < NP; ++p) b[p] = ploadu<Packet>(B + c * ldb + p * P);
    for (int r = 0; r < R; ++r) {
      const Packet a = pset1<Packet>(A[r * lda + c]);
      for (int p = 0; p < NP; ++p) acc[r][p] = padd(acc[r][p], pmul(a, b[p]));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) {
      T* out = C + r * ldc + p * P;
      pstoreu(out, add ? padd(ploadu<Packet>(out), acc[r][p]) : acc[r][p]);
    }
}

// The m rows of one column panel in tiles of R rows, then R/2, ..., 1 for the rest.
template <class Packet, int R, int NP, class T>
EIGEN_ALWAYS_INLINE void gemm_panel(Index m, Index kk, const T* A, Index lda, const T* B, Index ldb,
                                    T* C, Index ldc, bool add) {
  Index i = 0;
  for (; i + R <= m; i += R)
    gemm_tile<Packet, R, NP>(kk, A + i * lda, lda, B, ldb, C + i * ldc, ldc, add);
  if constexpr (R > 1)
    gemm_panel<Packet, R / 2, NP>(m - i, kk, A + i * lda, lda, B, ldb, C + i * ldc, ldc, add);
}

// Columns j.. of small_gemm in panels of one Packet (8 rows of accumulators: enough independent
// sums to hide the adds' latency), then of its half, its quarter, ... (AVX-512 has three sizes).
template <class Packet, class T>
EIGEN_ALWAYS_INLINE void gemm_columns(Index& j, Index m, Index n, Index kk, const T* A, Index lda,
                                      const T* B, Index ldb, T* C, Index ldc, bool add) {
  using namespace Eigen::internal;
  using Half = typename unpacket_traits<Packet>::half;
  constexpr Index P = unpacket_traits<Packet>::size;
  for (; j + P <= n; j += P) gemm_panel<Packet, 8, 1>(m, kk, A, lda, B + j, ldb, C + j, ldc, add);
  if constexpr (unpacket_traits<Half>::size < P)
    gemm_columns<Half>(j, m, n, kk, A, lda, B, ldb, C, ldc, add);
}

// C = A B (add: C += A B) for small row-major matrices A (m x kk), B (kk x n), C (m x n) with
// leading dimensions lda, ldb, ldc. For products like matrix sensing's 20 x 20 ones, which
// Eigen's blocked GEMM spends more time setting up (blocking, packing) than computing: B's rows
// are read in place, in column panels of two packets (4 rows x 2 packets of accumulators), then
// one packet, half a packet, ... and single columns.
template <class T>
void small_gemm(Index m, Index n, Index kk, const T* A, Index lda, const T* B, Index ldb, T* C,
                Index ldc, bool add) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = unpacket_traits<Packet>::size;
  Index j = 0;
  for (; j + 2 * P <= n; j += 2 * P)
    gemm_panel<Packet, 4, 2>(m, kk, A, lda, B + j, ldb, C + j, ldc, add);
  gemm_columns<Packet>(j, m, n, kk, A, lda, B, ldb, C, ldc, add);
  for (; j < n; ++j) gemm_panel<T, 8, 1>(m, kk, A, lda, B + j, ldb, C + j, ldc, add);
}

// B (cols x rows, leading dimension ldb) = A^T for a row-major A (rows x cols, lda): square
// blocks of one packet's size transposed in registers, the edges one number at a time.
template <class T>
void small_transpose(Index rows, Index cols, const T* A, Index lda, T* B, Index ldb) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr int P = unpacket_traits<Packet>::size;
  Index i = 0;
  for (; i + P <= rows; i += P) {
    Index j = 0;
    for (; j + P <= cols; j += P) {
      PacketBlock<Packet, P> block;
      for (int r = 0; r < P; ++r) block.packet[r] = ploadu<Packet>(A + (i + r) * lda + j);
      ptranspose(block);
      for (int r = 0; r < P; ++r) pstoreu(B + (j + r) * ldb + i, block.packet[r]);
    }
    for (; j < cols; ++j)
      for (int r = 0; r < P; ++r) B[j * ldb + i + r] = A[(i + r) * lda + j];
  }
  for (; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) B[j * ldb + i] = A[i * lda + j];
}

// sum_k x[k] y[k].
template <class T>
T dot(const T* x, const T* y, Index n) {
  return dot_with(x, n, [y](Index k, auto as) { return load(as, y + k); });
}

}  // namespace implicitreg
