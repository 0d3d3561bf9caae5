// The update rules of a simulation, as plain configuration plus the per-step pieces they share:
// which samples a step uses, the noise added to their labels, and the parameter update.
//
//   minibatch:  full (every sample), i.i.d. with replacement, or reshuffled epochs (without
//               replacement within an epoch; the stream of permutations runs across steps)
//   label noise: y_i + sigma * eps with eps gaussian N(0,1), uniform U(-sqrt3, sqrt3) or a random
//               sign, drawn fresh for every label a step uses (so sigma is always the std. dev.)
//   explicit:   g = grad [L_batch + egr_mu ||grad L_batch||^2 + reg_lambda (n/B) R_batch], with
//               R_batch = sum over the batch of ||d f(x_i)/d theta||^2 (so (n/B) R_batch is an
//               unbiased estimate of R); EGR costs one R-op pass, the R term one more backward
//   update:     g += weight_decay * theta; heavy ball v = momentum * v + g;
//               theta -= lr(step) * v; then parameter noise: theta += param_sigma * xi
//               (isotropic Gaussian) or theta += sqrt(2 lr T) * xi (Langevin / SGLD, temperature
//               T).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "loss.hpp"
#include "rng.hpp"

namespace implicitreg {

enum class Sampling { full = 0, replacement = 1, epochs = 2 };
enum class LabelNoise { none = 0, gaussian = 1, uniform = 2, sign = 3 };
enum class ParamNoise { none = 0, gaussian = 1, langevin = 2 };

struct DynamicsConfig {
  double lr = 0.01;
  // Piecewise-constant schedule: lr(step) = lr_values[k], k = number of boundaries <= step.
  // Empty means the constant lr.
  std::vector<std::int64_t> lr_boundaries;
  std::vector<double> lr_values;
  Sampling sampling = Sampling::full;
  Index batch_size = 0;  // ignored for Sampling::full
  LabelNoise label_noise = LabelNoise::none;
  double sigma = 0.0;
  ParamNoise param_noise = ParamNoise::none;
  double param_sigma = 0.0;
  double temperature = 0.0;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double egr_mu = 0.0;      // explicit gradient regularization (Barrett & Dherin)
  double reg_lambda = 0.0;  // explicit implicit-regularizer term (Blanc et al.)
  LossNorm loss;
};

// The learning rate of each step, advanced step by step without a search.
class Schedule {
 public:
  Schedule(const DynamicsConfig& d, std::int64_t step) : d_(d) {
    while (next_ < d_.lr_boundaries.size() && d_.lr_boundaries[next_] <= step) ++next_;
  }
  double at(std::int64_t step) {
    if (d_.lr_values.empty()) return d_.lr;
    while (next_ < d_.lr_boundaries.size() && d_.lr_boundaries[next_] <= step) ++next_;
    return d_.lr_values[next_];
  }

 private:
  const DynamicsConfig& d_;
  std::size_t next_ = 0;
};

// y[i] += sigma * eps_i for i < n, the eps_i drawn from s in order (Gaussian ones in bulk, by
// Stream::normals); the kind is dispatched once, not per draw.
template <class T>
void add_label_noise(LabelNoise kind, double sigma, Stream& s, T* y, std::size_t n) {
  const auto add = [&](std::size_t i, double eps) { y[i] += static_cast<T>(sigma * eps); };
  switch (kind) {
    case LabelNoise::gaussian: s.normals(n, add); break;
    case LabelNoise::uniform:
      for (std::size_t i = 0; i < n; ++i) add(i, 1.7320508075688772935 * (2.0 * s.uniform() - 1.0));
      break;
    case LabelNoise::sign:
      for (std::size_t i = 0; i < n; ++i) add(i, s.sign());
      break;
    case LabelNoise::none: break;
  }
}

// Picks the sample indices of each step; holds the current epoch's permutation.
class BatchSampler {
 public:
  BatchSampler(const DynamicsConfig& d, Index n) : d_(d), n_(n) {}

  Index batch_size() const { return d_.sampling == Sampling::full ? n_ : d_.batch_size; }

  // Computes ahead the first random block of each step in [from, to) that draw() will use.
  void prepare(const Key& key, std::uint64_t replica, std::int64_t from, std::int64_t to) {
    if (d_.sampling == Sampling::replacement) ahead_.fill(key, replica, from, to);
  }

  // The one index of `step` (replacement sampling, batch size 1, a step of the range last
  // prepared): draw()'s index, from the block computed ahead.
  Index draw_one(std::int64_t step) const {
    return static_cast<Index>(
        Stream::below(ahead_.first_word(step), static_cast<std::uint64_t>(n_)));
  }

  void draw(const Key& key, std::uint64_t replica, std::int64_t step, std::vector<Index>& idx) {
    const Index B = batch_size();
    idx.resize(B);
    if (d_.sampling == Sampling::full) {
      std::iota(idx.begin(), idx.end(), Index(0));
    } else if (d_.sampling == Sampling::replacement) {
      Stream s = ahead_.at(key, replica, step);
      for (Index j = 0; j < B; ++j) idx[j] = static_cast<Index>(s.below(n_));
    } else {
      // Position q in the endless stream of permutations: epoch q / n, slot q % n.
      const std::int64_t first = step * static_cast<std::int64_t>(B);
      for (Index j = 0; j < B; ++j) {
        const std::int64_t q = first + j;
        const std::int64_t epoch = q / n_;
        if (epoch != perm_epoch_) make_permutation(key, replica, epoch);
        idx[j] = perm_[q % n_];
      }
    }
  }

 private:
  void make_permutation(const Key& key, std::uint64_t replica, std::int64_t epoch) {
    perm_.resize(n_);
    std::iota(perm_.begin(), perm_.end(), Index(0));
    Stream s = key.stream(replica, static_cast<std::uint64_t>(epoch), Purpose::permutation);
    for (Index i = n_ - 1; i > 0; --i) std::swap(perm_[i], perm_[s.below(i + 1)]);  // Fisher-Yates
    perm_epoch_ = epoch;
  }

  const DynamicsConfig& d_;
  Index n_;
  std::vector<Index> perm_;
  std::int64_t perm_epoch_ = -1;
  StepStreams ahead_{Purpose::batch};
};

}  // namespace implicitreg
