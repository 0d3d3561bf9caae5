// The long-horizon run engine: R independent replicas of one dynamics, advanced in chunks
// (run(k) does k steps of every replica, OpenMP across replicas, nothing parallel inside a step).
// Every random number is keyed by (seed, replica, step, purpose), so the result is the same on
// any thread count and after a resume from the state this class exposes.
//
// Records: scalars every `record_every` steps at steps 0, k, 2k, ... (clean full-data loss, R,
// ||grad L||^2, ||theta||, ||theta - reference||), parameter snapshots every `snapshot_every`
// steps, model outputs on probe inputs every `probe_every` steps, and Welford moments of theta
// over the steps after `burn_in`. A replica whose parameters become non-finite, or whose
// recorded loss exceeds `divergence_bound`, stops; `diverged_at` holds that step (-1 if none).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "dynamics.hpp"
#include "objective.hpp"
#include "second_order.hpp"

#ifdef IMPLICITREG_HAS_OPENMP
#include <omp.h>
#endif

namespace implicitreg {

enum class Record { loss = 0, regularizer = 1, grad_norm2 = 2, param_norm = 3, distance = 4 };

struct RunSpec {
  std::int64_t total_steps = 0;
  std::int64_t record_every = 1;
  std::vector<Record> records;
  std::uint64_t seed = 0;
  std::int64_t snapshot_every = 0;  // 0: no snapshots
  std::int64_t probe_every = 0;     // 0: no probe outputs
  bool moments = false;
  bool moments_diagonal = false;
  std::int64_t burn_in = 0;
  double divergence_bound = std::numeric_limits<double>::infinity();
};

// Whether a model takes a gradient step on the squared loss in one call, updating theta inside
// its backward pass (sgd_step, see mlp.hpp).
template <class Model, class = void>
struct has_sgd_step : std::false_type {};
template <class Model>
struct has_sgd_step<Model, std::void_t<decltype(std::declval<const Model&>().sgd_step(
                               nullptr, std::declval<const MatRef<ScalarOf<Model>>&>(),
                               std::declval<const MatRef<ScalarOf<Model>>&>(), ScalarOf<Model>(0),
                               std::declval<typename Model::Workspace&>(), ScalarOf<Model>(0)))>>
    : std::true_type {};

// Whether a model computes the loss gradient in one pass over the data (residual_backward, see
// quadratic.hpp).
template <class Model, class = void>
struct has_residual_backward : std::false_type {};
template <class Model>
struct has_residual_backward<Model,
                             std::void_t<decltype(std::declval<const Model&>().residual_backward(
                                 nullptr, std::declval<const MatRef<ScalarOf<Model>>&>(),
                                 std::declval<const MatRef<ScalarOf<Model>>&>(), ScalarOf<Model>(0),
                                 std::declval<typename Model::Workspace&>(), nullptr))>>
    : std::true_type {};

// Whether a model has a packed form for long runs (pack/packed, see matrix_sensing.hpp).
template <class Model, class = void>
struct has_packed_form : std::false_type {};
template <class Model>
struct has_packed_form<Model, std::void_t<decltype(std::declval<const Model&>().pack(
                                  std::declval<const RowMat<ScalarOf<Model>>&>()))>>
    : std::true_type {};

inline std::int64_t n_marks(std::int64_t total, std::int64_t every) {
  return every > 0 ? total / every + 1 : 0;
}

template <class Model>
class Simulation {
 public:
  using T = ScalarOf<Model>;

