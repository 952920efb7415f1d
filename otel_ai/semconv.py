"""Every name of the otel_ai telemetry contract, spelled once.

Span names, event names, attribute keys, metric names and enumerated values used by
dashboards, collector pipelines and the tests. docs/semconv.md documents them; change a
name here only together with that file, the collector configs and the tests.
"""

from __future__ import annotations

from typing import Final

# --- span names -------------------------------------------------------------------------
SPAN_RUN: Final = "ai.run"
SPAN_STAGE: Final = "ai.stage"  # full name: "ai.stage {stage}"
SPAN_NODE: Final = "ai.node"  # full name: "ai.node {kind}"
SPAN_NODE_EXECUTE: Final = "ai.node.execute"
SPAN_PAPER: Final = "ai.paper"
SPAN_VALIDATION: Final = "ai.validation"

# --- lifecycle events (span events and log-based events share these names) --------------
RUN_STARTED: Final = "ai.run.started"
RUN_COMPLETED: Final = "ai.run.completed"
RUN_FAILED: Final = "ai.run.failed"
RUN_CANCELED: Final = "ai.run.canceled"
RUN_ABANDONED: Final = "ai.run.abandoned"
RUN_HEARTBEAT: Final = "ai.run.heartbeat"
RUN_LOG: Final = "ai.run.log"
STAGE_STARTED: Final = "ai.run.stage_started"
STAGE_PROGRESS: Final = "ai.run.stage_progress"
STAGE_METRIC: Final = "ai.run.stage_metric"
STAGE_COMPLETED: Final = "ai.run.stage_completed"
NODE_CREATED: Final = "ai.node.created"
NODE_CODE_GENERATED: Final = "ai.node.code_generated"
NODE_EXECUTING: Final = "ai.node.executing"
NODE_COMPLETED: Final = "ai.node.completed"
NODE_SELECTED_BEST: Final = "ai.node.selected_best"
ARTIFACT_DETECTED: Final = "ai.artifact.detected"
ARTIFACT_REGISTERED: Final = "ai.artifact.registered"
PAPER_STARTED: Final = "ai.paper.started"
PAPER_GENERATED: Final = "ai.paper.generated"
VALIDATION_STARTED: Final = "ai.validation.auto_started"
VALIDATION_COMPLETED: Final = "ai.validation.auto_completed"
# AI-Scientist-v2's own step callback event; becomes NODE_COMPLETED when it names a node.
EXPERIMENT_NODE_COMPLETED: Final = "ai.experiment.node_completed"

LIFECYCLE_EVENTS: Final = (
    RUN_STARTED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_CANCELED,
    RUN_HEARTBEAT,
    STAGE_STARTED,
    STAGE_PROGRESS,
    STAGE_METRIC,
    STAGE_COMPLETED,
    NODE_CREATED,
    NODE_CODE_GENERATED,
    NODE_EXECUTING,
    NODE_COMPLETED,
    NODE_SELECTED_BEST,
    ARTIFACT_DETECTED,
    ARTIFACT_REGISTERED,
    PAPER_STARTED,
    PAPER_GENERATED,
    VALIDATION_STARTED,
    VALIDATION_COMPLETED,
)

# --- attributes on every log-based event ------------------------------------------------
EVENT_NAME: Final = "event.name"  # repeated from the record's event_name for Loki <= 3.7
EVENT_SEQ: Final = "ai.event.seq"
EVENT_DUPLICATE: Final = "ai.event.duplicate"  # the same lifecycle step reported twice
EVENT_LATE: Final = "ai.event.late"  # reported after its span had ended
SPAN_SYNTHESIZED: Final = "ai.span.synthesized"  # span opened implicitly by a later event
SPAN_CLOSED_BY: Final = "ai.span.closed_by"  # who ended a span its owner left open
SPAN_EVENTS_OMITTED: Final = "ai.span.events.omitted"
SPAN_EVENTS_OMITTED_BY_NAME: Final = "ai.span.events.omitted_by_name"

