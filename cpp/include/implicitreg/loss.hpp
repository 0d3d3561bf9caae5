// Squared-loss normalisations, in one place. For a set of m samples with residuals r_i = f(x_i) -
// y_i (vectors for vector outputs), L = coef * (1/m if per_sample_mean) * sum_i ||r_i||^2:
//   mean_half    L = 1/(2m) sum ||r_i||^2   (default; m = batch size in a minibatch step)
//   mean         L = 1/m    sum ||r_i||^2
//   mean_quarter L = 1/(4m) sum ||r_i||^2
//   sum_half     L = 1/2    sum ||r_i||^2
//   sum_sq       L =        sum ||r_i||^2
#pragma once

#include <stdexcept>
#include <string>

namespace implicitreg {

struct LossNorm {
  double coef = 0.5;
  bool per_sample_mean = true;

  static LossNorm from_name(const std::string& name) {
    if (name == "mean_half") return {0.5, true};
    if (name == "mean") return {1.0, true};
    if (name == "mean_quarter") return {0.25, true};
    if (name == "sum_half") return {0.5, false};
    if (name == "sum_sq") return {1.0, false};
    throw std::invalid_argument("unknown loss normalization '" + name + "'");
  }
  // Factor c in L = c * sum ||r_i||^2 over m samples.
  double scale(long m) const { return per_sample_mean ? coef / static_cast<double>(m) : coef; }
};

}  // namespace implicitreg
