// File: testing/random_patterns.h
//
// Deterministic pattern generators for tests and benchmarks. Every function
// takes the generator, so a fixed seed gives the same data everywhere.
#ifndef HOPFIELD_CORE_TESTING_RANDOM_PATTERNS_H_
#define HOPFIELD_CORE_TESTING_RANDOM_PATTERNS_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "Eigen/Core"

namespace hopfield::testing {

// `count` standard-normal vectors of `dim` floats, concatenated.
inline std::vector<float> GaussianPatterns(std::mt19937& rng, int count,
                                           int dim) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count) *
                            static_cast<size_t>(dim));
  for (float& v : values) v = normal(rng);
  return values;
}

// `count` vectors drawn uniformly on the unit sphere in `dim` dimensions.
inline std::vector<float> UnitPatterns(std::mt19937& rng, int count, int dim) {
  std::vector<float> values = GaussianPatterns(rng, count, dim);
  for (int i = 0; i < count; ++i) {
    Eigen::Map<Eigen::VectorXf> v(
        values.data() + static_cast<size_t>(i) * static_cast<size_t>(dim), dim);
    v.normalize();
  }
  return values;
}

// `count` unit vectors g·diag(decay^k) (g standard normal), concatenated:
// crowded along the leading axes, the anisotropic set of algorithms.md
// §D.6-c where separation training helps.
inline std::vector<float> AnisotropicUnitPatterns(std::mt19937& rng, int count,
                                                  int dim, float decay = 0.7f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count) *
                            static_cast<size_t>(dim));
  for (int i = 0; i < count; ++i) {
    Eigen::Map<Eigen::VectorXf> v(
        values.data() + static_cast<size_t>(i) * static_cast<size_t>(dim), dim);
    for (int k = 0; k < dim; ++k) {
      v[k] = normal(rng) * std::pow(decay, static_cast<float>(k));
    }
    v.normalize();
  }
  return values;
}

// `count` unit vectors near a `rank`-dimensional subspace: N(0, 1)
// coefficients on `rank` fixed random unit directions (drawn from seed 77)
// plus N(0, noise²) per coordinate, normalised. Most of their energy lies
// in `rank` principal directions (what a projected index exploits).
inline std::vector<float> LowRankUnitPatterns(std::mt19937& rng, int count,
                                              int dim, int rank, float noise) {
  std::mt19937 basis_rng(77);
  const std::vector<float> basis = UnitPatterns(basis_rng, rank, dim);
  const Eigen::Map<const Eigen::MatrixXf> directions(basis.data(), dim, rank);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count) *
                            static_cast<size_t>(dim));
  Eigen::VectorXf coefficients(rank);
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < rank; ++r) coefficients[r] = normal(rng);
    Eigen::Map<Eigen::VectorXf> v(
        values.data() + static_cast<size_t>(i) * static_cast<size_t>(dim), dim);
    v = directions * coefficients;
    for (int k = 0; k < dim; ++k) v[k] += noise * normal(rng);
    v.normalize();
  }
  return values;
}

// ids 0, 0, ... (count times): "assign fresh ids".
inline std::vector<uint64_t> FreshIds(int count) {
  return std::vector<uint64_t>(static_cast<size_t>(count), 0);
}

}  // namespace hopfield::testing

#endif  // HOPFIELD_CORE_TESTING_RANDOM_PATTERNS_H_
