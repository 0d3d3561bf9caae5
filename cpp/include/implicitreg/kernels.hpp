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

// sum_k x[k] y[k].
template <class T>
T dot(const T* x, const T* y, Index n) {
  return dot_with(x, n, [y](Index k, auto as) { return load(as, y + k); });
}

}  // namespace implicitreg
