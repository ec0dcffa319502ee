"""A Python client of a raymlops app's gRPC ingress (`serving.grpc_port`), e.g. for the quickstart served with
`raymlops serve configs/quickstart.yaml --set serving.grpc_port=9000`:

    python examples/grpc_client.py --target 127.0.0.1:9000 --app churn-quickstart \\
        '{"instances": [{"plan": "basic", "region": "east", ...}]}'

The request carries the HTTP /predict body; the reply has the same JSON (``json``) plus typed fields. An error
is a ``grpc.RpcError``: ``.code()`` is the status (INVALID_ARGUMENT for what HTTP answers 422, INTERNAL 500,
UNAVAILABLE 503, DEADLINE_EXCEEDED 504) and ``.details()`` the HTTP error body, e.g.
``{"detail": [{"loc": ["body", "instances", 0, "tenure_months"], ...}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys

import grpc

from raymlops.serving.grpc_api import predict_pb2 as pb
from raymlops.serving.grpc_api import predict_pb2_grpc as pb_grpc


def predict(target: str, app: str, body: dict | str, timeout: float = 10.0) -> dict:
    """The /predict answer for ``body`` (a dict or its JSON), from the Serve app named ``app``."""
    with grpc.insecure_channel(target) as channel:
        reply = pb_grpc.ModelServerStub(channel).Predict(
            pb.PredictRequest(json=body if isinstance(body, str) else json.dumps(body)),
            metadata=(("application", app),), timeout=timeout)
    return json.loads(reply.json)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:9000", help="host:port of Serve's gRPC proxy")
    parser.add_argument("--app", required=True, help="the Serve app (serving.app_name, default the pipeline name)")
    parser.add_argument("body", help='the /predict body, e.g. \'{"instances": [{...}]}\'')
    args = parser.parse_args()
    try:
        print(json.dumps(predict(args.target, args.app, args.body)))
    except grpc.RpcError as e:
        print(f"{e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