  Simulation(Model model, RowMat<T> X, RowMat<T> Y, DynamicsConfig dyn, RunSpec spec,
             const RowMat<T>& theta0, RowMat<T> probes, Vec<T> reference)
      : model_(std::move(model)),
        X_(std::move(X)),
        Y_(std::move(Y)),
        dyn_(std::move(dyn)),
        spec_(std::move(spec)),
        key_(spec_.seed),
        probes_(std::move(probes)),
        reference_(std::move(reference)) {
    if constexpr (has_packed_form<Model>::value) {  // the data once, in the faster form
      X_ = model_.pack(X_);
      probes_ = model_.pack(probes_);
      model_ = model_.packed();
    }
    // Plain SGD: the update goes into the backward pass where the model offers that.
    fused_ = has_sgd_step<Model>::value && dyn_.egr_mu == 0.0 && dyn_.reg_lambda == 0.0 &&
             dyn_.weight_decay == 0.0 && dyn_.momentum == 0.0;
    two_c_ = static_cast<T>(2 * dyn_.loss.scale(BatchSampler(dyn_, X_.rows()).batch_size()));
    one_sample_ =
        fused_ && dyn_.sampling == Sampling::replacement && dyn_.batch_size == 1 &&
        model_.n_out() == 1 && dyn_.param_noise == ParamNoise::none &&
        (dyn_.label_noise == LabelNoise::none || dyn_.label_noise == LabelNoise::gaussian);
    theta_ = theta0;
    diverged_at_.assign(theta0.rows(), -1);
    const Index R = theta0.rows(), p = model_.n_params();
    if (dyn_.momentum != 0.0) velocity_ = RowMat<T>::Zero(R, p);
    const std::int64_t nrec = n_marks(spec_.total_steps, spec_.record_every);
    traces_.assign(spec_.records.size() * R * nrec, std::numeric_limits<double>::quiet_NaN());
    snapshots_.assign(n_marks(spec_.total_steps, spec_.snapshot_every) * R * p,
                      std::numeric_limits<T>::quiet_NaN());
    probe_out_.assign(
        n_marks(spec_.total_steps, spec_.probe_every) * R * probes_.rows() * model_.n_out(),
        std::numeric_limits<T>::quiet_NaN());
    if (spec_.moments) {
      moment_count_.assign(R, 0);
      moment_mean_ = RowMat<double>::Zero(R, p);
      moment_m2_.assign(R * (spec_.moments_diagonal ? p : p * p), 0.0);
    }
    work_.resize(R);
    for (Index r = 0; r < R; ++r) observe(r, 0, theta_.row(r).data());
  }

  // Advance every live replica by up to n steps (never past total_steps).
  void run(std::int64_t n, int threads) {
    const std::int64_t begin = step_, end = std::min(step_ + n, spec_.total_steps);
    const Index R = theta_.rows();
    // Static: each replica stays on one thread for a given thread count, so its buffers (first
    // allocated by that thread, from that thread's malloc arena) never share a cache line with
    // buffers another thread writes (false sharing). Results do not depend on the schedule.
#ifdef IMPLICITREG_HAS_OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (Index r = 0; r < R; ++r) run_replica(r, begin, end);
    (void)threads;
    step_ = end;
  }

  const Model& model() const { return model_; }
  const RunSpec& spec() const { return spec_; }
  std::int64_t step() const { return step_; }
  Index replicas() const { return theta_.rows(); }

  // State, exposed for checkpoints and results.
  std::int64_t step_ = 0;
  RowMat<T> theta_, velocity_;
  std::vector<std::int64_t> diverged_at_;
  std::vector<double> traces_;  // (records kinds, replicas, marks)
  std::vector<T> snapshots_;    // (marks, replicas, p)
  std::vector<T> probe_out_;    // (marks, replicas, probes, out)
  std::vector<std::int64_t> moment_count_;
  RowMat<double> moment_mean_;
  std::vector<double> moment_m2_;  // (replicas, p, p) or (replicas, p)

 private:
  struct ReplicaWork {
    typename Model::Workspace step_ws, eval_ws;
    SecondOrderWorkspace<Model> so_ws;  // explicit regularizers only
    std::vector<Index> idx;
    StepStreams label_noise{Purpose::label_noise}, param_noise{Purpose::param_noise};
    RowMat<T> Xb, Yb;
    Vec<T> theta, velocity, grad, reg_grad;
    Vec<T> saved_theta, saved_velocity;  // at the start of a block of steps (run_replica)
  };

  // Steps between two checks for non-finite parameters. A non-finite entry stays non-finite under
  // every rule (theta is updated by adding to it: NaN stays NaN, inf stays inf or turns NaN), so
  // one check after a block finds a divergence inside it; the block is then replayed from its
  // saved start, checking every step, to find the exact step (the random numbers are keyed by
  // step, so the replay is the same run).
  static constexpr std::int64_t kCheckBlock = 256;

