"""The long-running commands really serve: `clarion demo` and `clarion web`, as processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import desk_login

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen[str], seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)  # polling for the server to come up, bounded by the deadline
    raise AssertionError(f"{url} did not answer within {seconds}s")


def test_demo_serves_page_and_feed(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CLARION_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clarion", "demo", "--db", str(tmp_path / "demo.db")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = ""
    try:
        page = _wait_for(f"http://127.0.0.1:{port}/", proc)
        assert page.status_code == 200
        assert "Flash Flood Watch extended until 6:00PM MDT" in page.text
        assert "Introducing Learn WordPress" in page.text
        # The demo publisher's own fediverse account, named on the page and discoverable.
        assert f"@alerts@127.0.0.1:{port}" in page.text
        wf = httpx.get(
            f"http://127.0.0.1:{port}/.well-known/webfinger",
            params={"resource": f"acct:alerts@127.0.0.1:{port}"},
        )
        assert wf.json()["links"][0]["href"] == f"http://127.0.0.1:{port}/ap/alerts"
        feed = httpx.get(f"http://127.0.0.1:{port}/feeds/all.atom")
        assert feed.status_code == 200 and feed.text.count("<entry>") == 5
        # The desk works out of the box with the two accounts the demo prints.
        assert proc.stdout is not None
        while "password for both:" not in printed and (line := proc.stdout.readline()):
            printed += line
        password = printed.rsplit("password for both: ", 1)[1].split(")")[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as desk:
            r = desk_login(desk, "demo-editor", password)
            assert r.status_code == 303 and r.headers["location"] == "/desk"
            compose = desk.get("/desk/compose?template=Test%20message")
            csrf = re.search(r'name="csrf" value="([^"]+)"', compose.text)
            assert csrf and 'value="test" checked' in compose.text
            form = {"csrf": csrf.group(1), "action": "alert", "intent": "submit"}
            form |= {"headline": "Demo desk test", "status": "test", "severity": "minor"}
            sent = desk.post("/desk/compose", data=form, follow_redirects=True)
            assert sent.status_code == 200 and "<strong>sent</strong>" in sent.text
        assert "Demo desk test" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in printed + out  # the address, for the newcomer


def test_web_command_serves_an_existing_database(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CLARION_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clarion", "web", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        r = _wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        assert r.json() == {"status": "ok"}
        assert "No notices yet." in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _clarion(command: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """`clarion COMMAND` as a process on a database of its own in `tmp_path`."""
    return subprocess.Popen(
        [sys.executable, "-m", "clarion", command],
        env={**os.environ, "CLARION_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = _clarion("worker", tmp_path)
    assert proc.stdout is not None
    for line in proc.stdout:  # bounded by the test timeout
        if "worker" in line and "started" in line:
            break
    proc.terminate()
    proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_run_stops_on_sigterm_while_a_live_stream_is_open(tmp_path: Path) -> None:
    """A reader holding /api/v1/stream open (it never ends by itself) must not keep `clarion
    run` from stopping when systemd or Docker sends SIGTERM."""
    import threading

    port = _free_port()
    proc = _clarion("run", tmp_path, CLARION_PORT=str(port))
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        opened = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream(
                    "GET", f"http://127.0.0.1:{port}/api/v1/stream", timeout=None
                ) as r:
                    opened.set()
                    for _ in r.iter_bytes():
                        pass
            except httpx.HTTPError:
                pass  # the server went away: what this test wants

        threading.Thread(target=listen, daemon=True).start()
        assert opened.wait(30)
        proc.terminate()
        # Bounded only so that a hang fails the test instead of stalling the suite.
        out, _ = proc.communicate(timeout=60)
        # uvicorn re-raises the signal once it has shut down: "killed by SIGTERM" is the
        # clean end systemd expects of a service it stopped.
        assert proc.returncode in (0, -15), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_web_with_several_processes_serves_each_change_from_every_one(tmp_path: Path) -> None:
    """`clarion web --workers 2`: two processes share the port, each with its own snapshot of
    the public pages; a notice ingested by a third process (`clarion replay`) is on every answer
    after it, whichever process answers."""
    from tests.conftest import FIXTURES

    port = _free_port()
    env = {
        **os.environ,
        "CLARION_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
        "CLARION_DROP_EXPIRED": "false",
    }
    cap = FIXTURES / "cap" / "weather.cap"
    subprocess.run(
        [sys.executable, "-m", "clarion", "replay", "--include-expired", str(cap)],
        env=env, cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "clarion", "web", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        url = f"http://127.0.0.1:{port}/feeds/all.json"
        with httpx.Client() as http:  # a fresh connection each time: either process may answer
            before = [
                len(http.get(url, headers={"Connection": "close"}).json()["items"])
                for _ in range(20)
            ]
            assert set(before) == {1}
            other = FIXTURES / "cap" / "canada.cap"
            subprocess.run(
                [sys.executable, "-m", "clarion", "replay", "--include-expired", str(other)],
                env=env, cwd=tmp_path, check=True, capture_output=True,
            )  # fmt: skip
            after = [
                len(http.get(url, headers={"Connection": "close"}).json()["items"])
                for _ in range(20)
            ]
            assert set(after) == {2}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
