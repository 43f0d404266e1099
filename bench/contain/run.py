#!/usr/bin/env python3
"""Benchmark `tsrotate contain` on a large tailnet against the emulator.

    cargo build --release -p tsrotate-cli
    python3 bench/contain/run.py [--bin target/release/tsrotate] [--devices 10000]
                                 [--events 100000] [--runs 5]

On demand, not a timed test (see README.md here). It starts `tsrotate emulator` on
127.0.0.1:0, mints one reusable tagged auth key, moves the clock 10 days forward, joins
`--devices` devices with it (all but 3 spread over the 10 days, 3 "attackers" an hour ago, one
advertising a route), adds unrelated audit events so that the window holds `--events` events in
all (each join writes 4), then times, `--runs` times each, alternating:

- the two list calls `contain` needs, made directly by `curl` (one connection, bodies
  discarded, so no parsing: the strictest baseline): `GET /tailnet/-/devices?fields=all` and
  `GET /tailnet/-/logging/configuration` over the window with `event=NODE.CREATE`;
- `tsrotate --format json contain KEY_ID --since 1d` (process start, key lookup, both lists,
  ranking, JSON output).

The figure of merit is median(contain) / median(lists); the target is under 2. It checks that
the 3 attackers rank first (exact: the audit actor is the key) and stops the emulator at the end.

Python 3 standard library and `curl`; loopback only; every wait is bounded.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

DAY = 86400


def http(method, url, body=None, token=None, timeout=300):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None or (method == "POST" and "/_emulator/" in url):
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def clean_env():
    """The caller's environment without anything that would point tsrotate elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAILSCALE_", "TSROTATE_")) and k != "RUST_LOG"
    }


class Emulator:
    """`tsrotate emulator` on 127.0.0.1:0, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, binary, workdir):
        import selectors

        self.log = open(os.path.join(workdir, "emulator.stderr"), "wb")
        self.proc = subprocess.Popen(
            [binary, "emulator", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=clean_env(),
        )
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(30):
            self.stop()
            sys.exit("emulator printed nothing within 30 s")
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            sys.exit(f"emulator exited ({self.proc.wait()})")
        info = json.loads(line)
        self.url = info["url"].rstrip("/")
        self.api_key = info["api_key"]
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            sys.exit(f"emulator is not on loopback: {self.url}")

    def admin(self, method, path, body=None):
        return http(method, self.url + path, body)

    def api(self, method, path, body=None):
        return http(method, self.url + path, body, token=self.api_key)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def populate(emu, devices, events):
    key = emu.api(
        "POST",
        "/api/v2/tailnet/-/keys",
        {
            "capabilities": {
                "devices": {"create": {"reusable": True, "preauthorized": True, "tags": ["tag:fleet"]}}
            },
            "expirySeconds": 90 * DAY,
        },
    )
    key_id = key["id"]
    emu.admin("POST", "/_emulator/clock", {"advance_seconds": 10 * DAY})
    fleet = devices - 3
    batch = []

    def flush():
        if batch:
            emu.admin("POST", "/_emulator/devices/batch", {"devices": list(batch)})
            batch.clear()

    for i in range(fleet):
        # Spread over days 9..2 before now: all inside the key's life, before the leak.
        offset = -9 * DAY + (7 * DAY * i) // max(fleet, 1)
        batch.append(
            {"auth_key_id": key_id, "hostname": f"web-{i:05d}", "created_offset_seconds": offset,
             "audit_actor": "owner"}
        )
        if len(batch) == 1000:
            flush()
    for i, routes in enumerate([[], [], ["10.9.0.0/16"]]):
        batch.append(
            {"auth_key_id": key_id, "hostname": f"evil-{i}", "created_offset_seconds": -3600,
             "routes": routes, "audit_actor": "key"}
        )
    flush()
    noise = max(events - 4 * devices, 0)
    if noise:
        emu.admin("POST", "/_emulator/audit-noise", {"count": noise, "start_offset_seconds": -9 * DAY})
    return key_id


def window(emu, key_id):
    key = emu.api("GET", f"/api/v2/tailnet/-/keys/{key_id}")
    now = emu.admin("POST", "/_emulator/clock", {"advance_seconds": 0})["now"]
    return key["created"], now


def time_lists(emu, start, end):
    """Both calls in one `curl` (one connection, bodies discarded: no parsing at all, the
    strictest baseline), then once more through Python to count what they return."""
    query = urllib.parse.urlencode([("start", start), ("end", end), ("event", "NODE.CREATE")])
    urls = [
        f"{emu.url}/api/v2/tailnet/-/devices?fields=all",
        f"{emu.url}/api/v2/tailnet/-/logging/configuration?{query}",
    ]
    t0 = time.perf_counter()
    subprocess.run(
        ["curl", "-sf", "-H", f"Authorization: Bearer {emu.api_key}",
         "-o", "/dev/null", urls[0], "-o", "/dev/null", urls[1]],
        check=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    devices = http("GET", urls[0], token=emu.api_key)["devices"]
    logs = http("GET", urls[1], token=emu.api_key)["logs"]
    return elapsed, len(devices), len(logs)


def time_contain(binary, emu, key_id, state_dir):
    env = clean_env()
    env.update(
        {
            "TAILSCALE_BASE_URL": emu.url,
            "TAILSCALE_API_KEY": emu.api_key,
            "TSROTATE_STATE_DIR": state_dir,
        }
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [binary, "--format", "json", "contain", key_id, "--since", "1d"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 1:
        sys.exit(f"contain exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    report = json.loads(proc.stdout)
    top = [(c["hostname"], c["confidence"]) for c in report["candidates"][:3]]
    if sorted(h for h, _ in top) != ["evil-0", "evil-1", "evil-2"] or any(c != "exact" for _, c in top):
        sys.exit(f"the attackers do not rank first: {top}")
    return elapsed, len(report["candidates"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default="target/release/tsrotate")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory(prefix="tsrotate-contain-bench-") as work:
        state_dir = os.path.join(work, "state")
        os.mkdir(state_dir, 0o700)
        emu = Emulator(binary, work)
        try:
            t0 = time.perf_counter()
            key_id = populate(emu, args.devices, args.events)
            print(f"setup: {args.devices} devices, {args.events} audit events in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            start, end = window(emu, key_id)
            lists, contains = [], []
            for _ in range(args.runs):
                seconds, n_devices, n_creates = time_lists(emu, start, end)
                lists.append(seconds)
                seconds, n_candidates = time_contain(binary, emu, key_id, state_dir)
                contains.append(seconds)
        finally:
            emu.stop()
    lists_median = statistics.median(lists)
    contain_median = statistics.median(contains)
    result = {
        "devices": n_devices,
        "node_create_events": n_creates,
        "candidates": n_candidates,
        "lists_s": [round(s, 3) for s in lists],
        "contain_s": [round(s, 3) for s in contains],
        "lists_median_s": round(lists_median, 3),
        "contain_median_s": round(contain_median, 3),
        "ratio": round(contain_median / lists_median, 2),
        "load_1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if result["ratio"] >= 2:
        sys.exit(f"contain took {result['ratio']}x the two list calls (target: under 2x)")


if __name__ == "__main__":
    main()
