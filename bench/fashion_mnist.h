// File: fashion_mnist.h
//
// A small reader for IDX files (the MNIST family's format: big-endian
// header, uint8 payload), plain or gzip-compressed, and a loader for
// Debian's `dataset-fashion-mnist` as float patterns in [0, 1].
//
//   absl::StatusOr<FashionMnist> data = LoadFashionMnist("train", 60000);
#ifndef HOPFIELD_BENCH_FASHION_MNIST_H_
#define HOPFIELD_BENCH_FASHION_MNIST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hopfield::bench {

// Where Debian's dataset-fashion-mnist installs its files.
inline constexpr absl::string_view kFashionMnistDir =
    "/usr/share/datasets/fashion-mnist";

// An IDX array of unsigned bytes: shape (e.g. {60000, 28, 28}) and data in
// row-major order.
struct IdxArray {
  std::vector<uint32_t> shape;
  std::vector<uint8_t> data;
};

// Reads an IDX file of type 0x08 (unsigned byte), gzip or plain.
// Errors: NOT_FOUND if it cannot be opened; DATA_LOSS for a bad magic
// number, an unsupported type or a truncated payload.
absl::StatusOr<IdxArray> ReadIdx(const std::string& path);

// Fashion-MNIST images as patterns: `count` x 784 floats (pixel / 255),
// row i = image i, and their labels.
struct FashionMnist {
  int count = 0;
  int dim = 0;
  std::vector<float> pixels;
  std::vector<uint8_t> labels;
};

// Loads the first `limit` images of `split` ("train" or "t10k").
// Errors: as ReadIdx; NOT_FOUND names the package to install.
absl::StatusOr<FashionMnist> LoadFashionMnist(absl::string_view split,
                                              int limit);

}  // namespace hopfield::bench

#endif  // HOPFIELD_BENCH_FASHION_MNIST_H_