# --- run ---------------------------------------------------------------------------------
RUN_ID: Final = "ai.run.id"
RUN_OUTCOME: Final = "ai.run.outcome"
RUN_DURATION_S: Final = "ai.run.duration_s"
RUN_FAILED_STAGE: Final = "ai.run.failed_stage"
RUN_RETRYABLE: Final = "ai.run.retryable"
RUN_CANCEL_REASON: Final = "ai.run.cancel_reason"
RUN_END_REASON: Final = "ai.run.end_reason"
RUN_ATTEMPT: Final = "ai.run.attempt"  # 1, 2...: `otel-ai run --run-id` again after a crash
RUN_COMMAND: Final = "ai.run.command"  # the wrapped command line (secrets redacted)
RUN_EXIT_CODE: Final = "ai.run.exit_code"  # the wrapped command's exit code
RUN_SIGNAL: Final = "ai.run.signal"  # the signal that ended the command, e.g. SIGKILL
RUN_STALLED: Final = "ai.run.stalled"  # event: no output, log line or event for a while
RUN_STALLED_FOR_S: Final = "ai.run.stalled_for_s"
LINK_PREVIOUS_ATTEMPT: Final = "previous_attempt"

OUTCOME_COMPLETED: Final = "completed"
OUTCOME_FAILED: Final = "failed"
OUTCOME_CANCELED: Final = "canceled"
OUTCOME_ABANDONED: Final = "abandoned"

# --- stage -------------------------------------------------------------------------------
STAGE_NAME: Final = "ai.stage.name"
STAGE_DESCRIPTION: Final = "ai.stage.description"
STAGE_PROGRESS_VALUE: Final = "ai.stage.progress"
STAGE_ITERATION: Final = "ai.stage.iteration"
STAGE_MAX_ITERATIONS: Final = "ai.stage.max_iterations"
STAGE_NODES_GOOD: Final = "ai.stage.nodes.good"
STAGE_NODES_BUGGY: Final = "ai.stage.nodes.buggy"
STAGE_NODES_TOTAL: Final = "ai.stage.nodes.total"
STAGE_BEST_METRIC: Final = "ai.stage.best_metric"
STAGE_ETA_S: Final = "ai.stage.eta_s"
STAGE_DURATION_S: Final = "ai.stage.duration_s"
STAGE_BEST_NODE_ID: Final = "ai.stage.best_node.id"
STAGE_OUTCOME: Final = "ai.stage.outcome"
STAGE_PROGRESS_UPDATES: Final = "ai.stage.progress.updates"
METRIC_NAME: Final = "ai.metric.name"
METRIC_VALUE: Final = "ai.metric.value"

# --- node --------------------------------------------------------------------------------
NODE_ID: Final = "ai.node.id"
NODE_PARENT_ID: Final = "ai.node.parent_id"
NODE_KIND: Final = "ai.node.kind"
NODE_CODE_SIZE: Final = "ai.node.code.size_bytes"
NODE_CODE_SHA256: Final = "ai.node.code.sha256"
NODE_IS_BUGGY: Final = "ai.node.is_buggy"
NODE_METRIC: Final = "ai.node.metric"
NODE_METRIC_VALUE: Final = "ai.node.metric.value"
NODE_EXEC_TIME_S: Final = "ai.node.exec_time_s"
NODE_EXC_TYPE: Final = "ai.node.exc_type"
NODE_SUMMARY: Final = "ai.node.summary"
NODE_EXEC_PURPOSE: Final = "ai.node.exec.purpose"  # experiment | metrics | plotting
NODE_EXEC_DURATION_S: Final = "ai.node.exec.duration_s"
LINK_TYPE: Final = "ai.link.type"  # on span links: why the spans are linked
LINK_PARENT_NODE: Final = "parent_node"
LINK_SELECTED_BEST: Final = "selected_best"

NODE_KINDS: Final = (
    "draft",
    "debug",
    "improve",
    "hyperparam",
    "ablation",
    "seed",
    "seed_agg",
    "node",
)
NODE_STATUS: Final = "ai.node.status"  # metric attribute: good | buggy
NODE_STATUS_GOOD: Final = "good"
NODE_STATUS_BUGGY: Final = "buggy"

# --- logs --------------------------------------------------------------------------------
LOG_SOURCE: Final = "ai.log.source"
LOG_TRUNCATED: Final = "ai.log.truncated"
LOG_FILE_PATH: Final = "log.file.path"
LOG_IOSTREAM: Final = "log.iostream"

