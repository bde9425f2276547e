"""Redaction is a handler-level filter on the root logger: every logger's records, their extra
fields and their tracebacks lose registered secrets, environment credentials and URL passwords."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from apextrader.runtime.logging import setup_logging
from apextrader.runtime.redaction import install_redaction, redact_url

SECRET = "s3cr3t-9f8e7d6c5b4a"
ENV_KEY = "env-key-0a1b2c3d4e5f"


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OKX_API_PASSWORD", ENV_KEY)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield
    finally:
        root.handlers[:], root.level = saved


def start() -> None:
    """Logging as an agent process sets it up (in the test body, where stderr is captured)."""
    setup_logging("debug", agent="execution")
    install_redaction([SECRET])


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


def test_any_logger_and_its_traceback_are_redacted(logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    start()
    try:
        raise RuntimeError(f"binanceusdm POST https://fapi.binance.com/fapi/v1/order?signature=x {SECRET}")
    except RuntimeError:
        logging.getLogger("ccxt.base.exchange").exception("request failed")
    logging.getLogger("some.library").warning("headers %s", {"X-MBX-APIKEY": SECRET})
    logging.getLogger("apextrader.runtime.runner").error("crash", extra={"detail": f"key={ENV_KEY}"})
    out = lines(capsys)
    text = json.dumps(out)
    assert SECRET not in text and ENV_KEY not in text
    assert "RuntimeError" in str(out[0]["exc"]) and "***" in str(out[0]["exc"])  # the traceback stays
    assert out[1]["msg"] == "headers {'X-MBX-APIKEY': '***'}"


def test_credentials_in_urls_are_redacted_everywhere(logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    start()
    logging.getLogger("apextrader.bus.client").info(
        "nats: reconnected to %s", "nats://apex:hunter2@nats:4222"
    )
    logging.getLogger("nats").error("connect failed", extra={"url": "tls://u:p@host:4222"})
    (first, second) = lines(capsys)
    assert first["msg"] == "nats: reconnected to nats://***@nats:4222"
    assert second["url"] == "tls://***@host:4222"
    assert "hunter2" not in json.dumps([first, second])


def test_redact_url_keeps_urls_without_credentials() -> None:
    assert (
        redact_url("nats://127.0.0.1:4222 and https://api.x.io/a@b")
        == "nats://127.0.0.1:4222 and https://api.x.io/a@b"
    )
