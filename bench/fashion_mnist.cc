#include "bench/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"

namespace hopfield::bench {
namespace {

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};

bool ReadExactly(gzFile file, void* buffer, size_t size) {
  auto* out = static_cast<char*>(buffer);
  while (size > 0) {
    const unsigned chunk =
        static_cast<unsigned>(std::min<size_t>(size, 1u << 30));
    const int got = gzread(file, out, chunk);
    if (got <= 0) return false;
    out += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdx(const std::string& path) {
  // gzopen reads plain files transparently.
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  uint8_t magic[4];
  if (!ReadExactly(file.get(), magic, 4) || magic[0] != 0 || magic[1] != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not an IDX file"));
  }
  if (magic[2] != 0x08) {
    return absl::DataLossError(absl::StrCat(path, ": IDX type 0x",
                                            absl::Hex(magic[2]),
                                            " unsupported, expected 0x08"));
  }
  IdxArray array;
  size_t total = 1;
  for (int i = 0; i < magic[3]; ++i) {
    uint8_t be[4];
    if (!ReadExactly(file.get(), be, 4)) {
      return absl::DataLossError(absl::StrCat(path, ": truncated header"));
    }
    const uint32_t extent = (uint32_t{be[0]} << 24) | (uint32_t{be[1]} << 16) |
                            (uint32_t{be[2]} << 8) | uint32_t{be[3]};
    array.shape.push_back(extent);
    total *= extent;
  }
  array.data.resize(total);
  if (!ReadExactly(file.get(), array.data.data(), total)) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated payload, expected ", total, " bytes"));
  }
  return array;
}

absl::StatusOr<FashionMnist> LoadFashionMnist(absl::string_view split,
                                              int limit) {
  const std::string images =
      absl::StrCat(kFashionMnistDir, "/", split, "-images-idx3-ubyte.gz");
  const std::string labels =
      absl::StrCat(kFashionMnistDir, "/", split, "-labels-idx1-ubyte.gz");
  absl::StatusOr<IdxArray> image_array = ReadIdx(images);
  if (!image_array.ok()) {
    if (absl::IsNotFound(image_array.status())) {
      return absl::NotFoundError(
          absl::StrCat(image_array.status().message(),
                       " (install the Debian package dataset-fashion-mnist)"));
    }
    return image_array.status();
  }
  absl::StatusOr<IdxArray> label_array = ReadIdx(labels);
  if (!label_array.ok()) return label_array.status();
  if (image_array->shape.size() != 3 || label_array->shape.size() != 1 ||
      image_array->shape[0] != label_array->shape[0]) {
    return absl::DataLossError(
        absl::StrCat(images, ": unexpected shape for Fashion-MNIST"));
  }
  FashionMnist data;
  data.count = std::min(limit, static_cast<int>(image_array->shape[0]));
  data.dim = static_cast<int>(image_array->shape[1] * image_array->shape[2]);
  const size_t values =
      static_cast<size_t>(data.count) * static_cast<size_t>(data.dim);
  data.pixels.resize(values);
  for (size_t i = 0; i < values; ++i) {
    data.pixels[i] = static_cast<float>(image_array->data[i]) / 255.0f;
  }
  data.labels.assign(label_array->data.begin(),
                     label_array->data.begin() + data.count);
  return data;
}

}  // namespace hopfield::bench
