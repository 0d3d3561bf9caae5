// Counter-based random numbers: Philox4x64-10 (Salmon et al., SC'11), the same generator as
// numpy.random.Philox, so numpy is a known-answer oracle. Every draw is a pure function of
// (seed, replica, step, purpose, index): results do not depend on the thread count, and a
// resumed run continues the exact stream of an uninterrupted one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define IMPLICITREG_PHILOX_X8 1
#endif

namespace implicitreg {

struct Philox4x64 {
  using u64 = std::uint64_t;
  struct Block {
    u64 v[4];
  };

  // The multipliers and Weyl key increments of Philox4x64 (Random123).
  static constexpr u64 M0 = 0xD2E7470EE14C6C93ULL, M1 = 0xCA5A826395121157ULL;
  static constexpr u64 W0 = 0x9E3779B97F4A7C15ULL, W1 = 0xBB67AE8584CAA73BULL;

  static inline void mulhilo(u64 a, u64 b, u64& hi, u64& lo) {
    const __uint128_t p = static_cast<__uint128_t>(a) * b;
    hi = static_cast<u64>(p >> 64);
    lo = static_cast<u64>(p);
  }

  // One block of 4 x 64 random bits for counter `c` and key `k` (10 rounds).
  static inline Block generate(Block c, u64 k0, u64 k1) {
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

#ifdef IMPLICITREG_PHILOX_X8
  // Eight blocks at once, lane l of c[w] holding word w of block l: the same rounds as
  // generate(), with the 64 x 64 -> 128 products in AVX-512 (the low half by vpmullq, the high
  // half from four 32 x 32 products), so eight counters cost about what two scalar ones do.
  static void generate8(__m512i c[4], u64 k0, u64 k1) {
    const __m512i m0 = _mm512_set1_epi64(static_cast<long long>(M0));
    const __m512i m1 = _mm512_set1_epi64(static_cast<long long>(M1));
    const __m512i m0_hi = _mm512_set1_epi64(static_cast<long long>(M0 >> 32));
    const __m512i m1_hi = _mm512_set1_epi64(static_cast<long long>(M1 >> 32));
    const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFFLL);
    const auto mulhi = [low32](__m512i x, __m512i m, __m512i m_hi) {
      const __m512i x_hi = _mm512_srli_epi64(x, 32);
      const __m512i ll = _mm512_mul_epu32(x, m), lh = _mm512_mul_epu32(x, m_hi);
      const __m512i hl = _mm512_mul_epu32(x_hi, m), hh = _mm512_mul_epu32(x_hi, m_hi);
      const __m512i t = _mm512_add_epi64(hl, _mm512_srli_epi64(ll, 32));
      const __m512i u = _mm512_add_epi64(lh, _mm512_and_si512(t, low32));
      return _mm512_add_epi64(_mm512_add_epi64(hh, _mm512_srli_epi64(t, 32)),
                              _mm512_srli_epi64(u, 32));
    };
    for (int round = 0; round < 10; ++round) {
      const __m512i hi0 = mulhi(c[0], m0, m0_hi), lo0 = _mm512_mullo_epi64(c[0], m0);
      const __m512i hi1 = mulhi(c[2], m1, m1_hi), lo1 = _mm512_mullo_epi64(c[2], m1);
      // 0x96: a ^ b ^ c in one instruction.
      c[0] =
          _mm512_ternarylogic_epi64(hi1, c[1], _mm512_set1_epi64(static_cast<long long>(k0)), 0x96);
      c[1] = lo1;
      c[2] =
          _mm512_ternarylogic_epi64(hi0, c[3], _mm512_set1_epi64(static_cast<long long>(k1)), 0x96);
      c[3] = lo0;
      k0 += W0;
      k1 += W1;
    }
  }
#endif
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

  // The Philox counter of block `block` of the stream of (replica, step, purpose).
  static Philox4x64::Block counter(u64 replica, u64 step, Purpose purpose, u64 block) {
    return {{step, replica, block, static_cast<u64>(purpose)}};
  }

  Stream(u64 key0, u64 key1, u64 replica, u64 step, Purpose purpose)
      : k0_(key0), k1_(key1), ctr_(counter(replica, step, purpose, 0)) {}

  // The same stream, its first block already computed (StepStreams).
  Stream(u64 key0, u64 key1, u64 replica, u64 step, Purpose purpose, const Philox4x64::Block& first)
      : k0_(key0), k1_(key1), ctr_(counter(replica, step, purpose, 1)), filled_(4) {
    for (int w = 0; w < 4; ++w) buf_[w] = first.v[w];
  }

  u64 next_u64() {
    if (pos_ == filled_) refill();
    return buf_[pos_++];
  }

  // Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n): Lemire's multiply-shift; the bias is below n / 2^64.
  u64 below(u64 n) { return below(next_u64(), n); }
  static u64 below(u64 word, u64 n) {
    return static_cast<u64>((static_cast<__uint128_t>(word) * n) >> 64);
  }

