"""Secrets never leave the machine (SPEC section 7): redacted from log bodies,
attributes, exception messages and span names before export."""

from __future__ import annotations

import time

import pytest
from conftest import Wire

import otel_ai
from otel_ai.redaction import REDACTED, Redactor

OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
ANTHROPIC = "sk-ant-api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3" * 2
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HF = "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH"
GITHUB = "ghp_" + "0123456789abcdefghijABCDEFGHIJ0123"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"using key {OPENAI} for gpt-4o", OPENAI),
        (f"client = Anthropic(api_key='{ANTHROPIC}')", ANTHROPIC),
        (f"aws id {AWS_ID}", AWS_ID),
        (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
        (f"token: {HF}", HF),
        (f"git clone https://{GITHUB}@github.com/x/y", GITHUB),
        (f"Authorization: Bearer {JWT}", JWT),
        ("postgres://admin:hunter2hunter2@db:5432/x", "hunter2hunter2"),
        ('{"password": "correct horse battery"}', "correct"),
        ("HF_TOKEN=abc123def456 python train.py", "abc123def456"),
        ("export MY_SERVICE_SECRET=s3cr3tvalue", "s3cr3tvalue"),
    ],
)
def test_patterns(text: str, secret: str) -> None:
    redacted = Redactor(environ={}).redact(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=1024 temperature=0.7",
        "ai.artifact.key=runs/r1/plot.png",
        "Epoch 3: loss=0.25 acc=0.91",
        "the key insight is monotonicity",
        "gen_ai.usage.input_tokens=512",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor(environ={}).redact(text) == text


def test_values_of_secret_environment_variables_are_redacted_anywhere() -> None:
    redactor = Redactor(
        environ={"LAB_DB_PASSWORD": "plain-looking-value", "HOME": "/root", "KEY_SHORT": "abc"}
    )
    assert redactor.redact("connecting with plain-looking-value now") == f"connecting with {REDACTED} now"
    assert redactor.redact("abc and /root stay") == "abc and /root stay"


def test_secrets_are_redacted_from_everything_exported(
    http_wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "local-wandb-key-1234567890")
    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_wire.receiver.http_endpoint)
    try:
        with otel_ai.run("run-secret", command=f"python x.py --api-key {OPENAI}") as run:
            with run.stage("s", description="uses local-wandb-key-1234567890") as stage:
                stage.metric("note", f"token {HF}")
            run.log(f"OPENAI_API_KEY={OPENAI} loaded", "info")
            raise RuntimeError(f"auth failed for {ANTHROPIC}")
    except RuntimeError:
        pass
    otel_ai.shutdown(5.0)
    spans = http_wire.receiver.spans()
    logs = http_wire.receiver.logs()
    dumped = repr(
        [(s.name, s.attributes, [(e.name, e.attributes) for e in s.events], s.status_message) for s in spans]
    )
    dumped += repr([(r.body, r.attributes) for r in logs])
    for secret in (OPENAI, ANTHROPIC, HF, "local-wandb-key-1234567890"):
        assert secret not in dumped
    assert dumped.count(REDACTED) >= 5
    run_span = next(s for s in spans if s.name == "ai.run")
    assert run_span.attributes["exception.message"] == f"auth failed for {REDACTED}"
    assert any(r.body == f"OPENAI_API_KEY={REDACTED} loaded" for r in logs)


# --- whatever encoding otel_ai or the experiment applied (issue: JSON escapes, URL-encoding,
# inside longer identifiers) --------------------------------------------------------------

SLACK = "xoxb-" + "1234567890-abcdefghijklmnop"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6q"
OPENAI_PLAIN = "sk-" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4"
ALL_TOKENS = (OPENAI, OPENAI_PLAIN, ANTHROPIC, AWS_ID, HF, GITHUB, SLACK, GOOGLE, JWT)


def _placements(token: str) -> list[str]:
    import json
    import urllib.parse

    line_start = json.dumps({"notes": f"first line\n{token} second line"})
    return [
        line_start,  # after a literal \n, as otel_ai JSON-encodes dict values
        json.dumps(json.dumps({"msg": f"\t{token}"})),  # encoded twice
        json.dumps([f'said "{token}"']),  # after \"
        f"saved plot_{token}.png",  # inside a longer identifier
        f"saved plot_{token}_final.png",
        f"run-{token}",
        urllib.parse.quote(f"key={token}&next=1"),  # URL-encoded
        urllib.parse.quote(f"\n{token}"),
        f"https://example.com/cb?token%3D{token}",
        json.dumps(f"\u00e9{token}", ensure_ascii=True),  # after \u00e9
    ]


