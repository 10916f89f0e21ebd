"""A loopback OTLP/gRPC receiver (the collector's TraceService) that decodes what arrives: for tests and benchmarks.

The gRPC twin of :class:`~respan_auto.testing.otlp_receiver.OtlpReceiver`: it records each export with its metadata
as the same :class:`~respan_auto.testing.otlp_receiver.Export` of the same ``ReceivedSpan``, can fail with a gRPC
status (optionally with a ``RetryInfo`` delay, as collectors send with UNAVAILABLE), answer late, and serve TLS or
mTLS with :class:`~respan_auto.testing.tls.TlsFiles`. grpcio and the OTLP stubs (from
``opentelemetry-exporter-otlp-proto-grpc``) are imported only when a receiver is made, so importing this module
needs neither.
"""

from __future__ import annotations

import base64
import datetime
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any

from respan_auto.testing.otlp_receiver import Export, ReceivedSpan, _wait_for_spans, decode_request

if TYPE_CHECKING:
    import grpc

    from respan_auto.testing.tls import TlsFiles

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"  # recorded as each Export's path
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # as large as the standard HTTP exporter's default request limit


def _servicer(receiver: GrpcOtlpReceiver) -> Any:
    """A ``TraceServiceServicer`` bound to ``receiver`` (made here so the stubs load lazily)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceServicer

    class TraceService(TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the generated name
            return receiver._export(request, context, ExportTraceServiceResponse)

    return TraceService()


class GrpcOtlpReceiver:
    """``start()``, then point ``OTEL_EXPORTER_OTLP_ENDPOINT`` (gRPC) at ``endpoint``.

    ``status`` (a ``grpc.StatusCode``; None or OK accepts), ``delay`` and ``retry_after`` may be changed while it
    runs. Failed exports are recorded too, with no spans, so retries can be counted. With ``tls`` it serves TLS
    (certificate valid for 127.0.0.1 and localhost); ``client_ca=True`` also requires a client certificate signed
    by the test CA.
    """

    def __init__(
        self,
        status: grpc.StatusCode | None = None,
        *,
        delay: float = 0.0,
        retry_after: float | None = None,
        tls: TlsFiles | None = None,
        client_ca: bool = False,
        max_workers: int = 8,
    ) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import add_TraceServiceServicer_to_server

        if client_ca and tls is None:
            raise ValueError("client_ca=True needs tls=TlsFiles(...)")
        self.status = status
        self.delay = delay  # seconds before each answer, to play a slow collector
        self.retry_after = retry_after  # seconds, sent as google.rpc.RetryInfo with failures
        self.tls = tls
        self.client_ca = client_ca
        self.exports: list[Export] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-grpc-receiver")
        self._server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),  # the port is ours alone
            ],
        )
        add_TraceServiceServicer_to_server(_servicer(self), self._server)
        if tls is None:
            self._port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.read("server_key"), tls.read("server_cert"))],
                root_certificates=tls.read("ca_cert") if client_ca else None,
                require_client_auth=client_ca,
            )
            self._port = self._server.add_secure_port("127.0.0.1:0", credentials)
        if not self._port:
            raise OSError("the gRPC receiver could not bind 127.0.0.1")

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``grpc.insecure_channel``/``secure_channel`` take it."""
        return f"127.0.0.1:{self._port}"

    @property
    def endpoint(self) -> str:
        """``http(s)://127.0.0.1:PORT``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is written for gRPC (the scheme picks
        TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return [span for export in self.exports for span in export.spans]

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """The received spans once there are at least ``count`` (or whatever arrived by ``timeout`` seconds)."""
        return _wait_for_spans(lambda: self.spans, count, timeout)

    def record(self, export: Export) -> None:
        with self._lock:
            self.exports.append(export)

    def _export(self, request: Any, context: grpc.ServicerContext, response: type) -> Any:
        import grpc

        # binary ("-bin") metadata arrives as bytes: keep it base64, as it travels on the wire
        headers = {
            key.lower(): value if isinstance(value, str) else base64.b64encode(value).decode()
            for key, value in context.invocation_metadata()
        }
        common_names = context.auth_context().get("x509_common_name") or [None]
        client_cn = common_names[0].decode() if isinstance(common_names[0], bytes) else None
        export = Export(METHOD, headers, request.SerializeToString(), client_cn=client_cn)
        if self.delay:
            self._stopping.wait(self.delay)
        status = self.status
        if status is None or status == grpc.StatusCode.OK:
            export.spans = decode_request(request)
            self.record(export)
            return response()
        self.record(export)
        if self.retry_after is not None:
            from google.rpc.error_details_pb2 import RetryInfo

            info = RetryInfo()
            info.retry_delay.FromTimedelta(datetime.timedelta(seconds=self.retry_after))
            context.set_trailing_metadata((("google.rpc.retryinfo-bin", info.SerializeToString()),))
        context.abort(status, f"status {status.name}")

    def start(self) -> GrpcOtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends any delay at once
        self._server.stop(grace=None).wait()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> GrpcOtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