# --- artifacts ---------------------------------------------------------------------------
ARTIFACT_PATH: Final = "ai.artifact.path"
ARTIFACT_TYPE: Final = "ai.artifact.type"
ARTIFACT_SIZE: Final = "ai.artifact.size_bytes"
ARTIFACT_KEY: Final = "ai.artifact.key"
ARTIFACT_URI: Final = "ai.artifact.uri"
ARTIFACT_SHA256: Final = "ai.artifact.sha256"
ARTIFACT_CONTENT_TYPE: Final = "ai.artifact.content_type"
ARTIFACT_KIND: Final = "ai.artifact.kind"

# --- paper ------------------------------------------------------------------------------
PAPER_OUTCOME: Final = "ai.paper.outcome"

# --- validation --------------------------------------------------------------------------
VALIDATION_MODEL: Final = "ai.validation.model"
VALIDATION_VERDICT: Final = "ai.validation.verdict"
VALIDATION_SCORE_PREFIX: Final = "ai.validation.score."  # + score name, double
VALIDATION_NOTES: Final = "ai.validation.notes"
VALIDATION_RUBRIC_VERSION: Final = "ai.validation.rubric_version"
VALIDATION_OUTCOME: Final = "ai.validation.outcome"

# --- errors (OTel semantic conventions) --------------------------------------------------
ERROR_TYPE: Final = "error.type"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"

# --- resource ----------------------------------------------------------------------------
SERVICE_NAME: Final = "service.name"
DEFAULT_SERVICE_NAME: Final = "ai-scientist"
TELEMETRY_DISTRO_NAME: Final = "telemetry.distro.name"
TELEMETRY_DISTRO_VERSION: Final = "telemetry.distro.version"
DISTRO_NAME: Final = "otel-ai"
HOST_NAME: Final = "host.name"
PROCESS_PID: Final = "process.pid"
POD_ID: Final = "ai.pod.id"
CLOUD_REGION: Final = "cloud.region"
CONTAINER_IMAGE_NAME: Final = "container.image.name"
GPU_NAME: Final = "ai.gpu.name"
GPU_COUNT: Final = "ai.gpu.count"

# --- metrics -----------------------------------------------------------------------------
METRIC_STAGE_PROGRESS: Final = "ai.stage.progress"
METRIC_NODES: Final = "ai.nodes"
METRIC_NODE_DURATION: Final = "ai.node.duration"
METRIC_NODE_EXEC_TIME: Final = "ai.node.exec_time"
METRIC_STAGE_BEST_METRIC: Final = "ai.stage.best_metric"
METRIC_ARTIFACT_UPLOADED: Final = "ai.artifact.uploaded"

# --- instrumentation scope ---------------------------------------------------------------
SCOPE_NAME: Final = "otel_ai"

# --- metrics: system, process, GPU (issue 6) ---
# OTel semantic-convention names (system.*, process.*, hw.*, gen_ai.*) as otel_ai emits them.
# process.* and ai.process.count are summed over the sampled process tree (see docs).
METRIC_SYSTEM_CPU_UTILIZATION: Final = "system.cpu.utilization"
METRIC_SYSTEM_CPU_LOGICAL_COUNT: Final = "system.cpu.logical.count"
METRIC_SYSTEM_MEMORY_USAGE: Final = "system.memory.usage"
METRIC_SYSTEM_MEMORY_LIMIT: Final = "system.memory.limit"
METRIC_SYSTEM_MEMORY_UTILIZATION: Final = "system.memory.utilization"
METRIC_PROCESS_CPU_TIME: Final = "process.cpu.time"
METRIC_PROCESS_CPU_UTILIZATION: Final = "process.cpu.utilization"
METRIC_PROCESS_MEMORY_USAGE: Final = "process.memory.usage"
METRIC_PROCESS_THREAD_COUNT: Final = "process.thread.count"
METRIC_PROCESS_COUNT: Final = "ai.process.count"  # processes in the sampled tree
METRIC_GPU_UTILIZATION: Final = "hw.gpu.utilization"
METRIC_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
METRIC_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
METRIC_GPU_MEMORY_UTILIZATION: Final = "hw.gpu.memory.utilization"
METRIC_HW_TEMPERATURE: Final = "hw.temperature"
METRIC_HW_POWER: Final = "hw.power"
METRIC_HW_ENERGY: Final = "hw.energy"
METRIC_GEN_AI_TOKEN_USAGE: Final = "gen_ai.client.token.usage"

