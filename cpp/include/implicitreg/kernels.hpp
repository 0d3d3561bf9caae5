// Small vector kernels on Eigen packets, shared by the models' hot loops. Reductions use a fixed
// order for each build (no -ffast-math): results are reproducible, not merely close.
#pragma once

#include "config.hpp"

namespace implicitreg {

// A packet type, or the scalar T itself, as an argument: kernels written once on Eigen's packet
// functions (which take scalars too) run their main loop on packets and their tail on scalars.
// (As<T, true>: a packet of T; As<T, false>: one T.)
template <class T, bool Packet>
struct As {
  using type = T;
};
template <class T>
struct As<T, true> {
  using type = typename Eigen::internal::packet_traits<T>::type;
};

// f(k, As<T, true>{}) at k = 0, P, 2P, ... while a whole packet fits, then f(k, As<T, false>{}) for
// the rest: an elementwise kernel written once.
template <class T, class F>
EIGEN_ALWAYS_INLINE void for_each_packet(Index n, F f) {
  constexpr Index P = Eigen::internal::packet_traits<T>::size;
  Index k = 0;
  for (; k + P <= n; k += P) f(k, As<T, true>{});
  for (; k < n; ++k) f(k, As<T, false>{});
}

// A packet (or one T) from p, for kernels written on As.
template <class T, bool Packet>
auto load(As<T, Packet> as, const T* p) {
  return Eigen::internal::ploadu<typename decltype(as)::type>(p);
}

// sum_k x[k] y_k, with y_k = y(k, As<T, true>{}) the value at k as a packet (or one T at the
// tail) computed on the fly. Four packet accumulators (independent chains: one chain is bound by
// the add latency), reduced pairwise; a fixed order, so dot_with(x, n, loads of y) is dot(x, y, n)
// bit for bit.
template <class T, class Y>
EIGEN_ALWAYS_INLINE T dot_with(const T* x, Index n, Y y) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = packet_traits<T>::size;
  const As<T, true> packet;
  Packet a0 = pset1<Packet>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  Index k = 0;
  for (; k + 4 * P <= n; k += 4 * P) {
    a0 = padd(a0, pmul(ploadu<Packet>(x + k), y(k, packet)));
    a1 = padd(a1, pmul(ploadu<Packet>(x + k + P), y(k + P, packet)));
    a2 = padd(a2, pmul(ploadu<Packet>(x + k + 2 * P), y(k + 2 * P, packet)));
    a3 = padd(a3, pmul(ploadu<Packet>(x + k + 3 * P), y(k + 3 * P, packet)));
  }
  for (; k + P <= n; k += P) a0 = padd(a0, pmul(ploadu<Packet>(x + k), y(k, packet)));
  T acc = predux(padd(padd(a0, a1), padd(a2, a3)));
  for (; k < n; ++k) acc += x[k] * y(k, As<T, false>{});
  return acc;
}

// sum_{j < R} term(j), added pairwise (a fixed order).
template <int R, class Term>
EIGEN_ALWAYS_INLINE auto pairwise_sum(Term term, int first = 0) {
  if constexpr (R == 1) {
    return term(first);
  } else {
    return Eigen::internal::padd(pairwise_sum<R / 2>(term, first),
                                 pairwise_sum<R - R / 2>(term, first + R / 2));
  }
}

// One sweep over k = 0..n-1 doing two things (either may be empty):
//   dots[j] = sum_k xd_j[k] y[k]           for the RD rows xd_j = xd + j * stride
//   g[k] += sum_{j < RA} coef[j] xa_j[k]    for the RA rows xa_j = xa + j * stride
// y is read once for all RD rows (one packet accumulator per row: RD >= 4 hides the adds'
// latency) and g once for all RA rows (their products added pairwise, then into g). Doing both
// at once pipelines a pass that needs each row twice (a residual from its dot product, then the
// row scaled by it): the second use of one block of rows, from L1, overlaps the first reads of
// the next block from L2. Each result is the same number whether RD or RA is zero or not.
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
      for (int j = 0; j < RD; ++j)
        acc[j] = padd(acc[j], pmul(ploadu<Packet>(xd + j * stride + k), yk));
    }
    if constexpr (RA > 0) {
      const Packet sum =
          pairwise_sum<RA>([&](int j) { return pmul(c[j], ploadu<Packet>(xa + j * stride + k)); });
      pstoreu(g + k, padd(ploadu<Packet>(g + k), sum));
    }
  }
  for (int j = 0; j < RD; ++j) {
    dots[j] = predux(acc[j]);
    for (Index q = k; q < n; ++q) dots[j] += xd[j * stride + q] * y[q];
  }
  if constexpr (RA > 0)
    for (; k < n; ++k)
      g[k] += pairwise_sum<RA>([&](int j) { return coef[j] * xa[j * stride + k]; });
}

// sum_k x[k] y[k].
template <class T>
T dot(const T* x, const T* y, Index n) {
  return dot_with(x, n, [y](Index k, auto as) { return load(as, y + k); });
}

}  // namespace implicitreg
