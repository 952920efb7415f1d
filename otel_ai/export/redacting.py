"""Exporters that redact secrets (see :mod:`otel_ai.redaction`) before passing data on.

They run on the batch processors' worker threads, so the experiment's thread never pays
for redaction, and they cover every span and log record of the process: ours and those
of other instrumentations alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from ..redaction import Redactor, default_redactor, strings_of


class RedactingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, redactor: Redactor | None = None) -> None:
        self.inner = inner
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self._redact_span(span) for span in spans])

    def _redact_span(self, span: ReadableSpan) -> ReadableSpan:
        r = self.redactor
        texts = [span.name, span.status.description or ""]
        texts += strings_of((span.attributes or {}).values())
        for event in span.events:
            texts.append(event.name)
            texts += strings_of((event.attributes or {}).values())
        for link in span.links:
            texts += strings_of((link.attributes or {}).values())
        if not r.might_contain_secret("\n".join(texts)):
            return span
        name = r.redact(span.name)
        attributes = r.redact_attributes(span.attributes)
        events = [self._redact_event(event) for event in span.events]
        links = [
            link if (a := r.redact_attributes(link.attributes)) is link.attributes else Link(link.context, a)
            for link in span.links
        ]
        description = span.status.description
        new_description = r.redact(description) if description else description
        unchanged = (
            name == span.name
            and attributes is span.attributes
            and all(new is old for new, old in zip(events, span.events, strict=False))
            and all(new is old for new, old in zip(links, span.links, strict=False))
            and new_description == description
        )
        if unchanged:
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=span.kind,
            status=Status(span.status.status_code, new_description),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _redact_event(self, event: Event) -> Event:
        r = self.redactor
        name = r.redact(event.name)
        attributes = r.redact_attributes(event.attributes)
        if name == event.name and attributes is event.attributes:
            return event
        return Event(name, attributes, event.timestamp)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RedactingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, redactor: Redactor | None = None) -> None:
        self.inner = inner
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        r = self.redactor
        for readable in batch:
            record = readable.log_record
            texts = strings_of((record.attributes or {}).values())
            texts += (
                strings_of([record.body])
                if not isinstance(record.body, (dict, list, tuple))
                else [repr(record.body)]
            )
            event_name = getattr(record, "event_name", None)
            if event_name:
                texts.append(event_name)
            if not r.might_contain_secret("\n".join(texts)):
                continue
            # the batch is ours alone once it reaches the exporter: edit in place
            body = record.body
            if isinstance(body, str):
                record.body = r.redact(body)
            elif body is not None:
                record.body = r.redact_value(body)
            attributes = r.redact_attributes(record.attributes)
            if attributes is not record.attributes:
                record.attributes = attributes
            if event_name:
                record.event_name = r.redact(event_name)
        return self.inner.export(batch)

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
