// Small vector kernels on Eigen packets, shared by the models' hot loops. Reductions use a fixed
// order for each build (no -ffast-math): results are reproducible, not merely close.
#pragma once

#include "config.hpp"

namespace implicitreg {

// sum_k x[k] y[k] in four packet accumulators (independent chains: one chain is bound by the add
// latency), reduced pairwise.
template <class T>
T dot(const T* x, const T* y, Index n) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index P = packet_traits<T>::size;
  Packet a0 = pset1<Packet>(T(0)), a1 = a0, a2 = a0, a3 = a0;
  Index k = 0;
  for (; k + 4 * P <= n; k += 4 * P) {
    a0 = padd(a0, pmul(ploadu<Packet>(x + k), ploadu<Packet>(y + k)));
    a1 = padd(a1, pmul(ploadu<Packet>(x + k + P), ploadu<Packet>(y + k + P)));
    a2 = padd(a2, pmul(ploadu<Packet>(x + k + 2 * P), ploadu<Packet>(y + k + 2 * P)));
    a3 = padd(a3, pmul(ploadu<Packet>(x + k + 3 * P), ploadu<Packet>(y + k + 3 * P)));
  }
  for (; k + P <= n; k += P) a0 = padd(a0, pmul(ploadu<Packet>(x + k), ploadu<Packet>(y + k)));
  T acc = predux(padd(padd(a0, a1), padd(a2, a3)));
  for (; k < n; ++k) acc += x[k] * y[k];
  return acc;
}

}  // namespace implicitreg
