// The one pybind11 file: converts arrays (no silent copies: every array argument is noconvert,
// the Python facade validates dtypes and shapes first), releases the GIL around compute, and
// nothing else. Each model is bound once per scalar type by bind_model<Model>(). Classes are
// module_local: the same sources are compiled into one module per instruction-set level.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <implicitreg/diagonal_linear.hpp>
#include <implicitreg/matrix_sensing.hpp>
#include <implicitreg/mlp.hpp>
#include <implicitreg/objective.hpp>
#include <implicitreg/rng.hpp>
#include <implicitreg/second_order.hpp>
#include <implicitreg/simulation.hpp>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;
using namespace implicitreg;

namespace {

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
Array<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  Array<T> a(shape);
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

template <class T>
void from_array(std::vector<T>& v, const Array<T>& a) {
  if (static_cast<std::size_t>(a.size()) != v.size())
    throw std::invalid_argument("state array has the wrong size");
  std::copy(a.data(), a.data() + a.size(), v.begin());
}

DynamicsConfig dynamics_from_dict(const py::dict& d) {
  DynamicsConfig c;
  c.lr = d["lr"].cast<double>();
  c.lr_boundaries = d["lr_boundaries"].cast<std::vector<std::int64_t>>();
  c.lr_values = d["lr_values"].cast<std::vector<double>>();
  c.sampling = static_cast<Sampling>(d["sampling"].cast<int>());
  c.batch_size = d["batch_size"].cast<Index>();
  c.label_noise = static_cast<LabelNoise>(d["label_noise"].cast<int>());
  c.sigma = d["sigma"].cast<double>();
  c.param_noise = static_cast<ParamNoise>(d["param_noise"].cast<int>());
  c.param_sigma = d["param_sigma"].cast<double>();
  c.temperature = d["temperature"].cast<double>();
  c.momentum = d["momentum"].cast<double>();
  c.weight_decay = d["weight_decay"].cast<double>();
  c.egr_mu = d["egr_mu"].cast<double>();
  c.reg_lambda = d["reg_lambda"].cast<double>();
  c.loss = LossNorm::from_name(d["loss"].cast<std::string>());
  return c;
}

RunSpec spec_from_dict(const py::dict& d) {
  RunSpec s;
  s.total_steps = d["total_steps"].cast<std::int64_t>();
  s.record_every = d["record_every"].cast<std::int64_t>();
  for (int k : d["records"].cast<std::vector<int>>()) s.records.push_back(static_cast<Record>(k));
  s.seed = d["seed"].cast<std::uint64_t>();
  s.snapshot_every = d["snapshot_every"].cast<std::int64_t>();
  s.probe_every = d["probe_every"].cast<std::int64_t>();
  s.moments = d["moments"].cast<bool>();
  s.moments_diagonal = d["moments_diagonal"].cast<bool>();
  s.burn_in = d["burn_in"].cast<std::int64_t>();
  s.divergence_bound = d["divergence_bound"].cast<double>();
  return s;
}

// Functions every model offers, whatever its parameters: outputs, Jacobian, loss and gradient,
// per-sample regularizer; and its Simulation class.
template <class Model, class PyClass>
void bind_model_methods(PyClass& cls, py::module_& m, const std::string& sim_name) {
  using T = ScalarOf<Model>;
  using WS = typename Model::Workspace;
  // A workspace per thread (and method), kept between calls: small repeated calls (an ODE
  // right-hand side, a Python loop) then allocate nothing. Large batches do not keep theirs.
  auto with_workspace = [](Index rows, auto&& compute) {
    thread_local WS ws;
    auto result = compute(ws);
    if (rows > 4096) ws = WS();
    return result;
  };
  cls.def_property_readonly("n_params", &Model::n_params)
      .def_property_readonly("n_in", &Model::n_in)
      .def_property_readonly("n_out", &Model::n_out)
      .def(
          "predict",
          [with_workspace](const Model& model, VecRef<T> theta, MatRef<T> X) {
            py::gil_scoped_release nogil;
            return with_workspace(X.rows(), [&](WS& ws) {
              model.forward(theta.data(), X, ws);
              return RowMat<T>(model.outputs(ws));
            });
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert())
      .def(
          "jacobian",
          [](const Model& model, VecRef<T> theta, MatRef<T> X) {
            Array<T> J({static_cast<py::ssize_t>(X.rows() * model.n_out()),
                        static_cast<py::ssize_t>(model.n_params())});
            MatMap<T> Jm(J.mutable_data(), X.rows() * model.n_out(), model.n_params());
            py::gil_scoped_release nogil;
            WS ws;
            model.forward(theta.data(), X, ws);
            model.jacobian(theta.data(), X, ws, Jm);
            return J;
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert())
      .def(
          "loss",
          [with_workspace](const Model& model, VecRef<T> theta, MatRef<T> X, MatRef<T> Y,
                           const std::string& norm) {
            const LossNorm ln = LossNorm::from_name(norm);
            py::gil_scoped_release nogil;
            return with_workspace(
                X.rows(), [&](WS& ws) { return loss_value(model, theta.data(), X, Y, ln, ws); });
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
          py::arg("normalization"))
      .def(
          "loss_grad",
          [with_workspace](const Model& model, VecRef<T> theta, MatRef<T> X, MatRef<T> Y,
                           const std::string& norm) {
            const LossNorm ln = LossNorm::from_name(norm);
            Vec<T> g(model.n_params());
            double value;
            {
              py::gil_scoped_release nogil;
              value = with_workspace(X.rows(), [&](WS& ws) {
                return loss_and_grad(model, theta.data(), X, Y, ln, ws, g.data());
              });
            }
            return py::make_tuple(value, std::move(g));
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
          py::arg("normalization"))
      .def(
          "regularizer_per_sample",
          [with_workspace](const Model& model, VecRef<T> theta, MatRef<T> X) {
            py::gil_scoped_release nogil;
            return with_workspace(X.rows(), [&](WS& ws) {
              return regularizer_per_sample(model, theta.data(), X, ws);
            });
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert());

  // ---- Second-order functions (second_order.hpp). Sizes are checked here too: a wrong v or
  // theta length would otherwise read out of bounds.
  auto check = [](const Model& model, const VecRef<T>& theta, const MatRef<T>& X,
                  const MatRef<T>* Y, const VecRef<T>* v) {
    if (theta.size() != model.n_params() || X.cols() != model.n_in() ||
        (Y && (Y->rows() != X.rows() || Y->cols() != model.n_out())) ||
        (v && v->size() != model.n_params()))
      throw std::invalid_argument("theta, X, Y or v has the wrong shape for this model");
  };
  using SOWS = SecondOrderWorkspace<Model>;
  // One workspace per thread and model type, shared by these methods and kept between calls: a
  // fresh one per call costs page faults (kernel time) of the order of the compute itself at
  // the W4/W5 sizes. One that grew past 64 MiB is dropped after the call, so that no large
  // buffer outlives it. (`workspace` is not generic, so there is one thread_local, not one per
  // method.)
  auto workspace = []() -> SOWS& {
    thread_local SOWS ws;
    return ws;
  };
  auto cached = [workspace](auto&& compute) {
    SOWS& ws = workspace();
    const double value = compute(ws);
    if (workspace_bytes(ws) > (std::size_t(64) << 20)) ws = SOWS();
    return value;
  };
  cls.def(
         "hvp",
         [check, cached](const Model& model, VecRef<T> theta, MatRef<T> X, MatRef<T> Y, VecRef<T> v,
                         const std::string& norm) {
           check(model, theta, X, &Y, &v);
           const LossNorm ln = LossNorm::from_name(norm);
           Vec<T> out(model.n_params());
           py::gil_scoped_release nogil;
           cached([&](SOWS& ws) {
             hvp(model, theta.data(), X, Y, ln, v.data(), ws, out.data());
             return 0.0;
           });
           return out;
         },
         py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
         py::arg("v").noconvert(), py::arg("normalization"))
      .def(
          "gnvp",
          [check, cached](const Model& model, VecRef<T> theta, MatRef<T> X, MatRef<T> Y,
                          VecRef<T> v, const std::string& norm) {
            check(model, theta, X, &Y, &v);  // G does not depend on Y; checked for symmetry
            const LossNorm ln = LossNorm::from_name(norm);
            Vec<T> out(model.n_params());
            py::gil_scoped_release nogil;
            cached([&](SOWS& ws) {
              gnvp(model, theta.data(), X, ln, v.data(), ws, out.data());
              return 0.0;
            });
            return out;
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
          py::arg("v").noconvert(), py::arg("normalization"))
      .def(
          "regularizer_and_grad",
          [check, cached](const Model& model, VecRef<T> theta, MatRef<T> X,
                          bool with_grad) -> py::tuple {
            check(model, theta, X, nullptr, nullptr);
            Vec<T> g(with_grad ? model.n_params() : 0);
            double value;
            {
              py::gil_scoped_release nogil;
              value = cached([&](SOWS& ws) {
                return regularizer_and_grad(model, theta.data(), X, ws,
                                            with_grad ? g.data() : nullptr);
              });
            }
            if (!with_grad) return py::make_tuple(value, py::none());
            return py::make_tuple(value, std::move(g));
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("with_grad") = true)
      .def(
          "egr_direction",
          [check, cached](const Model& model, VecRef<T> theta, MatRef<T> X, MatRef<T> Y, double mu,
                          const std::string& norm) {
            check(model, theta, X, &Y, nullptr);
            const LossNorm ln = LossNorm::from_name(norm);
            Vec<T> dir(model.n_params());
            double value;
            {
              py::gil_scoped_release nogil;
              value = cached([&](SOWS& ws) {
                return egr_direction(model, theta.data(), X, Y, ln, mu, ws, dir.data());
              });
            }
            return py::make_tuple(value, std::move(dir));
          },
          py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(),
          py::arg("mu"), py::arg("normalization"));

  using Sim = Simulation<Model>;
  py::class_<Sim>(m, sim_name.c_str(), py::module_local())
      .def(py::init([](const Model& model, MatRef<T> X, MatRef<T> Y, const py::dict& dyn,
                       const py::dict& spec, MatRef<T> theta0, MatRef<T> probes,
                       VecRef<T> reference) {
             return new Sim(model, X, Y, dynamics_from_dict(dyn), spec_from_dict(spec), theta0,
                            probes, reference);
           }),
           py::arg("model"), py::arg("X").noconvert(), py::arg("Y").noconvert(),
           py::arg("dynamics"), py::arg("spec"), py::arg("theta0").noconvert(),
           py::arg("probes").noconvert(), py::arg("reference").noconvert())
      .def("run", &Sim::run, py::arg("steps"), py::arg("threads"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("step", &Sim::step)
      .def("get_state",
           [](const Sim& s) {
             const auto R = static_cast<py::ssize_t>(s.replicas());
             const auto p = static_cast<py::ssize_t>(s.model().n_params());
             const RunSpec& sp = s.spec();
             py::dict st;
             st["step"] = s.step_;
             st["theta"] = RowMat<T>(s.theta_);
             st["velocity"] = RowMat<T>(s.velocity_);
             st["diverged_at"] = to_array(s.diverged_at_, {R});
             st["traces"] = to_array(
                 s.traces_, {static_cast<py::ssize_t>(sp.records.size()), R,
                             static_cast<py::ssize_t>(n_marks(sp.total_steps, sp.record_every))});
             st["snapshots"] = to_array(
                 s.snapshots_,
                 {static_cast<py::ssize_t>(n_marks(sp.total_steps, sp.snapshot_every)), R, p});
             st["probe_outputs"] =
                 to_array(s.probe_out_, {static_cast<py::ssize_t>(s.probe_out_.size())});
             st["moment_count"] =
                 to_array(s.moment_count_, {static_cast<py::ssize_t>(s.moment_count_.size())});
             st["moment_mean"] = RowMat<double>(s.moment_mean_);
             st["moment_m2"] =
                 to_array(s.moment_m2_, {static_cast<py::ssize_t>(s.moment_m2_.size())});
             return st;
           })
      .def("set_state", [](Sim& s, const py::dict& st) {
        s.step_ = st["step"].cast<std::int64_t>();
        s.theta_ = st["theta"].cast<RowMat<T>>();
        s.velocity_ = st["velocity"].cast<RowMat<T>>();
        from_array(s.diverged_at_, st["diverged_at"].cast<Array<std::int64_t>>());
        from_array(s.traces_, st["traces"].cast<Array<double>>());
        from_array(s.snapshots_, st["snapshots"].cast<Array<T>>());
        from_array(s.probe_out_, st["probe_outputs"].cast<Array<T>>());
        from_array(s.moment_count_, st["moment_count"].cast<Array<std::int64_t>>());
        s.moment_mean_ = st["moment_mean"].cast<RowMat<double>>();
        from_array(s.moment_m2_, st["moment_m2"].cast<Array<double>>());
      });
}

template <class T>
void bind_scalar(py::module_& m, const std::string& suffix) {
  using Net = MLP<T>;
  py::class_<Net> cls(m, ("MLP" + suffix).c_str(), py::module_local());
  cls.def(py::init([](const std::vector<Index>& sizes, const std::vector<std::string>& acts,
                      const std::vector<bool>& bias) {
            std::vector<Activation> a;
            for (const auto& name : acts) a.push_back(activation_from_name(name));
            return new Net(sizes, a, bias);
          }),
          py::arg("sizes"), py::arg("activations"), py::arg("bias"));
  bind_model_methods<Net>(cls, m, "SimulationMLP" + suffix);
}

template <class T>
void bind_matrix_sensing(py::module_& m, const std::string& suffix) {
  using Model = MatrixSensing<T>;
  py::class_<Model> cls(m, ("MatrixSensing" + suffix).c_str(), py::module_local());
  cls.def(py::init<Index, Index, bool>(), py::arg("d"), py::arg("k"), py::arg("asymmetric"));
  bind_model_methods<Model>(cls, m, "SimulationMatrixSensing" + suffix);
}

template <class T>
void bind_diagonal(py::module_& m, const std::string& suffix) {
  using Model = DiagonalLinear<T>;
  py::class_<Model> cls(m, ("DiagonalLinear" + suffix).c_str(), py::module_local());
  cls.def(py::init([](Index d, const std::string& kind) {
            return new Model(d, diagonal_kind_from_name(kind));
          }),
          py::arg("d"), py::arg("kind"));
  bind_model_methods<Model>(cls, m, "SimulationDiagonalLinear" + suffix);
}

// Seconds per C = A B (row-major, Eigen's GEMM as the models call it), the best of `repeats`
// timings of `calls` products: the bench's rate of this build's own GEMM engine.
template <class T>
void bind_gemm_timer(py::module_& m, const std::string& suffix) {
  m.def(("_gemm_seconds" + suffix).c_str(),
        [](const Eigen::Ref<const RowMat<T>>& A, const Eigen::Ref<const RowMat<T>>& B, int calls,
           int repeats) {
          if (A.cols() != B.rows()) throw std::invalid_argument("A and B do not multiply");
          RowMat<T> C(A.rows(), B.cols());
          double best = std::numeric_limits<double>::infinity();
          for (int r = 0; r < repeats; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int c = 0; c < calls; ++c) C.noalias() = A * B;
            const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
            best = std::min(best, dt.count() / calls);
          }
          return best;
        },
        py::arg("A").noconvert(), py::arg("B").noconvert(), py::arg("calls"), py::arg("repeats"),
        py::call_guard<py::gil_scoped_release>());
}

}  // namespace

PYBIND11_MODULE(IMPLICITREG_MODULE, m, py::mod_gil_not_used()) {
  m.doc() = "implicitreg compiled core (private; use the implicitreg package)";
  m.attr("__version__") = IMPLICITREG_VERSION;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
  m.attr("isa") = "x86-64-v4";
#elif defined(__AVX2__) && defined(__FMA__)
  m.attr("isa") = "x86-64-v3";
#else
  m.attr("isa") = "baseline";
#endif
  // Whether this CPU runs the x86-64-v3 build (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE).
  m.def("_cpu_has_x86_64_v3", [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
           __builtin_cpu_supports("avx") && __builtin_cpu_supports("popcnt");
#else
    return false;
#endif
  });
  // Whether this CPU runs the x86-64-v4 build (x86-64-v3 and AVX-512 F, BW, CD, DQ, VL, with
  // the OS saving the AVX-512 registers: libgcc's check includes XGETBV).
  m.def("_cpu_has_x86_64_v4", [] {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
  });
#ifdef IMPLICITREG_HAS_OPENMP
  m.attr("openmp") = true;
  m.def("max_threads", [] { return omp_get_max_threads(); });
#else
  m.attr("openmp") = false;
  m.def("max_threads", [] { return 1; });
#endif
  m.attr("eigen_version") = std::to_string(EIGEN_WORLD_VERSION) + "." +
                            std::to_string(EIGEN_MAJOR_VERSION) + "." +
                            std::to_string(EIGEN_MINOR_VERSION);
  bind_scalar<double>(m, "_f64");
  bind_scalar<float>(m, "_f32");
  bind_matrix_sensing<double>(m, "_f64");
  bind_matrix_sensing<float>(m, "_f32");
  bind_diagonal<double>(m, "_f64");
  bind_diagonal<float>(m, "_f32");
  bind_gemm_timer<double>(m, "_f64");
  bind_gemm_timer<float>(m, "_f32");

  // Known-answer hooks for the generator (tests only).
  m.def("_philox", [](std::array<std::uint64_t, 4> ctr, std::array<std::uint64_t, 2> key) {
    Philox4x64::Block c{{ctr[0], ctr[1], ctr[2], ctr[3]}};
    const auto b = Philox4x64::generate(c, key[0], key[1]);
    return std::array<std::uint64_t, 4>{b.v[0], b.v[1], b.v[2], b.v[3]};
  });
  m.def("_draws", [](std::uint64_t seed, std::uint64_t replica, std::uint64_t step, int purpose,
                     const std::string& kind, Index count) {
    Stream s = Key(seed).stream(replica, step, static_cast<Purpose>(purpose));
    Vec<double> out(count);
    if (kind == "normals") {  // the bulk form (Stream::normals): the same numbers as "normal"
      s.normals(static_cast<std::size_t>(count), [&](std::size_t i, double z) { out[i] = z; });
      return out;
    }
    for (Index i = 0; i < count; ++i) {
      if (kind == "normal")
        out[i] = s.normal();
      else if (kind == "uniform")
        out[i] = s.uniform();
      else if (kind == "sign")
        out[i] = s.sign();
      else if (kind == "raw")
        out[i] = static_cast<double>(s.next_u64() >> 11);
      else
        throw std::invalid_argument("unknown kind");
    }
    return out;
  });
}