CPU_MODE: Final = "cpu.mode"
CPU_MODE_USER: Final = "user"
CPU_MODE_SYSTEM: Final = "system"
SYSTEM_MEMORY_STATE: Final = "system.memory.state"
MEMORY_STATE_USED: Final = "used"
MEMORY_STATE_FREE: Final = "free"
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_MODEL: Final = "hw.model"
HW_VENDOR: Final = "hw.vendor"
HW_TYPE: Final = "hw.type"
HW_TYPE_GPU: Final = "gpu"
HW_VENDOR_NVIDIA: Final = "NVIDIA"
HW_GPU_TASK: Final = "hw.gpu.task"
HW_GPU_TASK_GENERAL: Final = "general"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_TOKEN_TYPE_INPUT: Final = "input"
GEN_AI_TOKEN_TYPE_OUTPUT: Final = "output"
GEN_AI_OPERATION_CHAT: Final = "chat"
# resource attribute, when present, that tells apart processes sharing host and pid
SERVICE_INSTANCE_ID: Final = "service.instance.id"

# --- watching, tailing, artifacts (issue 5) ---
LOG_PARTIAL: Final = "ai.log.partial"  # a line delivered without its newline (flush timeout, end of run)
ARTIFACT_VERSION: Final = "ai.artifact.version"  # 1, 2, ... per path: new content, new version
ARTIFACT_BUCKET: Final = "ai.artifact.bucket"
ARTIFACT_UPLOAD_FAILED: Final = "ai.artifact.upload_failed"  # ERROR event naming bucket and key
ARTIFACT_REFUSED: Final = "ai.artifact.refused"  # WARN event: the path resolves outside the watched root
# S3 object metadata key holding the hex SHA-256 (sent as x-amz-meta-sha256)
ARTIFACT_METADATA_SHA256: Final = "sha256"
ARTIFACT_TYPE_PLOT: Final = "plot"
ARTIFACT_TYPE_PAPER: Final = "paper"
ARTIFACT_TYPE_CHECKPOINT: Final = "checkpoint"
ARTIFACT_TYPE_DATA: Final = "data"
ARTIFACT_TYPE_CODE: Final = "code"
# error.type of ai.artifact.upload_failed besides S3's own codes (AccessDenied, NoSuchBucket...)
ARTIFACT_ERROR_FILE_VANISHED: Final = "FileVanished"
ARTIFACT_ERROR_PATH_OUTSIDE_ROOT: Final = "PathOutsideRoot"
ARTIFACT_ERROR_CONTENT_CHANGED: Final = "ContentChanged"
ARTIFACT_ERROR_DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
WATCH_STOPPED: Final = "ai.watch.stopped"  # event: what a watcher did, counts of what bounds forced
WATCH_OBSERVER: Final = "ai.watch.observer"  # native | polling
WATCH_OBSERVER_NATIVE: Final = "native"
WATCH_OBSERVER_POLLING: Final = "polling"
WATCH_ROOTS: Final = "ai.watch.roots"
WATCH_FILES_TAILED: Final = "ai.watch.files.tailed"
WATCH_LINES: Final = "ai.watch.lines"
WATCH_LINES_TRUNCATED: Final = "ai.watch.lines.truncated"
WATCH_LINES_PARTIAL: Final = "ai.watch.lines.partial"
WATCH_BYTES_UNDELIVERED: Final = "ai.watch.bytes.undelivered"
WATCH_ROTATIONS: Final = "ai.watch.rotations"
WATCH_EVENTS_OVERFLOWED: Final = "ai.watch.events.overflowed"
WATCH_PATHS_REFUSED: Final = "ai.watch.paths.refused"
WATCH_ARTIFACTS_DETECTED: Final = "ai.watch.artifacts.detected"
WATCH_ARTIFACTS_UPLOADED: Final = "ai.watch.artifacts.uploaded"
WATCH_ARTIFACTS_FAILED: Final = "ai.watch.artifacts.failed"
WATCH_ARTIFACTS_NOT_UPLOADED: Final = "ai.watch.artifacts.not_uploaded"
WATCH_COMPLETE: Final = "ai.watch.complete"

