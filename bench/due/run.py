#!/usr/bin/env python3
"""Benchmark `tsrotate rotate --due` at scale against the emulator with per-call latency.

    cargo build --release -p tsrotate-cli
    python3 bench/due/run.py [--bin target/release/tsrotate] [--credentials 500]
                             [--latency-ms 50] [--concurrency 16 4]

On demand, not a timed test (see README.md here). For each concurrency it starts a fresh
`tsrotate emulator` on 127.0.0.1:0, mints N reusable auth keys, writes three places per key
(a whole file, a dotenv field, a JSON field) and a `tsrotate.toml` naming them, moves the
emulator clock 80 days forward (every key is then inside `rotate_before` = 14 days), adds a
latency fault to every API call, clears the request log and times
`tsrotate rotate --due --yes --concurrency C --format json`.

The critical-path lower bound is

    (API calls per rotation) x latency x N / C

with calls per rotation measured from the emulator's request log (total API requests of the
run / N). Every call of one rotation depends on the previous one's answer, so they are all on
its critical path; only different credentials can overlap, C at a time. The ratio wall / bound
is the figure of merit (target: <= 1.5 at C = 16).

Python 3 standard library only; loopback only; every wait is bounded; every emulator started
is stopped.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter

MINT_BODY = {
    "capabilities": {"devices": {"create": {"reusable": True, "tags": ["tag:ci"]}}},
    "expirySeconds": 90 * 86400,
}
ADVANCE_SECONDS = 80 * 86400
KEY_IN_PATH = re.compile(r"/keys/([^/?]+)")


def http(method, url, body=None, token=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


class Emulator:
    """`tsrotate emulator` on 127.0.0.1:0, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, binary, workdir):
        self.log = open(os.path.join(workdir, "emulator.stderr"), "wb")
        self.proc = subprocess.Popen(
            [binary, "emulator", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=clean_env(),
        )
        line = self._readline(timeout=30)
        info = json.loads(line)
        self.url = info["url"].rstrip("/")
        self.api_key = info["api_key"]
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            sys.exit(f"emulator is not on loopback: {self.url}")

    def _readline(self, timeout):
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.stop()
            sys.exit("emulator printed nothing within 30 s")
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            sys.exit(f"emulator exited ({self.proc.wait()})")
        return line.decode()

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


def clean_env():
    """The caller's environment without anything that would point tsrotate elsewhere."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAILSCALE_", "TSROTATE_")) and k != "RUST_LOG"
    }


def setup(emu, root, n):
    """Mint n keys, write their places and the configuration. Returns (config, {name: (id, key)})."""
    creds = {}
    lines = ['[tailscale]\ntailnet = "-"\n']
    for i in range(n):
        name = f"c{i:04d}"
        answer = emu.api("POST", "/api/v2/tailnet/-/keys", MINT_BODY)
        key_id, key = answer["id"], answer["key"]
        creds[name] = (key_id, key)
        d = os.path.join(root, "places", name)
        os.makedirs(d)
        with open(os.path.join(d, "authkey"), "w") as f:
            f.write(key + "\n")
        with open(os.path.join(d, ".env"), "w") as f:
            f.write(f"APP=web\nTS_AUTHKEY={key}\nPORT=8080\n")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"name": name, "tailscale": {"authkey": key, "hostname": name}}, f, indent=2)
            f.write("\n")
        lines.append(
            f'[[credential]]\nname = "{name}"\nkind = "auth-key"\nrotate_before = "14d"\n\n'
            f'[[credential.sink]]\ntype = "file"\npath = "{d}/authkey"\n\n'
            f'[[credential.sink]]\ntype = "dotenv"\npath = "{d}/.env"\nfield = "TS_AUTHKEY"\n\n'
            f'[[credential.sink]]\ntype = "json"\npath = "{d}/config.json"\nfield = "tailscale.authkey"\n'
        )
    config = os.path.join(root, "tsrotate.toml")
    with open(config, "w") as f:
        f.write("\n".join(lines))
    return config, creds


def classify(requests, old_ids, new_ids):
    """Count API requests by kind: which key (old / new / other) and which call."""
    counts = Counter()
    for r in requests:
        m = KEY_IN_PATH.search(r["path"])
        if m:
            kid = m.group(1)
            who = "old key" if kid in old_ids else "new key" if kid in new_ids else "other key"
            what = f"{r['method']} /keys/{{{who}}}"
        else:
            what = f"{r['method']} {r['path']}"
        counts[(what, r["status"])] += 1
    return counts


def run_one(args, concurrency):
    root = tempfile.mkdtemp(prefix="tsrotate-bench-due-")
    emu = None
    try:
        emu = Emulator(args.bin, root)
        t0 = time.perf_counter()
        config, creds = setup(emu, root, args.credentials)
        setup_s = time.perf_counter() - t0
        emu.admin("POST", "/_emulator/clock", {"advance_seconds": ADVANCE_SECONDS})
        emu.admin("POST", "/_emulator/faults", {"path_prefix": "/api/", "latency_ms": args.latency_ms})
        state = os.path.join(root, "state")
        os.makedirs(state, mode=0o700)
        env = clean_env()
        env.update(
            TAILSCALE_BASE_URL=emu.url,
            TAILSCALE_API_KEY=emu.api_key,
            TSROTATE_STATE_DIR=state,
        )
        cmd = [args.bin, "--config", config, "rotate", "--due", "--yes",
               "--concurrency", str(concurrency), "--format", "json"]
        emu.admin("DELETE", "/_emulator/requests")
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"concurrency {concurrency}: no answer within {args.timeout} s")
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        if proc.returncode != 0:
            sys.exit(f"concurrency {concurrency}: exit {proc.returncode}\n"
                     f"{proc.stderr.decode(errors='replace')[-3000:]}")
        results = json.loads(proc.stdout)
        actions = Counter(r["action"] for r in results)
        if len(results) != args.credentials or actions != Counter(rotated=args.credentials):
            sys.exit(f"concurrency {concurrency}: expected {args.credentials} rotated, got {dict(actions)}")
        # Every place holds a new key.
        for name, (_, key) in creds.items():
            d = os.path.join(root, "places", name)
            for place in ("authkey", ".env", "config.json"):
                with open(os.path.join(d, place)) as f:
                    if key in f.read():
                        sys.exit(f"{name}/{place} still holds the old key")
        requests = emu.admin("GET", "/_emulator/requests")["requests"]
        if len(requests) >= 10_000:
            print("warning: the emulator's request log is full (10 000): calls undercounted",
                  file=sys.stderr)
        old_ids = {kid for kid, _ in creds.values()}
        new_ids = {r["outcome"]["new_key_id"] for r in results if r.get("outcome")}
        per_rotation = len(requests) / args.credentials
        bound = per_rotation * args.latency_ms / 1000 * args.credentials / concurrency
        return {
            "concurrency": concurrency,
            "wall_s": wall,
            "bound_s": bound,
            "ratio": wall / bound,
            "api_calls": len(requests),
            "calls_per_rotation": per_rotation,
            "breakdown": classify(requests, old_ids, new_ids),
            "setup_s": setup_s,
            "load": (load_before, load_after),
        }
    finally:
        if emu is not None:
            emu.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="target/release/tsrotate", help="the release binary")
    p.add_argument("--credentials", type=int, default=500)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 4])
    p.add_argument("--timeout", type=int, default=900, help="seconds per rotate --due run")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin}: no executable; build it with `cargo build --release -p tsrotate-cli`")
    if args.credentials < 1 or args.latency_ms < 1 or min(args.concurrency) < 1:
        sys.exit("--credentials, --latency-ms and --concurrency must be positive")

    print(f"{args.credentials} credentials x 3 places, {args.latency_ms} ms per API call, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    rows = []
    for c in args.concurrency:
        print(f"concurrency {c} ...", file=sys.stderr)
        rows.append(run_one(args, c))

    print("\nAPI calls per rotation (first run):")
    first = rows[0]
    for (what, status), count in sorted(first["breakdown"].items(), key=lambda kv: -kv[1]):
        print(f"  {count / args.credentials:5.2f}  {what} -> {status}")
    print(f"  {first['calls_per_rotation']:5.2f}  total ({first['api_calls']} calls)\n")
    print("| concurrency | wall s | lower bound s | ratio | calls/rotation | load 1m before/after |")
    print("|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['wall_s']:.1f} | {r['bound_s']:.1f} | {r['ratio']:.2f} "
              f"| {r['calls_per_rotation']:.2f} | {r['load'][0]:.1f} / {r['load'][1]:.1f} |")
    if args.json:
        for r in rows:
            r["breakdown"] = {f"{w} -> {s}": n for (w, s), n in r["breakdown"].items()}
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