  void run_replica(Index r, std::int64_t begin, std::int64_t end) {
    if (diverged_at_[r] >= 0 || begin >= end) return;
    const Index p = model_.n_params();
    ReplicaWork& w = work_[r];
    // Local copies: replicas in adjacent rows must not share cache lines while stepping.
    w.theta = theta_.row(r).transpose();
    if (dyn_.momentum != 0.0) w.velocity = velocity_.row(r).transpose();
    w.grad.resize(p);
    if (dyn_.reg_lambda != 0.0) w.reg_grad.resize(p);
    BatchSampler sampler(dyn_, X_.rows());
    w.Xb.resize(sampler.batch_size(), X_.cols());
    w.Yb.resize(sampler.batch_size(), model_.n_out());
    Schedule schedule(dyn_, begin);
    for (std::int64_t s = begin; s < end;) {
      // Up to the next step with something to record (none of the steps before has any).
      const std::int64_t stop = next_observed(s + 1, std::min(end, s + kCheckBlock));
      sampler.prepare(key_, r, s, stop);
      if (dyn_.label_noise != LabelNoise::none) w.label_noise.fill(key_, r, s, stop);
      if (dyn_.param_noise != ParamNoise::none) w.param_noise.fill(key_, r, s, stop);
      if (stop > s + 1) {
        w.saved_theta = w.theta;
        if (dyn_.momentum != 0.0) w.saved_velocity = w.velocity;
      }
      if (one_sample_)
        one_sample_steps(w, r, s, stop, schedule, sampler);
      else
        for (std::int64_t t = s; t < stop; ++t) advance(w, r, t, schedule.at(t), sampler);
      if (!all_finite(w.theta.data(), p)) {
        diverged_at_[r] = stop;
        if (stop > s + 1) {
          w.theta = w.saved_theta;
          if (dyn_.momentum != 0.0) w.velocity = w.saved_velocity;
          Schedule replay(dyn_, s);
          for (std::int64_t t = s; t < stop; ++t) {
            advance(w, r, t, replay.at(t), sampler);
            if (!all_finite(w.theta.data(), p)) {
              diverged_at_[r] = t + 1;
              break;
            }
          }
        }
        break;
      }
      s = stop;
      if (!observe(r, s, w.theta.data())) break;
    }
    theta_.row(r) = w.theta.transpose();
    if (dyn_.momentum != 0.0) velocity_.row(r) = w.velocity.transpose();
  }

  // The first step in [from, limit) at which observe() has work; `limit` if none.
  std::int64_t next_observed(std::int64_t from, std::int64_t limit) const {
    auto next_multiple = [&](std::int64_t every) {
      return every > 0 ? (from + every - 1) / every * every : limit;
    };
    std::int64_t next = limit;
    if (!spec_.records.empty()) next = std::min(next, next_multiple(spec_.record_every));
    next = std::min(next, next_multiple(spec_.snapshot_every));
    if (probes_.rows() > 0) next = std::min(next, next_multiple(spec_.probe_every));
    if (spec_.moments) next = std::min(next, std::max(from, spec_.burn_in + 1));
    return std::max(next, from);
  }

