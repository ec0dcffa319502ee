#!/usr/bin/env bash
# Regenerates raymlops/serving/grpc_api/predict_pb2*.py from predict.proto (run after editing the proto).
# grpcio-tools is needed only here, in a throwaway venv: 1.85.1's protoc writes code that imports with the
# locked protobuf 7.x and grpcio 1.85 (a newer one may require a newer protobuf than the lock).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q grpcio-tools==1.85.1
"$venv/bin/python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
  raymlops/serving/grpc_api/predict.proto
rm -rf "$(dirname "$venv")"
