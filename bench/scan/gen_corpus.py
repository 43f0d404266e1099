#!/usr/bin/env python3
"""Build the scan benchmark corpus: a realistic mix of at least 1 GiB with a few planted keys.

    python3 bench/scan/gen_corpus.py OUT_DIR [--size-mib 1100]

Mix (by bytes): real source trees (the Rust sources in the local cargo registry, about
450 MiB), minified JavaScript bundles (built from the JavaScript of globally installed npm
packages, newlines removed), and application logs (synthetic, with timestamps, request lines,
IDs and stack traces). 40 random fake keys are planted across all three, a few of them in
base64 in a Kubernetes Secret manifest. The planted key IDs go to OUT_DIR/planted.txt.
Deterministic: the same inputs give the same corpus.
"""

import argparse
import base64
import glob
import os
import random
import shutil
import string

ALNUM = string.ascii_letters + string.digits


def rand_key(rng, kind="auth"):
    kid = "k" + "".join(rng.choice(ALNUM) for _ in range(7)) + "CNTRL"
    secret = "".join(rng.choice(ALNUM) for _ in range(32))
    return f"tskey-{kind}-{kid}-{secret}", kid


def copy_sources(out, budget):
    roots = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/")))
    copied = 0
    for root in roots:
        for crate in sorted(os.listdir(root)):
            if copied >= budget:
                return copied
            src = os.path.join(root, crate)
            dst = os.path.join(out, "src", crate)
            if os.path.isdir(src) and not os.path.exists(dst):
                shutil.copytree(src, dst, symlinks=True)
                for dirpath, _, files in os.walk(dst):
                    for f in files:
                        p = os.path.join(dirpath, f)
                        if not os.path.islink(p):
                            copied += os.path.getsize(p)
    return copied


def js_sources():
    pieces = []
    for base in ["/usr/lib/node_modules", "/usr/local/lib/node_modules"]:
        for p in glob.glob(base + "/**/*.js", recursive=True):
            try:
                with open(p, "rb") as fh:
                    pieces.append(fh.read())
            except OSError:
                pass
    return pieces or [b"function f(a,b){return a+b}var x=f(1,2);"]


def minify(blob):
    return b";".join(line.strip() for line in blob.splitlines() if line.strip())


def write_js(out, budget, rng, keys):
    os.makedirs(os.path.join(out, "js"), exist_ok=True)
    pieces = [minify(p) for p in js_sources()]
    written, n = 0, 0
    while written < budget:
        size = min(8 << 20, budget - written)
        buf = bytearray()
        while len(buf) < size:
            buf += rng.choice(pieces)
        if keys:
            key = keys.pop()
            at = rng.randrange(len(buf))
            buf[at:at] = f';var k="{key}";'.encode()
        with open(os.path.join(out, "js", f"bundle-{n:03}.min.js"), "wb") as fh:
            fh.write(buf[:size])
        written += size
        n += 1
    return written


LOG_TEMPLATES = [
    '{ts} INFO  http request method=GET path=/api/v1/items/{n} status=200 duration_ms={ms} request_id={hex}',
    '{ts} WARN  db slow query table=orders rows={n} duration_ms={ms} trace={hex}',
    '{ts} ERROR worker job failed id={hex} attempt={a}: connection reset by peer',
    '{ts} DEBUG cache miss key=user:{n}:profile shard={a} node=10.0.{a}.{n2}',
    '{ts} INFO  auth user={n} logged in from 192.168.{a}.{n2} ua="Mozilla/5.0 (X11; Linux x86_64)"',
    '    at com.example.service.Handler.process(Handler.java:{n})',
]


def write_logs(out, budget, rng, keys):
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    written, n = 0, 0
    while written < budget:
        size = min(64 << 20, budget - written)
        lines = []
        total = 0
        while total < size:
            t = rng.choice(LOG_TEMPLATES)
            line = t.format(
                ts=f"2026-11-{rng.randrange(1, 28):02}T{rng.randrange(24):02}:{rng.randrange(60):02}:{rng.randrange(60):02}.{rng.randrange(1000):03}Z",
                n=rng.randrange(100000), n2=rng.randrange(255), ms=rng.randrange(2000),
                a=rng.randrange(8), hex="%016x" % rng.getrandbits(64),
            )
            lines.append(line)
            total += len(line) + 1
        for _ in range(2):
            if keys:
                lines.insert(rng.randrange(len(lines)), f"{lines[0][:24]} INFO  tailscale up --authkey={keys.pop()}")
        with open(os.path.join(out, "logs", f"app-{n:02}.log"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        written += total
        n += 1
    return written


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size-mib", type=int, default=1100)
    args = ap.parse_args()
    rng = random.Random(20261128)
    out = args.out
    os.makedirs(out, exist_ok=True)
    total = args.size_mib << 20
    planted = []
    plain = []
    for i in range(40):
        kind = ["auth", "api", "client", "auth"][i % 4]
        key, kid = rand_key(rng, kind)
        planted.append(kid)
        plain.append(key)
    src = copy_sources(out, int(total * 0.42))
    # Keys in source: a config file and a test fixture per planted key, 12 of them.
    for i in range(12):
        d = os.path.join(out, "src", f"planted-{i:02}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.env"), "w") as fh:
            fh.write(f"# service config\nTS_AUTHKEY={plain.pop()}\n")
    # Base64 in Kubernetes manifests, 4 of them.
    os.makedirs(os.path.join(out, "k8s"), exist_ok=True)
    for i in range(4):
        enc = base64.b64encode(plain.pop().encode()).decode()
        with open(os.path.join(out, "k8s", f"secret-{i}.yaml"), "w") as fh:
            fh.write(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: ts-{i}\ndata:\n  TS_AUTHKEY: {enc}\n")
    rest = total - src
    js = write_js(out, int(rest * 0.4), rng, plain[:12])
    del plain[:12]
    logs = write_logs(out, rest - js, rng, plain)
    with open(os.path.join(out, "planted.txt"), "w") as fh:
        fh.write("\n".join(planted) + "\n")
    print(f"corpus {out}: source {src >> 20} MiB, js {js >> 20} MiB, logs {logs >> 20} MiB, {len(planted)} keys planted")


if __name__ == "__main__":
    main()
