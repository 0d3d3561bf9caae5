// Counter-based random numbers: Philox4x64-10 (Salmon et al., SC'11), the same generator as
// numpy.random.Philox, so numpy is a known-answer oracle. Every draw is a pure function of
// (seed, replica, step, purpose, index): results do not depend on the thread count, and a
// resumed run continues the exact stream of an uninterrupted one.
#pragma once

#include <cmath>
#include <cstdint>

namespace implicitreg {

struct Philox4x64 {
  using u64 = std::uint64_t;
  struct Block {
    u64 v[4];
  };

  static inline void mulhilo(u64 a, u64 b, u64& hi, u64& lo) {
    const __uint128_t p = static_cast<__uint128_t>(a) * b;
    hi = static_cast<u64>(p >> 64);
    lo = static_cast<u64>(p);
  }

  // One block of 4 x 64 random bits for counter `c` and key `k` (10 rounds).
  static inline Block generate(Block c, u64 k0, u64 k1) {
    constexpr u64 M0 = 0xD2E7470EE14C6C93ULL, M1 = 0xCA5A826395121157ULL;
    constexpr u64 W0 = 0x9E3779B97F4A7C15ULL, W1 = 0xBB67AE8584CAA73BULL;
    for (int round = 0; round < 10; ++round) {
      u64 hi0, lo0, hi1, lo1;
      mulhilo(M0, c.v[0], hi0, lo0);
      mulhilo(M1, c.v[2], hi1, lo1);
      c = Block{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
      k0 += W0;
      k1 += W1;
    }
    return c;
  }
};

// splitmix64: spreads a user seed into a Philox key (adjacent seeds give unrelated keys).
inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// What a stream of draws is for; part of the counter so that streams never overlap.
enum class Purpose : std::uint64_t { batch = 1, label_noise = 2, param_noise = 3, permutation = 4 };

// The draws of one (replica, step, purpose): counter = (step, replica, block, purpose).
class Stream {
 public:
  using u64 = std::uint64_t;

  Stream(u64 key0, u64 key1, u64 replica, u64 step, Purpose purpose)
      : k0_(key0), k1_(key1), ctr_{{step, replica, 0, static_cast<u64>(purpose)}} {}

  u64 next_u64() {
    if (pos_ == 4) {
      buf_ = Philox4x64::generate(ctr_, k0_, k1_);
      ++ctr_.v[2];
      pos_ = 0;
    }
    return buf_.v[pos_++];
  }

  // Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n): Lemire's multiply-shift; the bias is below n / 2^64.
  u64 below(u64 n) { return static_cast<u64>((static_cast<__uint128_t>(next_u64()) * n) >> 64); }

  // Standard normal by Box-Muller; both variates of a pair are used.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = static_cast<double>((next_u64() >> 11) + 1) * 0x1.0p-53;  // (0, 1]
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925286766559 * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  // Random sign, +1 or -1 with probability 1/2 each.
  double sign() { return (next_u64() >> 63) ? 1.0 : -1.0; }

 private:
  u64 k0_, k1_;
  Philox4x64::Block ctr_;
  Philox4x64::Block buf_{};
  int pos_ = 4;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

struct Key {
  std::uint64_t k0, k1;
  explicit Key(std::uint64_t seed)
      : k0(splitmix64(seed)), k1(splitmix64(seed ^ 0x6A09E667F3BCC909ULL)) {}
  Stream stream(std::uint64_t replica, std::uint64_t step, Purpose purpose) const {
    return Stream(k0, k1, replica, step, purpose);
  }
};

}  // namespace implicitreg