@pytest.mark.parametrize("token", ALL_TOKENS, ids=lambda t: t[:6])
def test_tokens_are_redacted_whatever_encoding_surrounds_them(token: str) -> None:
    redactor = Redactor(environ={})
    for text in _placements(token):
        redacted = redactor.redact(text)
        assert token not in redacted, text
        assert token[8:24] not in redacted, text
        assert REDACTED in redacted


def test_a_name_value_match_does_not_eat_the_lines_after_it() -> None:
    import json

    text = json.dumps({"stdout": "OPENAI_API_KEY=abc123def456\nepoch 1 loss 0.25\nepoch 2 loss 0.125"})
    redacted = Redactor(environ={}).redact(text)
    assert "abc123def456" not in redacted
    assert "epoch 1 loss 0.25\\nepoch 2 loss 0.125" in redacted
    nested = json.dumps({"data": json.dumps({"api_key": "abc123def456", "lr": 0.001})})
    redacted = Redactor(environ={}).redact(nested)
    assert "abc123def456" not in redacted and "0.001" in redacted


def test_values_of_secret_environment_variables_are_redacted_once_encoded() -> None:
    import json
    import urllib.parse

    value = 'p@ss "w/rd" 42'
    redactor = Redactor(environ={"LAB_DB_PASSWORD": value})
    for text in (json.dumps({"v": value}), urllib.parse.quote(value), urllib.parse.quote_plus(value)):
        assert "w/rd" not in redactor.redact(text) and "w%2Frd" not in redactor.redact(text), text


# --- bare AWS secret access keys -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"{AWS_ID} {AWS_SECRET}",  # next to its key id
        f"aws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n",  # credentials file
        f"[default]\nsecret = {AWS_SECRET}",
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",  # env
        f'{{"AccessKeyId": "{AWS_ID}", "SecretAccessKey": "{AWS_SECRET}"}}',  # aws sts output
        f"secretAccessKey: {AWS_SECRET}",
        f"creds: {AWS_SECRET}",
        f"from vault: {AWS_SECRET}",
        f"the key is\\n{AWS_SECRET}\\n",
        "s3 upload with AKIAIOSFODNN7EXAMPLE failed; secret " + "Zk3Qp9Rt2Vx7Bn4Mc8Ld1Fg6Hj5Ks0Wy3Ea9Ub2T",
    ],
)
def test_bare_aws_secret_keys_are_redacted(text: str) -> None:
    redacted = Redactor(environ={}).redact(text)
    assert AWS_SECRET not in redacted and "bPxRfiCY" not in redacted and "Rt2Vx7Bn4M" not in redacted, (
        redacted
    )
    assert REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 merged",  # git sha1
        "sha1: DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
        "checkpoint experiments/runs/Epoch12/modelWeights1.pt saved",
        "saved figures/Run3_Validation/AccuracyPlot2a.png",
        "node id 3f9a1c2b4d5e6f708192a3b4c5d6e7f8a9b0c1d2 done",
        "ThisIsAVeryLongCamelCaseIdentifierName42 is fine",
        "wrote experiments/Run3/Epoch12/modelWeights1a to disk",  # 40 characters, no context
        "aws region us-east-1, commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
    ],
)
def test_hashes_and_paths_are_not_taken_for_aws_secrets(text: str) -> None:
    assert Redactor(environ={}).redact(text) == text


def test_encoded_secrets_never_reach_the_wire(http_wire: Wire) -> None:
    import json

    token_lines = "\n".join(ALL_TOKENS) + "\n" + f"{AWS_ID}\n{AWS_SECRET}"
    otel_ai.event_callback(
        "ai.custom.thing",
        {"run_id": "run-enc", "stdout": token_lines, "nested": {"a": [f"plot_{OPENAI}.png"]}},
    )
    with otel_ai.run("run-enc2") as run:
        run.log(json.dumps({"line": f"\n{ANTHROPIC}"}), "info")
    otel_ai.shutdown(5.0)
    dumped = repr(
        [
            (s.name, s.attributes, [(e.name, e.attributes) for e in s.events], s.status_message)
            for s in http_wire.receiver.spans()
        ]
    )
    dumped += repr([(r.body, r.attributes) for r in http_wire.receiver.logs()])
    assert "ai.custom.thing" in dumped
    for secret in (*ALL_TOKENS, AWS_SECRET):
        assert secret not in dumped and json.dumps(secret)[1:-1] not in dumped
    assert REDACTED in dumped


