"""Optional request tracing with OpenTelemetry (``CMAL_TRACING``; off by default).

Each task request becomes a server span, child of the caller's W3C ``traceparent`` when one came,
with four children: ``decode`` (reading the image), ``queue`` (waiting for a batch), ``detector``
and ``fusion`` (the batch's model stages, with the batch's size as an attribute; a request shares
these intervals with the rest of its batch). ``console`` prints spans to stdout; ``otlp`` sends
them to the collector the standard ``OTEL_EXPORTER_OTLP_*`` variables name. Off, nothing from
OpenTelemetry is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer


def make_tracer(mode: str, exporter: SpanExporter | None = None) -> Tracer | None:
    """A tracer exporting to ``mode`` ("console" or "otlp"; "off": None). ``exporter``, when
    given, replaces the mode's exporter and spans are exported one by one (tests)."""
    if mode == "off" and exporter is None:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "cmal-serving"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif mode == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider.get_tracer("cmal.service")  # the provider is this app's, not a global


def caller_context(headers: Mapping[str, str]) -> Any:
    """The trace context a request's ``traceparent`` carries (none: a new trace)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier=dict(headers))


def record_stages(
    tracer: Tracer, parent: Any, stages: Mapping[str, tuple[int, int]], batch_rows: int
) -> None:
    """Child spans of ``parent`` for stages already timed: name -> (start, end) in epoch ns."""
    from opentelemetry import trace

    context = trace.set_span_in_context(parent)
    for name, (start, end) in stages.items():
        if end <= 0:
            continue  # the stage did not run for this batch (e.g. every image was cached)
        span = tracer.start_span(
            name, context=context, start_time=start, attributes={"cmal.batch_rows": batch_rows}
        )
        span.end(end_time=end)


@contextmanager
def request_span(
    tracer: Tracer | None, name: str, headers: Mapping[str, str], attributes: dict[str, Any]
) -> Iterator[Any]:
    """A server span for one request, child of its ``traceparent`` (yields None when tracing is
    off); an exception carrying an HTTP ``status`` of 500 or more marks the span as failed."""
    if tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    span = tracer.start_span(
        name, context=caller_context(headers), kind=SpanKind.SERVER, attributes=attributes
    )
    try:
        yield span
    except Exception as e:
        status = getattr(e, "status", 500)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, type(e).__name__))
        raise
    finally:
        span.end()
