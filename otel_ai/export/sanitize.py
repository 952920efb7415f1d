"""Last checks on the export thread before data is encoded: secrets out of metric
attributes, and text OTLP can carry.

- :class:`RedactingMetricExporter` does for metric points what
  :mod:`otel_ai.export.redacting` does for spans and log records: a run id, stage name or
  any attribute value holding a secret is redacted before export.
- :func:`clean_spans` / :func:`clean_logs`: protobuf strings must be valid UTF-8, but a
  Python string can hold lone surrogates (``os.fsdecode`` of non-UTF-8 bytes, ``"\\udcff"``
  from a decoder with ``surrogateescape``). The OTLP encoder drops such an attribute (with
  an ERROR log) and fails the whole batch for such a span name or log body. Each lone
  surrogate becomes U+FFFD instead; the record keeps everything else.

Both are cheap when there is nothing to do: one pass over the strings, a regular
expression only on the non-ASCII ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status

from ..redaction import Redactor, default_redactor

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def _bad(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text) if _bad(text) else text


def _value_bad(value: Any) -> bool:
    if isinstance(value, str):
        return _bad(value)
    if isinstance(value, (list, tuple)):
        return any(_value_bad(item) for item in value)
    if isinstance(value, Mapping):
        return any(_bad(str(key)) or _value_bad(item) for key, item in value.items())
    return False


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, tuple):
        return tuple(_clean_value(item) for item in value)
    if isinstance(value, list):
        return [_clean_value(item) for item in value]
    if isinstance(value, Mapping):
        return {clean_text(str(key)): _clean_value(item) for key, item in value.items()}
    return value


def _non_ascii(attributes: Mapping[str, Any]) -> bool:
    """Any non-ASCII key or string value (the common case, all ASCII, costs a few us)."""
    # the SDK's BoundedAttributes is a mapping over a plain dict: iterate that directly
    attributes = getattr(attributes, "_dict", attributes)
    if not "".join(attributes).isascii():
        return True
    for value in attributes.values():
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return True
        elif kind is tuple or kind is list:
            for item in value:
                if type(item) is str and not item.isascii():
                    return True
        elif kind is not bool and kind is not int and kind is not float:
            return True  # a log record's attributes can hold anything: look closer
    return False


def _attributes_bad(attributes: Mapping[str, Any] | None) -> bool:
    if not attributes or not _non_ascii(attributes):
        return False
    return any(_bad(key) or _value_bad(value) for key, value in attributes.items())


def _clean_attributes(attributes: Mapping[str, Any] | None) -> Any:
    if not _attributes_bad(attributes):
        return attributes
    assert attributes is not None
    return {clean_text(key): _clean_value(value) for key, value in attributes.items()}


def _span_bad(span: ReadableSpan) -> bool:
    return (
        _bad(span.name)
        or _bad(span.status.description or "")
        or _attributes_bad(span.attributes)
        or any(_bad(event.name) or _attributes_bad(event.attributes) for event in span.events)
        or any(_attributes_bad(link.attributes) for link in span.links)
    )


def clean_spans(spans: Sequence[ReadableSpan]) -> Sequence[ReadableSpan]:
    """The spans, with copies of those holding lone surrogates, cleaned."""
    if not any(_span_bad(span) for span in spans):
        return spans
    return [_clean_span(span) if _span_bad(span) else span for span in spans]


def _clean_span(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=clean_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean_attributes(span.attributes),
        events=[Event(clean_text(e.name), _clean_attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _clean_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(
            span.status.status_code, clean_text(span.status.description) if span.status.description else None
        ),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def clean_logs(batch: Sequence[ReadableLogRecord]) -> Sequence[ReadableLogRecord]:
    """Clean the records holding lone surrogates, in place (the batch is the exporter's)."""
    for readable in batch:
        record = readable.log_record
        body = record.body
        if (type(body) is not str or not body.isascii()) and _value_bad(body):
            record.body = _clean_value(record.body)
        if _attributes_bad(record.attributes):
            record.attributes = _clean_attributes(record.attributes)
        event_name = getattr(record, "event_name", None)
        if isinstance(event_name, str) and _bad(event_name):
            record.event_name = clean_text(event_name)
    return batch


class RedactingMetricExporter(MetricExporter):
    """Redacts secrets (and lone surrogates) in metric point attributes, then exports."""

    def __init__(self, inner: MetricExporter, redactor: Redactor | None = None) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return self.inner.export(self._redact(metrics_data), timeout_millis=timeout_millis, **kwargs)

    def _redact(self, data: MetricsData) -> MetricsData:
        texts: list[str] = []
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in getattr(metric.data, "data_points", ()):
                        for key, value in (point.attributes or {}).items():
                            texts.append(key)
                            if isinstance(value, str):
                                texts.append(value)
                            elif isinstance(value, (list, tuple)):
                                texts.extend(v for v in value if isinstance(v, str))
        joined = "\n".join(texts)
        if not self.redactor.might_contain_secret(joined) and not _bad(joined):
            return data
        return dataclasses.replace(
            data,
            resource_metrics=[
                dataclasses.replace(
                    rm,
                    scope_metrics=[
                        dataclasses.replace(sm, metrics=[self._metric(metric) for metric in sm.metrics])
                        for sm in rm.scope_metrics
                    ],
                )
                for rm in data.resource_metrics
            ],
        )

    def _metric(self, metric: Any) -> Any:
        points = getattr(metric.data, "data_points", None)
        if not points:
            return metric
        r = self.redactor
        new_points = []
        for point in points:
            attributes = _clean_attributes(point.attributes)
            redacted = r.redact_attributes(attributes)
            new_points.append(
                point if redacted is point.attributes else dataclasses.replace(point, attributes=redacted)
            )
        return dataclasses.replace(metric, data=dataclasses.replace(metric.data, data_points=new_points))

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
