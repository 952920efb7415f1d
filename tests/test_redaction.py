"""Secrets never leave the machine (SPEC section 7): redacted from log bodies,
attributes, exception messages and span names before export."""

from __future__ import annotations

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
    redactor = Redactor(environ={"LAB_DB_PASSWORD": "plain-looking-value", "HOME": "/root", "KEY_SHORT": "abc"})
    assert redactor.redact("connecting with plain-looking-value now") == f"connecting with {REDACTED} now"
    assert redactor.redact("abc and /root stay") == "abc and /root stay"


def test_secrets_are_redacted_from_everything_exported(http_wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
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
    dumped = repr([(s.name, s.attributes, [(e.name, e.attributes) for e in s.events], s.status_message) for s in spans])
    dumped += repr([(r.body, r.attributes) for r in logs])
    for secret in (OPENAI, ANTHROPIC, HF, "local-wandb-key-1234567890"):
        assert secret not in dumped
    assert dumped.count(REDACTED) >= 5
    run_span = next(s for s in spans if s.name == "ai.run")
    assert run_span.attributes["exception.message"] == f"auth failed for {REDACTED}"
    assert any(r.body == f"OPENAI_API_KEY={REDACTED} loaded" for r in logs)
