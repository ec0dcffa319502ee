"""The router's gRPC ingress (Serve's gRPC proxy, on when ``serving.grpc_port`` is set): the RPCs of
``raymlops.ModelServer`` (``grpc_api/predict.proto``), answered by the same code as HTTP.

A request carries the HTTP body verbatim, so validation, 422 locations and JSON number semantics are exactly
HTTP's (``google.protobuf.Struct`` would make every number a double). An error ends the call with the status
below and the HTTP error body (JSON) as its details. Serve's proxy picks the app from the ``application``
metadata; a method is reachable only if the proto lists it.
"""

from __future__ import annotations

import json

import grpc

from raymlops.serving.api import json_response
from raymlops.serving.grpc_api import predict_pb2 as pb

STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
MAX_DETAILS = 4000  # details travel in the status trailers: kept well under the usual 8 KiB header limit


def _dumps(body: dict) -> str:
    return bytes(json_response(body).body).decode()


def fail(context, status: int, body: dict) -> None:
    """Ends the call with the gRPC status of HTTP ``status`` and the error body (still JSON when cut: the
    last errors are dropped first)."""
    context.set_code(STATUS.get(status, grpc.StatusCode.UNKNOWN))
    details = _dumps(body)
    detail = body.get("detail")
    while len(details) > MAX_DETAILS and isinstance(detail, list) and len(detail) > 1:
        detail = detail[:-1]
        details = _dumps({**body, "detail": detail})
    context.set_details(details[:MAX_DETAILS])


class GrpcIngress:
    """Mixed into the router deployment: Serve calls the method named after the RPC."""

    async def Predict(self, request: pb.PredictRequest, grpc_context) -> pb.PredictReply:  # noqa: N802 - RPC name
        status, body = await self.answer(request.json, request.request_id or grpc_context.request_id())  # type: ignore[attr-defined]
        if status != 200:
            fail(grpc_context, status, body)
            return pb.PredictReply()  # not sent: a call that ends with an error status carries no message
        preds = body.get("predictions") or []
        numeric = all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in preds)
        return pb.PredictReply(
            json=_dumps(body),
            model_version=str(body.get("model_version") or ""),
            variant=str(body.get("variant") or ""),
            request_id=str(body.get("request_id") or ""),
            predictions=preds if numeric else [],
            labels=[] if numeric else [p if isinstance(p, str) else json.dumps(p) for p in preds],
        )

    async def Health(self, request: pb.HealthRequest, grpc_context) -> pb.HealthReply:  # noqa: N802 - RPC name
        status, body = await self.health_body()  # type: ignore[attr-defined]
        if status != 200:
            fail(grpc_context, status, body)
        return pb.HealthReply(json=_dumps(body), status=body["status"])
