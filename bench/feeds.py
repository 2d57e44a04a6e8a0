"""Feed serving: requests per second for `/feeds/all.atom` with 1,000 notices stored, answered in
full (200) and as not modified (304), beside nginx serving a static copy of the same bytes.

Both servers run as one process on the same machine (`clarion web`: one uvicorn worker;
nginx: `worker_processes 1`), and the same load generator (wrk, 1 thread, 16 connections)
measures both, interleaved, so the ratio is the figure to read. The 304 runs send the ETag each
server gave (nginx makes its own from the file's mtime and size).

Needs Debian's `wrk` and `nginx` (`apt-get install wrk nginx`); says so and skips otherwise.

    .venv/bin/python bench/run.py --only feeds
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.channels import build_channels  # noqa: E402
from clarion.config import parse_config  # noqa: E402
from clarion.pipeline import ingest  # noqa: E402
from clarion.sources.cap import parse_cap  # noqa: E402
from clarion.store import open_store  # noqa: E402

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  types {{ application/atom+xml atom; }}
  server {{
    listen 127.0.0.1:{port};
    root {tmp}/static;
    etag on;
  }}
}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


def wrk(url: str, headers: dict[str, str], seconds: int) -> float:
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m is None or non2xx:
        raise RuntimeError(f"wrk could not measure {url}:\n{out}")
    return float(m.group(1))


def main(notices: int = 1000, seconds: int = 5) -> None:
    missing = [
        t
        for t in ("wrk", "nginx")
        if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()
    ]
    if missing:
        print(
            f"\nFeed serving: skipped, {' and '.join(missing)} not installed "
            "(apt-get install wrk nginx)"
        )
        return
    from run import documents  # the ingest benchmark's real, distinct CAP alerts

    tmp = Path(tempfile.mkdtemp(prefix="clarion-feeds-"))
    tmp.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the copy
    procs: list[subprocess.Popen[bytes]] = []
    try:
        db = f"sqlite:///{tmp}/feeds.db"
        cfg_path = tmp / "clarion.toml"
        cfg_path.write_text(
            f'[clarion]\ndatabase_url = "{db}"\ndrop_expired = false\n'
            '[channels.preview]\nkind = "preview"\n[[routes]]\nchannels = ["preview"]\n'
        )
        cfg = parse_config(cfg_path.read_text(), environ={})
        store = open_store(db)
        channels = build_channels(cfg)
        docs = documents(notices)
        for i in range(0, len(docs), 100):
            batch = [n for d in docs[i : i + 100] for n in parse_cap(d)]
            ingest(store, cfg, channels, batch, source="bench", include_expired=True)
        store.close()

        clarion_port, nginx_port = _port(), _port()
        clarion_bin = str(Path(sys.executable).with_name("clarion"))
        procs.append(
            subprocess.Popen(
                [clarion_bin, "web", "--config", str(cfg_path), "--port", str(clarion_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "CLARION_CONFIG": str(cfg_path)},
            )
        )
        clarion_url = f"http://127.0.0.1:{clarion_port}/feeds/all.atom"
        _wait(clarion_url, procs[-1], "clarion web")
        first = httpx.get(clarion_url)
        (tmp / "static/feeds").mkdir(parents=True)
        (tmp / "static/feeds/all.atom").write_bytes(first.content)
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(
            subprocess.Popen(
                [nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}/feeds/all.atom"
        _wait(nginx_url, procs[-1], "nginx")
        static = httpx.get(nginx_url)
        if static.content != first.content:
            raise RuntimeError(f"nginx answered {static.status_code}, not the same bytes")
        etags = {"clarion": first.headers["etag"], "nginx": static.headers["etag"]}
        assert (
            httpx.get(clarion_url, headers={"If-None-Match": etags["clarion"]}).status_code == 304
        )
        assert httpx.get(nginx_url, headers={"If-None-Match": etags["nginx"]}).status_code == 304

        rows = []
        for label, header in (("200, full feed", False), ("304, not modified", True)):
            c_hdr = {"If-None-Match": etags["clarion"]} if header else {}
            n_hdr = {"If-None-Match": etags["nginx"]} if header else {}
            n1 = wrk(nginx_url, n_hdr, seconds)
            c = wrk(clarion_url, c_hdr, seconds)
            n2 = wrk(nginx_url, n_hdr, seconds)
            baseline = (n1 + n2) / 2  # nginx measured before and after: drift shows in the spread
            rows.append((label, c, baseline, abs(n1 - n2) / baseline))
        print(
            f"\nFeed serving: /feeds/all.atom, {notices:,} notices stored (feed of 50, "
            f"{len(first.content):,} bytes), wrk 1 thread 16 connections {seconds}s each\n"
        )
        print(f"{'':22}{'clarion req/s':>14}{'nginx req/s':>13}{'ratio':>8}{'nginx drift':>13}")
        for label, c, n, drift in rows:
            print(f"{label:22}{c:14,.0f}{n:13,.0f}{c / n:8.3f}{drift:13.1%}")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
