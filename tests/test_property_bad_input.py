"""Bad input across the board (SPEC section 7), property-based.

Random event sequences, attribute values (nested, huge, non-UTF-8, NaN/inf, numpy types,
integers beyond 64 bits, objects) and log bytes thrown at the three front doors
(``otel_ai.run`` context managers, ``otel_ai.EventEmitter``, ``otel_ai.event_callback``)
and at the log tailer (``otel_ai.watch``), exported over OTLP/HTTP to the in-test
receiver. For every example:

- no exception reaches the caller (under pytest otel_ai re-raises its internal errors,
  so this also means no internal error was swallowed);
- every record decodes at the receiver, and nothing was dropped on the way (no log
  sequence number missing, every span a log record points at is there, no request
  refused or dropped);
- every string is bounded (attribute values 4 KiB, long texts 16 KiB, log bodies 64 KiB,
  keys and names 4 KiB);
- redaction holds: none of the planted secrets reaches the receiver.

``HYPOTHESIS_MAX_EXAMPLES`` raises the number of examples (default 20 per door).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from otlp_receiver import OTLPReceiver

import otel_ai
import otel_ai.testing
from otel_ai import semconv
from otel_ai._internal import internal_error_counts
from otel_ai.export import durable

# huge generated values make Hypothesis warn that their repr is large; that is the point
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "20"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# planted secrets (fake, in the shapes the redactor knows), with or without word boundaries
SECRETS = (
    "sk-ant-api03-" + "Zq8" * 12,
    "AKIAIOSFODNN7EXAMPLE",
    "hf_" + "abcDEF123" * 4,
    "ghp_" + "0123456789abcdefghij" * 2,
)

MAX_STRING, MAX_TEXT, MAX_BODY = 4096, 16384, 65536
LONG = {
    semconv.EXCEPTION_STACKTRACE,
    semconv.EXCEPTION_MESSAGE,
    semconv.VALIDATION_NOTES,
    semconv.NODE_SUMMARY,
}


class Opaque:
    """An object of no known type (str() works, nothing else)."""

    def __repr__(self) -> str:
        return "<Opaque>"


# --------------------------------------------------------------------------- strategies

any_char = st.characters(exclude_categories=())  # lone surrogates too: Python's non-UTF-8 text
texts = st.text(any_char, max_size=40)
huge_texts = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["x", "é", "\U0001f600", "\x00", "\udcff", "line\n", "sk-"]),
    st.integers(4000, 120_000),
)
# placed after a space, inside an identifier, after a JSON or URL-encoded line end
_EDGES = st.sampled_from(
    [(" ", " "), ("plot_", ".png"), ("\n", "\n"), ("\\n", "\\n"), ("%0A", "%0A"), ('\\"', '\\"'), ("=", "&")]
)
secret_texts = st.builds(
    lambda a, s, e, b: f"{a}{e[0]}{s}{e[1]}{b}", texts, st.sampled_from(SECRETS), _EDGES, texts
)
numpy_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.integers(0, 255).map(np.uint8),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.booleans().map(np.bool_),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    secret_texts,
    st.binary(max_size=64),
    st.builds(lambda b: b"\xff\xfe" + b, st.binary(max_size=16)),
    numpy_values,
    st.builds(Opaque),
    st.sampled_from([math.nan, math.inf, -math.inf, "NaN", "", " "]),
)
# Identifiers (run, stage and node ids) as callers pass them: odd, but scalars of sane
# length. Arrays, lists or dicts as ids and ids of 100k characters are the known gaps
# tested one by one at the end of this file.
identifiers = st.one_of(
    st.sampled_from(["r1", "r2", "Stage_1", "n1", ""]),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(any_char, max_size=60),
    secret_texts,
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats(width=32).map(np.float32),
)
numbers = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0.5", "nan", "inf", "", "abc", "1e400"]),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.floats().map(np.float64),
)
sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))
# data keys are free text too, but the identifiers among them (run_id, stage, node_id)
# take values of any kind: the vocabulary maps them
keys = st.one_of(
    st.text(any_char, min_size=1, max_size=40),
    st.sampled_from(
        [
            "run_id",
            "stage",
            "stage_name",
            "node_id",
            "parent_id",
            "metric",
            "is_buggy",
            "exec_time_s",
            "progress",
            "message",
            "level",
            "notes",
            "summary",
            "exception.stacktrace",
            "ai.run.id",
            "api_key",
            "OPENAI_API_KEY",
        ]
    ),
)
nested = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(keys, children, max_size=6),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=12,
)
# huge texts at the top (an attribute, a body, a dict of them); inside a list of mixed
# types one is a known gap (tested at the end)
values = st.one_of(
    nested, huge_texts, st.dictionaries(keys, huge_texts, max_size=2), st.lists(huge_texts, max_size=2)
)
_ID_KEYS = ("run_id", "stage", "stage_name", "node_id", "parent_id")
data_dicts = st.builds(
    lambda free, ids: {**free, **ids},
    st.dictionaries(keys.filter(lambda k: k not in _ID_KEYS), values, max_size=8),
    st.dictionaries(st.sampled_from(_ID_KEYS), identifiers, max_size=3),
)
str_kwargs = st.dictionaries(st.text(any_char, min_size=1, max_size=20), values, max_size=4)

EVENT_TYPES = [
    semconv.RUN_STARTED,
    semconv.RUN_COMPLETED,
    semconv.RUN_FAILED,
    semconv.RUN_CANCELED,
    semconv.RUN_HEARTBEAT,
    semconv.STAGE_STARTED,
    semconv.STAGE_PROGRESS,
    semconv.STAGE_METRIC,
    semconv.STAGE_COMPLETED,
    semconv.NODE_CREATED,
    semconv.NODE_CODE_GENERATED,
    semconv.NODE_EXECUTING,
    semconv.NODE_COMPLETED,
    semconv.NODE_SELECTED_BEST,
    semconv.ARTIFACT_DETECTED,
    semconv.ARTIFACT_REGISTERED,
    semconv.PAPER_STARTED,
    semconv.PAPER_GENERATED,
    semconv.VALIDATION_STARTED,
    semconv.VALIDATION_COMPLETED,
    semconv.RUN_LOG,
    semconv.EXPERIMENT_NODE_COMPLETED,
]
event_types = st.one_of(st.sampled_from(EVENT_TYPES), texts, huge_texts)
ID, V, N = identifiers, values, numbers
EMITTER_METHODS: dict[str, tuple[Any, ...]] = {  # method: its arguments after run_id
    "run_started": (ID, V, V),
    "run_heartbeat": (),
    "run_completed": (N,),
    "run_failed": (ID, V, V, V, V),
    "run_canceled": (V, ID),
    "stage_started": (ID, V),
    "stage_progress": (ID, N, N, N, N, N, N, V, N),
    "stage_completed": (ID, N),
    "metric_computed": (ID, V, V),
    "node_created": (ID, ID, ID, V),
    "node_code_generated": (
        ID,
        ID,
        sizes,
        st.one_of(st.none(), texts, huge_texts, secret_texts, st.binary(max_size=200)),
    ),
    "node_executing": (ID, ID),
    "node_completed": (ID, ID, V, V, N, V),
    "node_selected_best": (ID, ID, V),
    "log": (V, V, V),
    "artifact_detected": (V, V, sizes),
    "artifact_registered": (V, sizes, V, V, V, V),
    "paper_started": (),
    "paper_generated": (V,),
    "validation_auto_started": (V,),
    "validation_auto_completed": (V, st.one_of(st.dictionaries(keys, values, max_size=4), V), V),
}
emitter_calls = st.sampled_from(sorted(EMITTER_METHODS)).flatmap(
    lambda name: st.tuples(st.just(name), identifiers, st.tuples(*EMITTER_METHODS[name]))
)
door_calls = st.one_of(
    st.tuples(st.just("callback"), event_types, st.one_of(data_dicts, st.none(), values)),
    st.tuples(st.just("emit"), event_types, identifiers, st.one_of(data_dicts, st.none())),
    st.tuples(st.just("method"), emitter_calls),
)

cm_ops = st.one_of(
    st.tuples(st.just("stage"), identifiers, values, str_kwargs),
    st.tuples(st.just("node"), identifiers, identifiers, values, str_kwargs),
    st.tuples(st.just("completed"), values, values, numbers, values, str_kwargs),
    st.tuples(
        st.just("progress"),
        st.tuples(numbers, numbers, numbers, numbers, numbers, values, numbers),
        str_kwargs,
    ),
    st.tuples(st.just("metric"), values, values),
    st.tuples(st.just("log"), values, values),
    st.tuples(st.just("code"), st.one_of(texts, huge_texts, secret_texts, st.binary(max_size=200))),
    st.tuples(st.just("executing"), values),
    st.tuples(st.just("selected_best"), identifiers, values),
    st.tuples(st.just("fail"), values, values, values),
    st.tuples(st.just("paper"), values),
    st.tuples(
        st.just("review"), values, st.one_of(st.dictionaries(keys, values, max_size=4), values), values
    ),
)

log_lines = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda n: b"y" * n, st.integers(60_000, 200_000)),
        st.builds(lambda s: f"ERROR token {s} here".encode(), st.sampled_from(SECRETS)),
        st.sampled_from(
            [
                b"\xff\xfe\xfd",
                b"\xc3\x28 bad utf-8",
                b"\r",
                b"\x00\x00",
                b"Traceback (most recent call last):",
            ]
        ),
        texts.map(lambda t: t.encode("utf-8", "surrogateescape" if False else "surrogatepass")),
    ),
    max_size=15,
)


# --------------------------------------------------------------------------- checks


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as instance:
        yield instance


def _fresh(receiver: OTLPReceiver) -> None:
    otel_ai.testing.reset()
    receiver.clear()
    otel_ai.configure(endpoint=receiver.http_endpoint, protocol="http/protobuf")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _check_attributes(attributes: dict[str, Any], where: str) -> None:
    for key, value in attributes.items():
        assert len(key) <= MAX_STRING, f"{where}: attribute key of {len(key)} chars"
        limit = MAX_TEXT if key in LONG else MAX_STRING
        for text in _strings(value):
            assert len(text) <= limit, f"{where}: {key} holds {len(text)} chars"


def _check_wire(
    receiver: OTLPReceiver, errors_before: dict[str, int], dropped_before: dict[Any, int]
) -> None:
    assert otel_ai.shutdown(10.0), "everything is delivered"
    assert internal_error_counts() == errors_before, "no internal error swallowed"
    assert durable.dropped_totals() == dropped_before, "nothing dropped"
    received = receiver.received()
    blob = json.dumps([item.as_dict() for item in received], ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in blob, f"a secret reached the collector: {secret[:8]}..."
    spans = receiver.spans()
    logs = receiver.logs()
    for span in spans:
        assert len(span.name) <= MAX_STRING + 16, f"span name of {len(span.name)} chars"
        _check_attributes(span.attributes, span.name)
        for event in span.events:
            assert len(event.name) <= MAX_STRING + 16
            _check_attributes(event.attributes, f"{span.name}/{event.name}")
    span_ids = {s.span_id for s in spans}
    seqs = []
    for record in logs:
        assert isinstance(record.body, str) and len(record.body) <= MAX_BODY + 64, "log body bounded"
        _check_attributes(record.attributes, f"log {record.event_name}")
        if semconv.EVENT_SEQ in record.attributes:
            seqs.append(record.attributes[semconv.EVENT_SEQ])
        if record.span_id is not None:
            assert record.span_id in span_ids, "every span a record points at was exported"
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "no log record lost"


def _baseline() -> tuple[dict[str, int], dict[Any, int]]:
    return internal_error_counts(), durable.dropped_totals()


# --------------------------------------------------------------------------- the doors


@SETTINGS
@given(calls=st.lists(door_calls, max_size=12))
def test_event_doors_take_anything(receiver: OTLPReceiver, calls: list[Any]) -> None:
    _fresh(receiver)
    before = _baseline()
    emitter = otel_ai.EventEmitter("http://control-plane.invalid", "pod-x")
    for call in calls:
        if call[0] == "callback":
            assert otel_ai.event_callback(call[1], call[2]) is None
        elif call[0] == "emit":
            assert emitter.emit(call[1], call[2], call[3]) is True
        else:
            name, run_id, args = call[1]
            assert getattr(emitter, name)(run_id, *args) is True
    _check_wire(receiver, *before)


@SETTINGS
@given(run_id=identifiers, attributes=str_kwargs, ops=st.lists(cm_ops, max_size=12), escape=st.booleans())
def test_context_managers_take_anything(
    receiver: OTLPReceiver, run_id: Any, attributes: dict[str, Any], ops: list[Any], escape: bool
) -> None:
    _fresh(receiver)
    before = _baseline()

    class Boom(Exception):
        pass

    try:
        with otel_ai.run(run_id, gpu=run_id, **attributes) as run:
            stage = node = None
            for op in ops:
                kind, args = op[0], op[1:]
                if kind == "stage":
                    stage = run.stage(args[0], args[1], **args[2])
                elif kind == "node" and stage is not None:
                    node = stage.node(args[0], args[1], args[2], **args[3])
                elif kind == "completed" and node is not None:
                    node.completed(args[0], args[1], args[2], args[3], **args[4])
                elif kind == "progress" and stage is not None:
                    stage.progress(*args[0], **args[1])
                elif kind == "metric" and stage is not None:
                    stage.metric(args[0], args[1])
                elif kind == "log":
                    run.log(args[0], args[1])
                elif kind == "code" and node is not None:
                    node.code_generated(args[0])
                elif kind == "executing" and node is not None:
                    with node.executing(args[0]):
                        pass
                elif kind == "selected_best" and stage is not None:
                    stage.selected_best(args[0], args[1])
                elif kind == "fail":
                    run.fail(error_type=args[0], message=args[1], stacktrace=args[2])
                elif kind == "paper":
                    with run.paper() as paper:
                        paper.generated(args[0])
                elif kind == "review":
                    with run.validation(args[0]) as review:
                        review.completed(args[0], args[1], args[2])
            if escape:
                raise Boom(f"escaped {run_id!r}"[:200])
    except Boom:
        pass
    _check_wire(receiver, *before)


@SETTINGS
@given(lines=log_lines, trailing=st.binary(max_size=50))
def test_the_tailer_takes_any_bytes(receiver: OTLPReceiver, lines: list[bytes], trailing: bytes) -> None:
    watch = pytest.importorskip(
        "otel_ai.watch", reason="the log tailer (otel_ai.watch) is not in this checkout"
    )
    _fresh(receiver)
    before = _baseline()
    with tempfile.TemporaryDirectory() as directory, otel_ai.run("tailed") as run:
        watcher = watch.Watcher(
            run, roots=[directory], polling=True, poll_interval_s=0.1, flush_timeout_s=0.2, upload=False
        )
        watcher.start()
        content = b"\n".join(lines) + (b"\n" if lines else b"") + trailing
        (Path(directory) / "experiment.log").write_bytes(content)
        time.sleep(0.3)
        watcher.stop(timeout=10.0)
    _check_wire(receiver, *before)
    tailed = [
        r for r in receiver.logs() if r.attributes.get(semconv.LOG_FILE_PATH, "").endswith("experiment.log")
    ]
    # empty lines (and lone CRs) are counted by the tailer, not sent
    *complete, tail = content.split(b"\n")
    expected = sum(1 for line in [*complete, tail] if line and line != b"\r")
    assert len(tailed) == expected, f"{len(tailed)} of {expected} lines arrived"


def test_strategies_cover_the_odd_types() -> None:
    """The generators above do produce what SPEC section 7 names (a guard against a
    strategy that silently stops generating them)."""

    def leaves(value: Any) -> Iterator[Any]:
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from leaves(item)
        else:
            yield value

    kinds: dict[str, Callable[[Any], bool]] = {
        "numpy": lambda v: isinstance(v, np.generic),
        "nan": lambda v: isinstance(v, float) and math.isnan(v),
        "huge": lambda v: isinstance(v, str) and len(v) > MAX_BODY,
        "surrogate": lambda v: isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v),
        "invalid-utf8": lambda v: isinstance(v, bytes) and v.startswith(b"\xff"),
        "big-int": lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**64,
        "secret": lambda v: isinstance(v, str) and any(secret in v for secret in SECRETS),
    }
    for check in kinds.values():
        find(
            values,
            lambda v, check=check: any(check(leaf) for leaf in leaves(v)),
            settings=settings(max_examples=2000, database=None, derandomize=True),
        )
    find(
        values,
        lambda v: isinstance(v, dict),
        settings=settings(max_examples=500, database=None, derandomize=True),
    )


# --------------------------------------------------------------------------- known gaps
# What the properties above found in the model (otel_ai/model), one minimal case each.

# These were model gaps the property test found; fixed, they stay as regression tests.


@pytest.fixture
def wire_once(receiver: OTLPReceiver) -> Iterator[OTLPReceiver]:
    _fresh(receiver)
    yield receiver


@pytest.mark.parametrize("odd", [np.array([1.0, 2.0]), np.array([])], ids=["array", "empty-array"])
def test_gap_arrays_where_a_name_or_kind_is_expected(wire_once: OTLPReceiver, odd: Any) -> None:
    """``if name`` / ``if kind`` on a numpy array raises (spans.py Run.stage, Node.__init__,
    vocabulary.start_run / dispatch)."""
    before = _baseline()
    emitter = otel_ai.EventEmitter()
    emitter.run_started(odd)
    emitter.stage_started("r1", odd)
    emitter.node_created("r1", "Stage_1", "n1", None, odd)
    with otel_ai.run("r2") as run:
        run.stage("s").node("n2", None, odd)
    _check_wire(wire_once, *before)


@pytest.mark.parametrize(
    "code", [-1, 1.5, (None, None), [300]], ids=["negative-int", "float", "tuple", "big-int-list"]
)
def test_gap_code_of_another_type(wire_once: OTLPReceiver, code: Any) -> None:
    """``Node.code_generated`` does ``bytes(code)`` for anything not a str: an int n
    allocates n zero bytes on the caller's thread (10**9: a gigabyte), others raise."""
    before = _baseline()
    with otel_ai.run("r1") as run:
        run.stage("s").node("n1").code_generated(code)
    _check_wire(wire_once, *before)


def test_gap_long_string_in_a_mixed_list(wire_once: OTLPReceiver) -> None:
    """coerce._coerce_sequence: in a mixed list, str items are not truncated."""
    before = _baseline()
    with otel_ai.run("r1", mixed=[False, "x" * 5000]):
        pass
    _check_wire(wire_once, *before)


def test_gap_empty_key_with_a_number(wire_once: OTLPReceiver) -> None:
    """coerce_attributes keeps an empty key when the value is a bool, int or float; the
    SDK then drops it with a LogRecordDroppedAttributesWarning."""
    before = _baseline()
    otel_ai.event_callback(semconv.RUN_STARTED, {"run_id": "r1", "": False})
    _check_wire(wire_once, *before)


def test_gap_run_id_is_not_bounded(wire_once: OTLPReceiver) -> None:
    before = _baseline()
    otel_ai.EventEmitter().run_started("r" * 100_000)
    _check_wire(wire_once, *before)


def test_gap_attribute_keys_are_not_bounded(wire_once: OTLPReceiver) -> None:
    before = _baseline()
    otel_ai.event_callback(semconv.RUN_STARTED, {"run_id": "r1", "k" * 100_000: 1})
    _check_wire(wire_once, *before)
