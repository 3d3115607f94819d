#include "bench/fashion_mnist.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

#include "client/pattern_files.h"

namespace hopfield::bench {

absl::StatusOr<FashionMnist> LoadFashionMnist(absl::string_view split,
                                              int limit) {
  const std::string path =
      absl::StrCat(kFashionMnistDir, "/", split, "-images-idx3-ubyte.gz");
  absl::StatusOr<client::PatternMatrix> images = client::ReadIdx(path);
  if (!images.ok()) {
    if (absl::IsNotFound(images.status())) {
      return absl::NotFoundError(
          absl::StrCat(images.status().message(),
                       " (install the Debian package dataset-fashion-mnist)"));
    }
    return images.status();
  }
  FashionMnist data;
  data.count = static_cast<int>(
      std::min(static_cast<size_t>(std::max(limit, 0)), images->rows));
  data.dim = static_cast<int>(images->cols);
  images->values.resize(static_cast<size_t>(data.count) * images->cols);
  data.pixels = std::move(images->values);
  return data;
}

}  // namespace hopfield::bench
