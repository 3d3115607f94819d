// File: fashion_mnist.h
//
// Debian's `dataset-fashion-mnist` as float patterns in [0, 1], read with
// the client's IDX reader.
//
//   absl::StatusOr<FashionMnist> data = LoadFashionMnist("train", 60000);
#ifndef HOPFIELD_BENCH_FASHION_MNIST_H_
#define HOPFIELD_BENCH_FASHION_MNIST_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hopfield::bench {

// Where Debian's dataset-fashion-mnist installs its files.
inline constexpr absl::string_view kFashionMnistDir =
    "/usr/share/datasets/fashion-mnist";

// `count` images of `dim` = 784 floats (pixel / 255), row i = image i.
struct FashionMnist {
  int count = 0;
  int dim = 0;
  std::vector<float> pixels;
};

// Loads the first `limit` images of `split` ("train" or "t10k").
// Errors: NOT_FOUND naming the package to install; DATA_LOSS for a bad file.
absl::StatusOr<FashionMnist> LoadFashionMnist(absl::string_view split,
                                              int limit);

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_FASHION_MNIST_H_