def _planted_events(run_id: str) -> None:
    import json

    lines = "\n".join(ALL_TOKENS) + f"\n{AWS_ID}\n{AWS_SECRET}"
    with otel_ai.run(run_id, command=f"python x.py --out plot_{OPENAI}.png") as run:
        with run.stage("1_initial", description=json.dumps({"note": f"\n{HF}"})) as stage:
            stage.metric("notes", json.dumps({"stdout": lines}))
        otel_ai.event_callback(
            "ai.custom.thing", {"run_id": run_id, "stdout": lines, "nested": {"a": [f"plot_{OPENAI}.png"]}}
        )
        run.log(json.dumps({"line": f"\n{ANTHROPIC}"}), "info")
        raise_and_catch = RuntimeError(json.dumps({"error": f"\n{GITHUB}"}))
        run.log(str(raise_and_catch), "error")


def _assert_no_secret(text: str, where: str) -> None:
    import json
    import urllib.parse

    for secret in (*ALL_TOKENS, AWS_SECRET):
        for shape in (secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe="")):
            assert shape not in text, f"{secret[:10]} in {where}"


def test_encoded_secrets_stay_out_of_the_embedded_files_and_the_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from otel_ai.cli import main as cli_main

    data_dir = tmp_path / "otel-ai-runs"
    otel_ai.configure()
    _planted_events("run-files")
    otel_ai.shutdown(5.0)
    files = sorted(data_dir.glob("*.jsonl"))
    assert files
    for path in files:
        _assert_no_secret(path.read_text(encoding="utf-8"), path.name)
    assert REDACTED in "".join(p.read_text(encoding="utf-8") for p in files)
    out = tmp_path / "report.html"
    assert cli_main(["report", "run-files", "--data-dir", str(data_dir), "-o", str(out)]) == 0
    _assert_no_secret(out.read_text(encoding="utf-8"), "the HTML report")


def test_encoded_secrets_stay_out_of_the_spool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the collector is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    otel_ai.configure(endpoint=f"http://127.0.0.1:{port}", protocol="http/protobuf")
    _planted_events("run-spool")
    otel_ai.shutdown(3.0)
    spooled = sorted((tmp_path / "otel-ai-runs" / "spool").rglob("*.pb"))
    assert spooled
    data = b"".join(p.read_bytes() for p in spooled).decode("utf-8", "replace")
    _assert_no_secret(data, "the spool")
    assert REDACTED in data