  // One step of replica r from w.theta (and w.velocity): step `s` of the run, learning rate lr.
  void advance(ReplicaWork& w, Index r, std::int64_t s, double lr, BatchSampler& sampler) {
    const Index n = X_.rows(), out = model_.n_out(), B = sampler.batch_size();
    const bool full = dyn_.sampling == Sampling::full;
    if (!full) {
      sampler.draw(key_, r, s, w.idx);
      for (Index j = 0; j < B; ++j) std::copy_n(&Y_(w.idx[j], 0), out, &w.Yb(j, 0));
      if (B > 1)
        for (Index j = 0; j < B; ++j) w.Xb.row(j) = X_.row(w.idx[j]);
    } else {
      w.Yb = Y_;
    }
    if (dyn_.label_noise != LabelNoise::none) {  // one draw per entry of Yb, in storage order
      Stream noise = w.label_noise.at(key_, r, s);
      add_label_noise(dyn_.label_noise, dyn_.sigma, noise, w.Yb.data(),
                      static_cast<std::size_t>(B * out));
    }
    // One sample is a view of its row of X, not a copy.
    const MatRef<T> Xb =
        full ? MatRef<T>(X_) : (B == 1 ? MatRef<T>(X_.row(w.idx[0])) : MatRef<T>(w.Xb));
    if (dyn_.egr_mu != 0.0) {
      egr_direction(model_, w.theta.data(), Xb, MatRef<T>(w.Yb), dyn_.loss, dyn_.egr_mu, w.so_ws,
                    w.grad.data());
    } else if (fused_) {
      if constexpr (has_sgd_step<Model>::value)
        model_.sgd_step(w.theta.data(), Xb, MatRef<T>(w.Yb), two_c_, w.step_ws, static_cast<T>(lr));
    } else if constexpr (has_residual_backward<Model>::value) {
      model_.residual_backward(w.theta.data(), Xb, MatRef<T>(w.Yb), two_c_, w.step_ws,
                               w.grad.data());
    } else {
      model_.forward(w.theta.data(), Xb, w.step_ws);
      w.Yb = two_c_ * (model_.outputs(w.step_ws) - w.Yb);
      model_.seed_output(w.Yb, w.step_ws);
      model_.backward(w.theta.data(), Xb, w.step_ws, w.grad.data());
    }
    if (dyn_.reg_lambda != 0.0) {
      regularizer_and_grad(model_, w.theta.data(), Xb, w.so_ws, w.reg_grad.data());
      w.grad += static_cast<T>(dyn_.reg_lambda * static_cast<double>(n) / B) * w.reg_grad;
    }
    if (!fused_) update(w, lr);
    if (dyn_.param_noise != ParamNoise::none) add_param_noise(w, lr, r, s);
  }

  // Steps [from, to) of replica r when each is plain SGD on one sample (one_sample_): advance's
  // arithmetic, with the sample index and the label noise read straight from the first words of
  // the blocks computed ahead (the numbers advance's streams give; a ziggurat draw outside its
  // layer's core, 1%, takes the stream). No copy of the sample or its label per step.
  void one_sample_steps(ReplicaWork& w, Index r, std::int64_t from, std::int64_t to,
                        Schedule& schedule, const BatchSampler& sampler) {
    if constexpr (has_sgd_step<Model>::value) {
      const bool noisy = dyn_.label_noise == LabelNoise::gaussian;
      const auto sample = [&](std::int64_t j) {  // step from + j, asked for once, in order
        const std::int64_t t = from + j;
        const Index i = sampler.draw_one(t);
        T y = Y_(i, 0);
        if (noisy) {
          const ZigguratDraw d(w.label_noise.first_word(t));
          double eps = d.x;
          if (!d.in_core) {
            Stream noise = w.label_noise.at(key_, r, t);
            noise.normals(1, [&](std::size_t, double z) { eps = z; });
          }
          y += static_cast<T>(dyn_.sigma * eps);  // as add_label_noise
        }
        return typename Model::OneSample{&X_(i, 0), y, static_cast<T>(schedule.at(t))};
      };
      model_.sgd_steps(w.theta.data(), to - from, sample, two_c_, w.step_ws);
    }
  }

  void update(ReplicaWork& w, double lr) {
    const T lr_t = static_cast<T>(lr);
    if (dyn_.weight_decay != 0.0) w.grad += static_cast<T>(dyn_.weight_decay) * w.theta;
    if (dyn_.momentum != 0.0) {
      w.velocity = static_cast<T>(dyn_.momentum) * w.velocity + w.grad;
      w.theta -= lr_t * w.velocity;
    } else {
      w.theta -= lr_t * w.grad;
    }
  }

  void add_param_noise(ReplicaWork& w, double lr, Index r, std::int64_t s) {
    const double scale = dyn_.param_noise == ParamNoise::gaussian
                             ? dyn_.param_sigma
                             : std::sqrt(2.0 * lr * dyn_.temperature);
    Stream noise = w.param_noise.at(key_, r, s);
    for (Index k = 0; k < w.theta.size(); ++k) w.theta[k] += static_cast<T>(scale * noise.normal());
  }

