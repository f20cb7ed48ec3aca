#!/usr/bin/env python3
"""The edge's bounds under attack (R16), measured from outside: issue 22's figures.

Run with `just bench-edge` or `python3 tests/bench/edge.py [--binary PATH]`. Builds the
release binary (unless `--binary`), starts it on SQLite with the default bounds (header and
body timeouts 10 s, idle connection 60 s), creates a user and logs it in as an API client,
then at once:

  heads     HEADS connections send half a request head and nothing more
  streams   CONNECTIONS h2c connections (prior knowledge) each open STREAMS logins whose
            bodies send 16,383 of their 16,384 bytes and stall
  probes    every 200 ms, on a fresh connection each: GET /health/live, and GET /v1/session
            with the real credential (recognition)

and reports: the server's resident memory at rest and its peak (VmHWM), the probes' latency
(max and p99) and statuses, and when the server closed each half head and answered or reset
each stalled stream, counted from the client's connect. The done-when of issue 22: probes
within 1 s throughout, the stalled connections closed within the timeout plus 1 s, peak RSS
under 256 MiB. The h2 client is the `h2` package (pinned, in a venv under target/).

Figures depend on the machine: compare runs made the same day only.
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(ROOT, "target", "bench-venv")
H2 = "h2==4.4.1"
PASSWORD = "correct horse battery staple"


def ensure_h2():
    """Re-runs this script in a venv that has the pinned h2 client."""
    try:
        import h2  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        print(f"creating {VENV} with {H2} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", H2], check=True)
    os.execv(python, [python, *sys.argv])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_of(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def mib(field):
    return int(field.split()[0]) / 1024


class Server:
    def __init__(self, binary, workdir):
        self.port = free_port()
        self.env = dict(
            os.environ,
            WEBSESSIONS_DATABASE_URL=f"sqlite://{workdir}/edge.db?mode=rwc",
            WEBSESSIONS_LISTEN=f"127.0.0.1:{self.port}",
            WEBSESSIONS_COOKIE_NAME="websession",
            WEBSESSIONS_COOKIE_SECURE="false",
            RUST_LOG="warn",
        )
        self.log = open(os.path.join(workdir, "server.log"), "w+")
        subprocess.run([binary, "user", "create", "edge"], input=PASSWORD + "\n", text=True,
                       env=self.env, check=True, capture_output=True)
        self.process = subprocess.Popen([binary, "serve"], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        sys.exit("the server did not start")

    def login(self):
        body = json.dumps({"username": "edge", "password": PASSWORD, "client": "api"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/session/login", data=body,
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return json.load(response)["credential"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.seek(0)
        return self.log.read()


def probe(port, credential, seconds, results):
    """A fresh connection every 200 ms for each of liveness and recognition."""
    def one(kind, path):
        request = (f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credential}\r\n"
                   "Connection: close\r\n\r\n").encode()
        started = time.monotonic()
        status = "error"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
                s.settimeout(15)
                s.sendall(request)
                answer = s.recv(64)
                status = answer[9:12].decode() if answer else "closed"
        except OSError as error:
            status = type(error).__name__
        results.append((kind, time.monotonic() - started, status))

    threads = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for kind, path in (("live", "/health/live"), ("recognition", "/v1/session")):
            thread = threading.Thread(target=one, args=(kind, path))
            thread.start()
            threads.append(thread)
        time.sleep(0.2)
    for thread in threads:
        thread.join()


async def half_head(port, closed):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"GET /v1/session HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    answered = b""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(4096), 120)
            if not data:
                break
            answered += data
    except (asyncio.TimeoutError, OSError):
        pass
    closed.append((time.monotonic() - started, answered[:12]))
    writer.close()


async def stalled_streams(port, count, outcomes):
    import h2.config
    import h2.connection
    import h2.events

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    settled = False
    while not settled:
        data = await reader.read(65535)
        if not data:
            return
        for event in conn.receive_data(data):
            settled |= isinstance(event, h2.events.RemoteSettingsChanged)
        writer.write(conn.data_to_send())
    pending = {}
    for _ in range(count):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":path", "/v1/session/login"),
                                   (":scheme", "http"), (":authority", "x"),
                                   ("content-type", "application/json"),
                                   ("content-length", "16384")])
        pending[stream] = b" " * 16383
    seen = {}

    def pump():
        for stream in list(pending):
            piece = pending[stream]
            n = min(len(piece), conn.local_flow_control_window(stream),
                    conn.max_outbound_frame_size)
            if n > 0:
                conn.send_data(stream, piece[:n])
                pending[stream] = piece[n:]
            if not pending[stream]:
                del pending[stream]

    pump()
    writer.write(conn.data_to_send())
    try:
        while len(seen) < count:
            data = await asyncio.wait_for(reader.read(65535), 120)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(b":status", b"?").decode()
                    seen.setdefault(event.stream_id, (time.monotonic() - started, status))
                elif isinstance(event, h2.events.StreamReset):
                    seen.setdefault(event.stream_id, (time.monotonic() - started, "reset"))
            pump()
            writer.write(conn.data_to_send())
            await writer.drain()
    except (asyncio.TimeoutError, OSError):
        pass
    outcomes.extend(seen.values())
    outcomes.extend([(None, "unanswered")] * (count - len(seen)))
    writer.close()


def spread(values):
    values = sorted(values)
    if not values:
        return "none"
    return f"{values[0]:.2f} to {values[-1]:.2f} s (median {statistics.median(values):.2f})"


def latency(results, kind):
    values = sorted(seconds for k, seconds, _ in results if k == kind)
    statuses = {}
    for k, _, status in results:
        if k == kind:
            statuses[status] = statuses.get(status, 0) + 1
    p99 = values[max(0, int(len(values) * 0.99) - 1)]
    return f"max {values[-1] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, statuses {statuses}"


def main():
    ensure_h2()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="a release binary to attack (default: build this tree's)")
    parser.add_argument("--heads", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--streams", type=int, default=100)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = args.binary
    if binary is None:
        print("building the release binary ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "websessions-api"],
                       cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "websessions")
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(binary, workdir)
        credential = server.login()
        time.sleep(1)
        rest = mib(status_of(server.process.pid)["VmRSS"])
        probes = []
        prober = threading.Thread(target=probe, args=(server.port, credential, 20, probes))
        prober.start()
        closed, outcomes = [], []

        async def attack():
            tasks = [half_head(server.port, closed) for _ in range(args.heads)]
            tasks += [stalled_streams(server.port, args.streams, outcomes)
                      for _ in range(args.connections)]
            await asyncio.gather(*tasks)

        asyncio.run(attack())
        prober.join()
        status = status_of(server.process.pid)
        logs = server.stop()
    answers = {}
    for _, outcome in outcomes:
        answers[outcome] = answers.get(outcome, 0) + 1
    answered_heads = sum(1 for _, answer in closed if answer)
    print(f"## {args.heads} half heads + {args.connections} h2c x {args.streams} stalled logins\n")
    print(f"- RSS at rest {rest:.0f} MiB; peak (VmHWM) {mib(status['VmHWM']):.0f} MiB; "
          f"after {mib(status['VmRSS']):.0f} MiB")
    print(f"- /health/live: {latency(probes, 'live')}")
    print(f"- recognition: {latency(probes, 'recognition')}")
    print(f"- half heads closed after {spread([s for s, _ in closed])}; "
          f"{answered_heads} got an answer first")
    print(f"- stalled streams answered after {spread([s for s, _ in outcomes if s is not None])}: "
          f"{answers}")
    print(f"- server log lines at WARN or above: {len(logs.splitlines())}; "
          f"panics: {logs.count('panicked')}")


if __name__ == "__main__":
    main()