def test_watch_state_files_keep_no_secret_and_still_resume(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """data/watch/*.json hold paths and names: a token in a file or directory name is
    redacted there too, and a restarted watcher still neither repeats nor skips."""
    from watch_helpers import Collector, append, logs_only, wait_for

    monkeypatch.setenv("OTEL_AI_RUN_ID", "resume-secret")
    root = tmp_path / f"exp_{HF}"
    root.mkdir()
    name = f"train_{OPENAI}.log"
    sink = Collector()
    watcher = logs_only(root, sink)
    append(root / name, "one\ntwo\n")
    append(root / "plain.log", "p1\n")
    wait_for(lambda: len(sink) == 3)
    watcher.stop(5)
    states = sorted((tmp_path / "otel-ai-runs" / "watch").glob("*.json*"))
    assert states
    for path in states:
        _assert_no_secret(path.read_text(encoding="utf-8"), path.name)
    append(root / name, "three\n")
    sink2 = Collector()
    watcher = logs_only(root, sink2)
    wait_for(lambda: len(sink2) >= 1)
    time.sleep(0.3)
    watcher.stop(5)
    assert sink2.texts() == ["three"]


def test_secrets_in_event_names_resource_and_structured_bodies_are_redacted(
    http_wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond attributes and string bodies: the top-level event_name of an unknown event
    recorded as given, OTEL_RESOURCE_ATTRIBUTES, and a structured (dict) log body."""

    otel_ai.testing.reset()
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"deployment.environment=lab,lab.token={HF}")
    otel_ai.configure(endpoint=http_wire.receiver.http_endpoint, protocol="http/protobuf")
    otel_ai.event_callback(f"ai.custom.{OPENAI}", {"run_id": "run-names"})
    from otel_ai.export.providers import get_pipeline

    get_pipeline().logger.emit(
        body={"msg": f"token {GITHUB}", "nested": [{"k": ANTHROPIC}]}, severity_text="INFO"
    )
    otel_ai.shutdown(5.0)
    logs = http_wire.receiver.logs()
    spans = http_wire.receiver.spans()
    dumped = repr([(r.event_name, r.body, r.attributes, r.resource) for r in logs])
    dumped += repr([(s.name, s.resource) for s in spans])
    for secret in (OPENAI, HF, GITHUB, ANTHROPIC):
        assert secret not in dumped, secret[:8]
    assert any(r.event_name == f"ai.custom.{REDACTED}" for r in logs)
    assert any(isinstance(r.body, dict) and r.body["nested"] == [{"k": REDACTED}] for r in logs)
    assert any(r.resource.get("lab.token") == REDACTED for r in logs)


def test_spool_owner_file_keeps_no_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    otel_ai.configure(endpoint=f"http://collector:hunter2hunter2@127.0.0.1:{port}", protocol="http/protobuf")
    with otel_ai.run("run-owner") as run:
        run.log("x", "info")
    otel_ai.shutdown(2.0)
    owners = list((tmp_path / "otel-ai-runs" / "spool").rglob("owner.json"))
    assert owners
    for path in owners:
        assert "hunter2hunter2" not in path.read_text()


# --- property-based: wherever a token lands, however the text was encoded ----------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_EDGES = [
    "\n",
    "\\n",
    "\\t",
    '\\"',
    '"',
    "'",
    "%0A",
    "%22",
    "%3D",
    "=",
    ": ",
    "(",
    "[",
    "/",
    "_",
    "plot_",
    "-",
    " ",
    "\\u00e9",
    "\t",
    ",",
]


def _encode(kind: str, text: str) -> str:
    import json
    import urllib.parse

    if kind == "json":
        return json.dumps(text)
    if kind == "json2":
        return json.dumps(json.dumps({"v": text}))
    if kind == "url":
        return urllib.parse.quote(text)
    if kind == "url+":
        return urllib.parse.quote_plus(text)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.sampled_from((*ALL_TOKENS, "sk-" + "a" * 20, "AKIA" + "Z" * 16)),
    head=st.text(max_size=40),
    before=st.sampled_from(_EDGES),
    after=st.sampled_from(_EDGES),
    tail=st.text(max_size=40),
    encoding=st.sampled_from(["plain", "json", "json2", "url", "url+"]),
)
def test_property_a_planted_token_never_survives(
    token: str, head: str, before: str, after: str, tail: str, encoding: str
) -> None:
    text = _encode(encoding, head + before + token + after + tail)
    redacted = Redactor(environ={}).redact(text)
    assert token not in redacted
    assert token[6:20] not in redacted


@settings(max_examples=200, deadline=None)
@given(
    digest=st.binary(min_size=20, max_size=20).map(bytes.hex),
    upper=st.booleans(),
    context=st.sampled_from(
        ["commit ", "aws key ", "secret sha1 ", "the token hash ", "", "AKIAIOSFODNN7EXAMPLE used by "]
    ),
)
def test_property_sha1_hashes_are_never_taken_for_aws_secrets(digest: str, upper: bool, context: str) -> None:
    text = context + (digest.upper() if upper else digest) + " done"
    assert Redactor(environ={}).redact(text).count(digest.upper() if upper else digest) == 1


def test_a_name_value_match_stops_at_url_encoded_line_ends() -> None:
    import urllib.parse

    text = urllib.parse.quote(f"API_KEY=abcdef123\nepoch 1 loss 0.25\naws secret={AWS_SECRET}\ndone", safe="")
    redacted = Redactor(environ={}).redact(text)
    assert "abcdef123" not in redacted and "bPxRfiCY" not in redacted
    assert urllib.parse.quote("\nepoch 1 loss 0.25\n", safe="") in redacted and redacted.endswith("%0Adone")