  // Standard normal by the 256-layer ziggurat (Marsaglia & Tsang 2000), in the variant of
  // numpy's Generator.standard_normal: one 64-bit draw gives the layer (8 bits), the sign (1)
  // and a 52-bit abscissa; 99% of draws end after one multiply and one compare. Exact: the rare
  // draws outside the layer's core are accepted or rejected against the density itself.
  double normal();

  // n standard normals passed in order to sink(i, z): the numbers of n calls of normal(), with
  // the buffer position kept in a register between draws (normal() keeps it in the object, so
  // that each draw waits for the previous one's store of it).
  template <class Sink>
  void normals(std::size_t n, Sink sink);

  // Random sign, +1 or -1 with probability 1/2 each.
  double sign() { return (next_u64() >> 63) ? 1.0 : -1.0; }

 private:
  bool outside_core(int layer, u64 abscissa, double x, double& accepted);

  // The next block, or once a stream has used one, the next four at once: independent
  // blocks overlap in the pipeline (one block is a chain of ten dependent multiplies). The
  // sequence of words is the same either way.
  [[gnu::noinline]] void refill() {
    const int blocks = ctr_.v[2] == 0 ? 1 : kAhead;
    for (int b = 0; b < blocks; ++b) {
      Philox4x64::Block c = ctr_;
      c.v[2] += static_cast<u64>(b);
      const Philox4x64::Block out = Philox4x64::generate(c, k0_, k1_);
      for (int w = 0; w < 4; ++w) buf_[4 * b + w] = out.v[w];
    }
    ctr_.v[2] += static_cast<u64>(blocks);
    filled_ = 4 * blocks;
    pos_ = 0;
  }

  static constexpr int kAhead = 4;
  u64 k0_, k1_;
  Philox4x64::Block ctr_;
  u64 buf_[4 * kAhead];  // written by refill() before any read
  int pos_ = 0, filled_ = 0;
};

// The ziggurat's layers: x_i (abscissae), f_i = exp(-x_i^2/2), and the integer bounds k_i below
// which a 52-bit abscissa lies inside layer i's rectangle core. Computed once at load time from
// the tail start r and the common layer area v (Marsaglia & Tsang's construction with 2^52).
struct Ziggurat {
  static constexpr double r = 3.6541528853610087963519472518;
  static constexpr double inv_r = 0.27366123732975827203338247596;
  std::uint64_t k[256];
  double w[256], f[256];

  Ziggurat() {
    const double m = 4503599627370496.0;  // 2^52
    // The common area of a layer: r f(r) + integral of f beyond r (with erfc, rounded to double;
    // Marsaglia & Tsang's 12-digit value leaves the layers 1e-10 off).
    const double v = 0.004928673233974658;
    double dn = r, tn = dn;
    const double q = v / std::exp(-0.5 * dn * dn);
    k[0] = static_cast<std::uint64_t>((dn / q) * m);
    k[1] = 0;
    w[0] = q / m;
    w[255] = dn / m;
    f[0] = 1.0;
    f[255] = std::exp(-0.5 * dn * dn);
    for (int i = 254; i >= 1; --i) {
      dn = std::sqrt(-2.0 * std::log(v / dn + std::exp(-0.5 * dn * dn)));
      k[i + 1] = static_cast<std::uint64_t>((dn / tn) * m);
      tn = dn;
      f[i] = std::exp(-0.5 * dn * dn);
      w[i] = dn / m;
    }
  }
};

inline const Ziggurat ziggurat_tables;

// What one 64-bit word gives the ziggurat: its layer, abscissa and candidate x, and whether x
// lies in the layer's core (then it is the variate).
struct ZigguratDraw {
  int layer;
  std::uint64_t abscissa;
  double x;
  bool in_core;