  // Records whatever falls due at `step` for parameters `th`. False if the replica diverged.
  bool observe(Index r, std::int64_t step, const T* th) {
    const Index R = theta_.rows(), p = model_.n_params();
    ReplicaWork& w = work_[r];
    if (spec_.record_every > 0 && step % spec_.record_every == 0 && !spec_.records.empty()) {
      const std::int64_t nrec = n_marks(spec_.total_steps, spec_.record_every);
      const std::int64_t m = step / spec_.record_every;
      for (std::size_t k = 0; k < spec_.records.size(); ++k) {
        const double v = scalar(spec_.records[k], th, w);
        traces_[(k * R + r) * nrec + m] = v;
        if (spec_.records[k] == Record::loss &&
            !(std::isfinite(v) && v <= spec_.divergence_bound)) {
          diverged_at_[r] = step;
          return false;
        }
      }
    }
    if (spec_.snapshot_every > 0 && step % spec_.snapshot_every == 0) {
      const std::int64_t m = step / spec_.snapshot_every;
      std::copy(th, th + p, snapshots_.begin() + (m * R + r) * p);
    }
    if (spec_.probe_every > 0 && step % spec_.probe_every == 0 && probes_.rows() > 0) {
      const std::int64_t m = step / spec_.probe_every;
      const Index block = probes_.rows() * model_.n_out();
      model_.forward(th, probes_, w.eval_ws);
      const RowMat<T>& F = model_.outputs(w.eval_ws);
      std::copy(F.data(), F.data() + block, probe_out_.begin() + (m * R + r) * block);
    }
    if (spec_.moments && step > spec_.burn_in) accumulate_moments(r, th);
    return true;
  }

  double scalar(Record kind, const T* th, ReplicaWork& w) {
    const Index p = model_.n_params();
    switch (kind) {
      case Record::loss: return loss_value(model_, th, X_, Y_, dyn_.loss, w.eval_ws);
      case Record::regularizer:
        return static_cast<double>(regularizer_per_sample(model_, th, X_, w.eval_ws).sum());
      case Record::grad_norm2: {
        Vec<T> g(p);
        loss_and_grad(model_, th, X_, Y_, dyn_.loss, w.eval_ws, g.data());
        return static_cast<double>(g.squaredNorm());
      }
      case Record::param_norm: return static_cast<double>(ConstVecMap<T>(th, p).norm());
      case Record::distance:
        return static_cast<double>((ConstVecMap<T>(th, p) - reference_).norm());
    }
    return 0.0;
  }

  // Welford's update of the mean and the (co)variance sums, in double.
  void accumulate_moments(Index r, const T* th) {
    const Index p = model_.n_params();
    const double count = static_cast<double>(++moment_count_[r]);
    Eigen::Map<Eigen::RowVectorXd> mean(moment_mean_.row(r).data(), p);
    const Eigen::RowVectorXd x = ConstVecMap<T>(th, p).template cast<double>().transpose();
    const Eigen::RowVectorXd delta = x - mean;
    mean += delta / count;
    const Eigen::RowVectorXd delta2 = x - mean;
    if (spec_.moments_diagonal) {
      Eigen::Map<Eigen::RowVectorXd> m2(moment_m2_.data() + r * p, p);
      m2.array() += delta.array() * delta2.array();
    } else {
      Eigen::Map<RowMat<double>> m2(moment_m2_.data() + r * p * p, p, p);
      m2.noalias() += delta.transpose() * delta2;
    }
  }

  Model model_;
  RowMat<T> X_, Y_;
  DynamicsConfig dyn_;
  RunSpec spec_;
  Key key_;
  RowMat<T> probes_;
  Vec<T> reference_;
  bool fused_;       // plain SGD on a model with sgd_step
  bool one_sample_;  // and one sample per step, its label plain or with Gaussian noise
  T two_c_;          // dL/dF = two_c (F - Y) for one batch
  std::vector<ReplicaWork> work_;
};

}  // namespace implicitreg
