"""Generated gRPC code of ``predict.proto`` (`scripts/gen_grpc.sh` regenerates it); the servicer is
registered with Serve's gRPC proxy by `raymlops.serving.runtime.start_serve`."""
