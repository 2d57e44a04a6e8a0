"""Serving the public surface: requests per second for `/feeds/all.atom` (answered in full, 200,
and as not modified, 304), the page `/` and a notice page, with 1,000 notices stored, beside
nginx serving a static copy of the same bytes.

`clarion web` runs as one process, then as two (`--workers 2`); nginx as one
(`worker_processes 1`). The same load generator (wrk, 1 thread, 16 connections) measures both,
interleaved (nginx before and after each), so the ratio is the figure to read. The 304 runs send
the ETag each server gave (nginx makes its own from the file's mtime and size).

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
  default_type text/html;
  server {{
    listen 127.0.0.1:{port};
    root {tmp}/static;
    index index.html;
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

        nginx_port = _port()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port))
        targets = [  # (what, path, the static file nginx serves, with a 304 run)
            ("feed", "/feeds/all.atom", "feeds/all.atom", True),
            ("page /", "/", "index.html", False),
            ("notice page", "/notices/1", "notices/1", False),
        ]
        rows = []
        for workers in (1, 2):
            clarion_port = _port()
            clarion_bin = str(Path(sys.executable).with_name("clarion"))
            web = subprocess.Popen(
                [clarion_bin, "web", "--config", str(cfg_path), "--port", str(clarion_port),
                 "--workers", str(workers)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "CLARION_CONFIG": str(cfg_path)},
            )  # fmt: skip
            procs.append(web)
            base = f"http://127.0.0.1:{clarion_port}"
            _wait(base + "/healthz", web, "clarion web")
            firsts = {path: httpx.get(base + path) for _, path, _, _ in targets}
            if workers == 1:  # nginx serves exactly what Clarion served
                for _, path, file, _ in targets:
                    (tmp / "static" / file).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / "static" / file).write_bytes(firsts[path].content)
                nginx = shutil.which("nginx") or "/usr/sbin/nginx"
                procs.append(
                    subprocess.Popen(
                        [nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                _wait(f"http://127.0.0.1:{nginx_port}/", procs[-1], "nginx")
            for what, path, _, with_304 in targets:
                c_url, n_url = base + path, f"http://127.0.0.1:{nginx_port}{path}"
                static = httpx.get(n_url)
                if workers == 1 and static.content != firsts[path].content:
                    raise RuntimeError(f"nginx answered {path} with other bytes")
                runs = [("200", {}, {})]
                if with_304:
                    c_tag, n_tag = firsts[path].headers["etag"], static.headers["etag"]
                    assert httpx.get(c_url, headers={"If-None-Match": c_tag}).status_code == 304
                    runs.append(("304", {"If-None-Match": c_tag}, {"If-None-Match": n_tag}))
                for code, c_hdr, n_hdr in runs:
                    n1 = wrk(n_url, n_hdr, seconds)
                    c = wrk(c_url, c_hdr, seconds)
                    n2 = wrk(n_url, n_hdr, seconds)
                    baseline = (n1 + n2) / 2  # nginx before and after: drift shows in the spread
                    label = f"{what} {code}, {workers} process" + ("es" if workers > 1 else "")
                    rows.append((label, c, baseline, abs(n1 - n2) / baseline))
            web.terminate()
            web.wait(30)
            procs.remove(web)
        feed = firsts["/feeds/all.atom"].content
        print(
            f"\nServing the public surface: {notices:,} notices stored (the feed holds 50, "
            f"{len(feed):,} bytes), wrk 1 thread 16 connections {seconds}s each, nginx 1 process\n"
        )
        print(f"{'':34}{'clarion req/s':>14}{'nginx req/s':>13}{'ratio':>8}{'nginx drift':>13}")
        for label, c, n, drift in rows:
            print(f"{label:34}{c:14,.0f}{n:13,.0f}{c / n:8.3f}{drift:13.1%}")
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