# --- delivery, spool (issue 7) ---
# a zero-length child of a run still open LIVE_MARKER_DELAY_S after its start, exported at
# once, so a run in progress can be found in Jaeger by ai.run.id (the run span comes at its end)
SPAN_RUN_LIVE: Final = "ai.run.live"
# what otel_ai could not deliver: a counter metric ({item}) and a WARN log-based event
TELEMETRY_DROPPED: Final = "ai.telemetry.dropped"
TELEMETRY_SIGNAL: Final = "ai.telemetry.signal"  # traces | logs | metrics
TELEMETRY_DROP_REASON: Final = "ai.telemetry.drop_reason"  # spool_full | too_large | rejected | unencodable | refused | data_dir_unwritable
TELEMETRY_DROPPED_ITEMS: Final = "ai.telemetry.dropped.items"  # on the log record: how many

# --- seeing a run: report, links (issue 9) ---
# tokens of one LLM call, on its `chat {model}` span (OTel GenAI conventions): recorded by
# LLM instrumentations, summed per node, stage and run by `otel-ai report`
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"

# --- AI-Scientist instrumentation, LLM spans (issue 4) ---
# `chat {model}` spans of the GenAI semantic conventions (gen_ai.operation.name = chat;
# token counts in GEN_AI_USAGE_INPUT_TOKENS / GEN_AI_USAGE_OUTPUT_TOKENS above)
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"  # only with message content capture on
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"  # only with message content capture on
GEN_AI_PROVIDER_OPENAI: Final = "openai"
GEN_AI_PROVIDER_ANTHROPIC: Final = "anthropic"
GEN_AI_PROVIDER_AWS_BEDROCK: Final = "aws.bedrock"
GEN_AI_PROVIDER_GCP_VERTEX_AI: Final = "gcp.vertex_ai"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
# token totals rolled up from the LLM spans below a node, a stage, a run (across processes)
LLM_INPUT_TOKENS: Final = "ai.llm.input_tokens"
LLM_OUTPUT_TOKENS: Final = "ai.llm.output_tokens"
LLM_CALLS: Final = "ai.llm.calls"
# AgentManager's stage-completion checks: a span event on the stage span
STAGE_DECISION: Final = "ai.stage.decision"
STAGE_DECISION_SCOPE: Final = "ai.stage.decision.scope"  # stage | substage
STAGE_DECISION_COMPLETE: Final = "ai.stage.decision.complete"
STAGE_DECISION_REASON: Final = "ai.stage.decision.reason"
DECISION_SCOPE_STAGE: Final = "stage"
DECISION_SCOPE_SUBSTAGE: Final = "substage"
# a stage's best node copied into the next stage under the same id
NODE_COPIED_FROM_STAGE: Final = "ai.node.copied_from_stage"
LINK_COPIED_FROM: Final = "copied_from"
EXEC_PURPOSE_EXPERIMENT: Final = "experiment"
EXEC_PURPOSE_METRICS: Final = "metrics"
EXEC_PURPOSE_PLOTTING: Final = "plotting"

# --- LLM backends: messages, run input/output, metric structure (issue 12) ---
# instructions given apart from the chat history (Anthropic's `system`), GenAI conventions
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
# trailing messages a bound left out of gen_ai.input.messages / gen_ai.output.messages
LLM_INPUT_MESSAGES_OMITTED: Final = "ai.llm.input_messages.omitted"
LLM_OUTPUT_MESSAGES_OMITTED: Final = "ai.llm.output_messages.omitted"
# the idea a run pursues (its title); also the run's input below
RUN_IDEA: Final = "ai.run.idea"
# a span's input and output as Phoenix (OpenInference) and MLflow list traces by
INPUT_VALUE: Final = "input.value"
INPUT_MIME_TYPE: Final = "input.mime_type"
OUTPUT_VALUE: Final = "output.value"
OUTPUT_MIME_TYPE: Final = "output.mime_type"
MIME_TEXT: Final = "text/plain"
MIME_JSON: Final = "application/json"
# a node's structured metrics (AI-Scientist-v2's MetricValue): the first metric's name,
# direction and per-dataset final/best values; every metric as JSON in NODE_METRICS
NODE_METRIC_NAME: Final = "ai.node.metric.name"
NODE_METRIC_LOWER_IS_BETTER: Final = "ai.node.metric.lower_is_better"
NODE_METRIC_DATASETS: Final = "ai.node.metric.datasets"
NODE_METRIC_FINAL: Final = "ai.node.metric.final"
NODE_METRIC_BEST: Final = "ai.node.metric.best"
NODE_METRICS: Final = "ai.node.metrics"
NODE_METRICS_OMITTED: Final = "ai.node.metrics.omitted"
