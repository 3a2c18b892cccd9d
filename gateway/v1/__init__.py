"""Generated code only: `make generate` writes the Python of proto/gateway/v1/*.proto
here (the gateway's own options, `gateway.v1.http_pb2`); never edit these files."""
