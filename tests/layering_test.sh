#!/bin/sh
# Fails if core/ includes anything of the network, protobuf, metrics or
# storage layers: core knows Eigen, abseil, hnswlib and the standard library.
root="${1:-$(dirname "$0")/..}"
bad=$(grep -rnE '#include *[<"](grpc|grpcpp|google/protobuf|prometheus|rocksdb)/|#include *[<"][^">]*\.pb\.h' \
  "$root/core" --include='*.h' --include='*.cc' || true)
if [ -n "$bad" ]; then
  echo "core/ must not include network, protobuf, metrics or storage headers:"
  echo "$bad"
  exit 1
fi
echo "layering ok"
