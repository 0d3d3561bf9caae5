// Small vector kernels on Eigen packets, shared by the models' hot loops. Reductions use a fixed
// order for each build (no -ffast-math): results are reproducible, not merely close.
#pragma once

#include <algorithm>
#include <array>

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

// out[j] = sum_k x_j[k] y[k] for the R rows x_j = x + j * stride: y is read once for all of
// them, one packet accumulator per row (R >= 4 keeps the adds' latency hidden).
template <int R, class T>
void dot_rows(const T* x, Index stride, Index n, const T* y, T* out) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = packet_traits<T>::size;
  Packet acc[R];
  for (int j = 0; j < R; ++j) acc[j] = pset1<Packet>(T(0));
  Index k = 0;
  for (; k + P <= n; k += P) {
    const Packet yk = ploadu<Packet>(y + k);
    for (int j = 0; j < R; ++j) acc[j] = padd(acc[j], pmul(ploadu<Packet>(x + j * stride + k), yk));
  }
  for (int j = 0; j < R; ++j) out[j] = predux(acc[j]);
  for (; k < n; ++k)
    for (int j = 0; j < R; ++j) out[j] += x[j * stride + k] * y[k];
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

// g[k] += sum_{j < R} r[j] x_j[k] for the R rows x_j = x + j * stride (the products of one k
// added pairwise, then into g): g is read and written once for all R rows.
template <int R, class T>
void add_rows(const T* x, Index stride, Index n, const T* r, T* g) {
  using namespace Eigen::internal;
  std::array<T, R> coef;  // a copy the lambda owns: g's stores cannot alias it (no reloads)
  std::copy_n(r, R, coef.begin());
  for_each_packet<T>(n, [=](Index k, auto as) {
    using P = typename decltype(as)::type;
    const P sum = pairwise_sum<R>(
        [&](int j) { return pmul(pset1<P>(coef[j]), load(as, x + j * stride + k)); });
    pstoreu(g + k, padd(load(as, g + k), sum));
  });
}

// sum_k x[k] y[k].
template <class T>
T dot(const T* x, const T* y, Index n) {
  return dot_with(x, n, [y](Index k, auto as) { return load(as, y + k); });
}

}  // namespace implicitreg
