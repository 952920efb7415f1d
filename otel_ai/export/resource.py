"""The resource of SPEC section 3: who is reporting, from where, on which GPU."""

from __future__ import annotations

import os
import socket
import uuid

from opentelemetry.sdk import resources as sdk_resources
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from .. import semconv
from ..config import Settings
from ..metrics.gpu import GpuInfo
from ..redaction import default_redactor
from ..version import __version__

# what the resource is made of, beside the settings: changed in a forked child's
# environment, the child builds its resource anew (OTEL_EXPERIMENTAL_RESOURCE_DETECTORS
# names the SDK's detectors)
RESOURCE_VARIABLES = ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")


def resource_environment() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in RESOURCE_VARIABLES)


def forked_resource(parent: Resource, parent_pid: int) -> Resource | None:
    """A forked child's resource: its parent's, with its own ``process.pid`` and
    ``service.instance.id`` (unless OTEL_RESOURCE_ATTRIBUTES gives one), without running
    the detectors again (a thread pool and 2-3 ms in every pool worker). None where the
    child must build its own: detectors of the user's choice
    (OTEL_EXPERIMENTAL_RESOURCE_DETECTORS, which may describe the process) or a
    ``process.pid`` that came from OTEL_RESOURCE_ATTRIBUTES."""
    if os.environ.get("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "").strip():
        return None
    if parent.attributes.get(semconv.PROCESS_PID) != parent_pid:
        return None
    own: dict[str, str | int] = {semconv.PROCESS_PID: os.getpid()}
    if semconv.SERVICE_INSTANCE_ID in parent.attributes and (
        semconv.SERVICE_INSTANCE_ID not in OTELResourceDetector().detect().attributes
    ):
        own[semconv.SERVICE_INSTANCE_ID] = _instance_id()
    return parent.merge(Resource(own, parent.schema_url))


def _instance_id() -> str:
    """This process's ``service.instance.id``: the SDK's (the one its detector gives any
    resource made in this process), else a UUID of our own."""
    detector = getattr(sdk_resources, "ServiceInstanceIdResourceDetector", None)  # absent from older SDKs
    value = detector().detect().attributes.get(semconv.SERVICE_INSTANCE_ID) if detector is not None else None
    return str(value) if value else str(uuid.uuid4())


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
