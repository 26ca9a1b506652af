"""The emulator as an HTTP server: loopback only, real 429s under load, routes, shutdown.

Real sockets and real time (latencies of milliseconds to half a second).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
import trio

from sluicegate import ConfigurationError
from sluicegate.testing import EmulatorConfig, serve_emulator
from sluicegate.testing.emulator import main

CHAT_BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmulatorConfig(host=host)
    assert caught.value.field == "EmulatorConfig.host"
    assert "loopback" in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert EmulatorConfig(host=host).host == host


def test_cli_refuses_non_loopback() -> None:
    # In a child process with a deadline: a broken check must fail the test, not serve forever.
    done = subprocess.run(
        [sys.executable, "-m", "sluicegate.testing.emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "EmulatorConfig.host" in done.stderr
    assert "loopback" in done.stderr
    assert done.stdout == ""


def test_cli_main_returns_2_on_invalid_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--capacity", "0", "--port", "0"]) == 2
    assert "EmulatorConfig.capacity" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"port": 70000}, "port"),
        ({"capacity": 0}, "capacity"),
        ({"failure_rate": 2.0}, "failure_rate"),
        ({"failure_status": 404}, "failure_status"),
        ({"latency_jitter": 1.0}, "latency_jitter"),
        ({"idle_timeout_seconds": 0}, "idle_timeout_seconds"),
    ],
)
def test_invalid_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmulatorConfig(**kwargs)
    assert caught.value.field == f"EmulatorConfig.{field}"


def test_config_repr_redacts_the_api_key() -> None:
    text = repr(EmulatorConfig(api_key="sk-emulator-secret"))
    assert "sk-emulator-secret" not in text
    assert "capacity=None" in text


async def test_health_models_and_unknown_routes() -> None:
    config = EmulatorConfig(models=("chat-model", "embed-model"))
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        assert emulator.base_url.startswith("http://127.0.0.1:")
        health = await client.get(emulator.base_url + "/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        models = await client.get(emulator.base_url + "/v1/models")
        assert [m["id"] for m in models.json()["data"]] == ["chat-model", "embed-model"]
        assert (await client.post(emulator.base_url + "/health")).status_code == 405
        assert (await client.get(emulator.base_url + "/v1/chat/completions")).status_code == 405
        missing = await client.get(emulator.base_url + "/v2/other")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        stats = emulator.stats
    assert stats.requests == 5
    assert stats.responses_by_status == {200: 2, 405: 2, 404: 1}
    assert stats.provider.calls == 0  # none of these reached the model


async def test_bad_bodies_answer_400_and_413() -> None:
    config = EmulatorConfig(max_body_bytes=1000)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"
        not_json = await client.post(url, content=b"{not json")
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "invalid_body"
        no_messages = await client.post(url, json={"model": "m"})
        assert no_messages.status_code == 400
        assert "messages" in no_messages.json()["error"]["message"]
        too_big = await client.post(url, json={**CHAT_BODY, "pad": "x" * 5000})
        assert too_big.status_code == 413
        # The server keeps serving after all of that.
        ok = await client.post(url, json=CHAT_BODY)
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["message"]["role"] == "assistant"


async def test_malformed_http_gets_400_and_the_server_survives() -> None:
    async with serve_emulator() as emulator:
        stream = await trio.open_tcp_stream("127.0.0.1", emulator.port)
        async with stream:
            await stream.send_all(b"THIS IS NOT HTTP\r\n\r\n")
            with trio.fail_after(2):
                reply = await stream.receive_some(4096)
        assert reply.startswith(b"HTTP/1.1 400")
        async with httpx.AsyncClient() as client:
            health = await client.get(emulator.base_url + "/health")
        assert health.status_code == 200


async def test_concurrency_capacity_produces_429s_under_load() -> None:
    # Each admitted call lasts 0.5 s; all 12 requests arrive well inside that window.
    config = EmulatorConfig(latency_seconds=0.5, capacity=3, retry_after_seconds=2.0)
    responses: list[httpx.Response] = []
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"

        async def one(i: int) -> None:
            body = {**CHAT_BODY, "messages": [{"role": "user", "content": f"row {i}"}]}
            responses.append(await client.post(url, json=body))

        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(one, i)
        stats = emulator.stats
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [429] * 9
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "2"
            assert response.headers["retry-after-ms"] == "2000"
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
            assert response.headers["x-ratelimit-reset-requests"] == "2s"
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert stats.provider.max_in_flight == 3
    assert stats.provider.rate_limited == 9
    assert stats.responses_by_status == {200: 3, 429: 9}


async def test_requests_per_minute_headers() -> None:
    config = EmulatorConfig(latency_seconds=0.001, requests_per_minute=3)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"
        answers = [await client.post(url, json=CHAT_BODY) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "3" for a in answers)
    assert answers[3].headers["retry-after"] == "60"
    assert 59_000 < int(answers[3].headers["retry-after-ms"]) <= 60_000


async def test_set_capacity_while_serving() -> None:
    config = EmulatorConfig(latency_seconds=0.3)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"
        emulator.provider.set_capacity(1)
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await client.post(url, json=CHAT_BODY)).status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one)
    assert sorted(statuses) == [200, 429, 429]


async def test_failure_injection_answers_5xx() -> None:
    config = EmulatorConfig(latency_seconds=0.001, failure_rate=1.0, failure_status=502)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        answer = await client.post(
            emulator.base_url + "/v1/embeddings", json={"model": "e", "input": "x"}
        )
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "server_error"


async def test_injected_hang_answers_504() -> None:
    config = EmulatorConfig(latency_seconds=0.001, timeout_rate=1.0, timeout_seconds=0.05)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        answer = await client.post(emulator.base_url + "/v1/chat/completions", json=CHAT_BODY)
    assert answer.status_code == 504


async def test_api_key_is_required_when_configured() -> None:
    config = EmulatorConfig(latency_seconds=0.001, api_key="k-123")
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        url = emulator.base_url + "/v1/chat/completions"
        assert (await client.post(url, json=CHAT_BODY)).status_code == 401
        wrong = await client.post(url, json=CHAT_BODY, headers={"authorization": "Bearer k-12"})
        assert wrong.status_code == 401
        right = await client.post(url, json=CHAT_BODY, headers={"authorization": "Bearer k-123"})
        assert right.status_code == 200
        # Health stays open so probes need no credentials.
        assert (await client.get(emulator.base_url + "/health")).status_code == 200


async def test_keep_alive_and_connection_close() -> None:
    async with serve_emulator() as emulator, httpx.AsyncClient() as client:
        for _ in range(4):
            assert (await client.get(emulator.base_url + "/health")).status_code == 200
        assert emulator.stats.connections_opened == 1
        closing = await client.get(emulator.base_url + "/health", headers={"connection": "close"})
        assert closing.headers["connection"] == "close"
        await client.get(emulator.base_url + "/health")
        assert emulator.stats.connections_opened == 2


async def test_idle_keep_alive_connections_are_closed() -> None:
    config = EmulatorConfig(idle_timeout_seconds=0.05)
    async with serve_emulator(config) as emulator, httpx.AsyncClient() as client:
        await client.get(emulator.base_url + "/health")
        await trio.sleep(0.2)
        assert emulator.stats.connections_active == 0
        # httpx notices the closed connection and opens a new one.
        assert (await client.get(emulator.base_url + "/health")).status_code == 200
        assert emulator.stats.connections_opened == 2


async def test_shutdown_with_requests_in_flight_is_clean() -> None:
    failures: list[BaseException] = []
    async with httpx.AsyncClient() as client:

        async def one(url: str) -> None:
            try:
                await client.post(url, json=CHAT_BODY, timeout=5.0)
            except httpx.HTTPError as exc:
                failures.append(exc)

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                async with serve_emulator(EmulatorConfig(latency_seconds=10.0)) as emulator:
                    for _ in range(3):
                        nursery.start_soon(one, emulator.base_url + "/v1/chat/completions")
                    while emulator.stats.provider.in_flight < 3:  # noqa: ASYNC110 (no event to await)
                        await trio.sleep(0.005)
                    start = trio.current_time()
                # Leaving the block abandons the 10 s calls instead of waiting for them.
                assert trio.current_time() - start < 1.0
        assert len(failures) == 3
        stats = emulator.stats
        assert stats.provider.in_flight == 0
        assert stats.provider.cancelled == 3
        assert stats.connections_active == 0
        with pytest.raises(httpx.ConnectError):
            await client.get(emulator.base_url + "/health")


def test_cli_serves_until_terminated() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sluicegate.testing.emulator", "--port", "0", "--capacity", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "the emulator did not announce itself within 15 s"
        line = process.stdout.readline()
        assert line.startswith("sluicegate emulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        health = httpx.get(base_url + "/health", timeout=5)
        assert health.status_code == 200
        answer = httpx.post(base_url + "/v1/chat/completions", json=CHAT_BODY, timeout=5)
        assert answer.status_code == 200
        assert json.loads(answer.text)["usage"]["prompt_tokens"] > 0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    stderr = process.stderr.read() if process.stderr else ""
    assert returncode == 0, stderr
    assert "RuntimeWarning" not in stderr