  explicit ZigguratDraw(std::uint64_t bits)
      : layer(static_cast<int>(bits & 0xff)), abscissa((bits >> 9) & 0x000fffffffffffffULL) {
    // Below 2^52: a signed conversion is exact and one instruction (unsigned is not, on AVX2).
    // The sign by a multiply (exact): a branch on a random bit mispredicts half the time.
    x = (1.0 - 2.0 * static_cast<double>((bits >> 8) & 1)) *
        static_cast<double>(static_cast<std::int64_t>(abscissa)) * ziggurat_tables.w[layer];
    in_core = abscissa < ziggurat_tables.k[layer];
  }
};

// The fast path (99% of draws) is small enough to inline; the rest is a call.
inline double Stream::normal() {
  for (;;) {
    const ZigguratDraw d(next_u64());
    if (d.in_core) return d.x;
    double accepted;
    if (outside_core(d.layer, d.abscissa, d.x, accepted)) return accepted;
  }
}

template <class Sink>
void Stream::normals(std::size_t n, Sink sink) {
  std::size_t i = 0;
  while (i < n) {
    if (pos_ == filled_) refill();
    int p = pos_;
    const int end = filled_;
    while (p < end && i < n) {  // the draws in their layer's core (99%)
      const ZigguratDraw d(buf_[p]);
      if (!d.in_core) break;
      sink(i++, d.x);
      ++p;
    }
    pos_ = p;
    if (p == end || i == n) continue;
    // buf_[p] lies outside its layer's core. As in normal(): the density test may draw more
    // words (and refill); the next round goes on from there.
    const ZigguratDraw d(buf_[pos_++]);
    double accepted;
    if (outside_core(d.layer, d.abscissa, d.x, accepted)) sink(i++, accepted);
  }
}

// A draw outside its layer's core: true (and the variate) if accepted against the density.
[[gnu::noinline]] inline bool Stream::outside_core(int layer, u64 abscissa, double x,
                                                   double& accepted) {
  const Ziggurat& z = ziggurat_tables;
  if (layer == 0) {  // the tail beyond r, by Marsaglia's exponential rejection
    for (;;) {
      const double xx = -Ziggurat::inv_r * std::log1p(-uniform());
      const double yy = -std::log1p(-uniform());
      if (yy + yy > xx * xx) {
        accepted = ((abscissa >> 8) & 1) ? -(Ziggurat::r + xx) : Ziggurat::r + xx;
        return true;
      }
    }
  }
  accepted = x;
  return (z.f[layer - 1] - z.f[layer]) * uniform() + z.f[layer] < std::exp(-0.5 * x * x);
}

struct Key {
  std::uint64_t k0, k1;
  explicit Key(std::uint64_t seed)
      : k0(splitmix64(seed)), k1(splitmix64(seed ^ 0x6A09E667F3BCC909ULL)) {}
  Stream stream(std::uint64_t replica, std::uint64_t step, Purpose purpose) const {
    return Stream(k0, k1, replica, step, purpose);
  }
};

// The streams of one (replica, purpose) over a range of steps, with the first block of each
// computed in one pass beforehand: independent blocks keep the multiplier busy (a lone block is a
// chain of ten dependent multiplies), so a step that needs one block gets it at the throughput
// cost. at(key, replica, step) is key.stream(replica, step, purpose), filled or not.
class StepStreams {
 public:
  using u64 = std::uint64_t;

  explicit StepStreams(Purpose purpose) : purpose_(purpose) {}

  void fill(const Key& key, u64 replica, std::int64_t from, std::int64_t to) {
    k0_ = key.k0;
    k1_ = key.k1;
    replica_ = replica;
    from_ = from;
    const std::size_t n = static_cast<std::size_t>(std::max<std::int64_t>(to - from, 0));
    words_.resize(4 * n);
    std::size_t i = 0;
#ifdef IMPLICITREG_PHILOX_X8
    for (; i + 8 <= n; i += 8) {
      // Steps from + i + l in lane l: the counter of step from + i, its step word plus l.
      const Philox4x64::Block first = Stream::counter(replica, from + i, purpose_, 0);
      __m512i c[4];
      for (int w = 0; w < 4; ++w) c[w] = _mm512_set1_epi64(static_cast<long long>(first.v[w]));
      c[0] = _mm512_add_epi64(c[0], _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
      Philox4x64::generate8(c, k0_, k1_);
      for (int w = 0; w < 4; ++w) _mm512_storeu_si512(&words_[w * n + i], c[w]);
    }
#endif
    for (; i < n; ++i) {
      const Philox4x64::Block b =
          Philox4x64::generate(Stream::counter(replica, from + i, purpose_, 0), k0_, k1_);
      for (int w = 0; w < 4; ++w) words_[w * n + i] = b.v[w];
    }
  }

  // The first word of the stream of `step`, a step of the range last filled (for `key` and
  // `replica`): the first draw of at(key, replica, step), read directly.
  u64 first_word(std::int64_t step) const { return words_[static_cast<std::size_t>(step - from_)]; }

  Stream at(const Key& key, u64 replica, std::int64_t step) const {
    const std::int64_t i = step - from_;
    const std::size_t n = steps();
    if (i < 0 || i >= static_cast<std::int64_t>(n) || replica != replica_ || key.k0 != k0_ ||
        key.k1 != k1_)
      return key.stream(replica, static_cast<u64>(step), purpose_);
    Philox4x64::Block first;
    for (int w = 0; w < 4; ++w) first.v[w] = words_[w * n + static_cast<std::size_t>(i)];
    return Stream(k0_, k1_, replica_, static_cast<u64>(step), purpose_, first);
  }

 private:
  std::size_t steps() const { return words_.size() / 4; }

  u64 k0_ = 0, k1_ = 0, replica_ = 0;
  Purpose purpose_;
  std::int64_t from_ = 0;
  // Word w of step from_ + i's first block at words_[w * steps() + i]: each word in one run, so
  // that eight steps' words are one vector store.
  std::vector<u64> words_;
};

}  // namespace implicitreg
