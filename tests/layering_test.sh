#!/bin/sh
# Fails if core/ includes anything of the network, protobuf, metrics or
# storage layers: core knows Eigen, abseil, hnswlib and the standard library.
# The one exception is rocksdb_storage.{h,cc}, the RocksDB implementation of
# core's Storage interface, built as its own target (hopfield_storage) that
# hopfield_core does not link.
root="${1:-$(dirname "$0")/..}"
bad=$(grep -rnE '#include *[<"](grpc|grpcpp|google/protobuf|prometheus|rocksdb)/|#include *[<"][^">]*\.pb\.h' \
  "$root/core" --include='*.h' --include='*.cc' --exclude='rocksdb_storage*' || true)
if [ -n "$bad" ]; then
  echo "core/ must not include network, protobuf, metrics or storage headers:"
  echo "$bad"
  exit 1
fi
echo "layering ok"
