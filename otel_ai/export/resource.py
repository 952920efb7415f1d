"""The resource of SPEC section 3: who is reporting, from where, on which GPU."""

from __future__ import annotations

import os
import socket

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from .. import semconv
from ..config import Settings
from ..metrics.gpu import GpuInfo
from ..redaction import default_redactor
from ..version import __version__


def build_resource(settings: Settings, gpu: GpuInfo) -> Resource:
    """Our defaults, overridden by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME, then by
    an explicit ``service_name`` argument. ``gpu``: what the pipeline detected."""
    host = socket.gethostname()
    ours: dict[str, str | int] = {
        semconv.SERVICE_NAME: semconv.DEFAULT_SERVICE_NAME,
        semconv.TELEMETRY_DISTRO_NAME: semconv.DISTRO_NAME,
        semconv.TELEMETRY_DISTRO_VERSION: __version__,
        semconv.HOST_NAME: host,
        semconv.PROCESS_PID: os.getpid(),
        semconv.POD_ID: settings.pod_id or host,
        semconv.GPU_NAME: gpu.name,
        semconv.GPU_COUNT: gpu.count,
    }
    if settings.region:
        ours[semconv.CLOUD_REGION] = settings.region
    resource = Resource.create({}).merge(Resource(ours))
    # the SDK's own detection put "unknown_service" in; the variables must win over ours
    resource = resource.merge(OTELResourceDetector().detect())
    if os.environ.get("OTEL_SERVICE_NAME", "").strip():
        resource = resource.merge(Resource({semconv.SERVICE_NAME: os.environ["OTEL_SERVICE_NAME"].strip()}))
    if settings.sources.get("service_name") == "argument" and settings.service_name:
        resource = resource.merge(Resource({semconv.SERVICE_NAME: settings.service_name}))
    # OTEL_RESOURCE_ATTRIBUTES may carry a token: redacted here, once, for every signal
    redacted = default_redactor().redact_attributes(resource.attributes)
    if redacted is not resource.attributes:
        resource = Resource(dict(redacted or {}), resource.schema_url)
    return resource
