"""Bittensor's own axon/dendrite doing Agora's benchmark round trip: 1 KiB in, blake3 of it out.

Used by `overlay/benches/query_roundtrip.rs` (set AGORA_BENCH_BITTENSOR_PYTHON to a python with
bittensor 10.x, e.g. ${AGORA_CACHE:-$HOME/.cache/agora}/bench-venv/bin/python), or alone:

    python bittensor_roundtrip.py --rounds 3

A local `bt.Axon` runs in a child process (its own interpreter, so the dendrite's event loop does
not share a GIL with it) and serves `HashSynapse`: 1024 bytes (base64) in, blake3 hex digest out.
`input_b64` is a required hash field, so the dendrite's sr25519 signature covers the payload, and
the axon checks signature and nonce with its default verifier. No chain is contacted: nothing here
needs a metagraph, and Bittensor's external-IP lookup (which asks web services on the internet) is
replaced by 127.0.0.1 in both processes.

Throughput runs CONCURRENCY dendrites side by side, each sequential: the axon requires strictly
increasing nonces per (hotkey, dendrite uuid), so requests of one dendrite in flight at once would
be refused as replays when they overtake each other.

`--stdio`: prints {"bittensor": VERSION} once ready, then answers each `round SAMPLES QUERIES
CONCURRENCY` line with one JSON line {"p50_us", "p99_us", "qps", "errors"}; `quit` ends.
"""

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

import bittensor as bt
import bittensor.utils.networking as networking

try:
    from blake3 import blake3 as _blake3

    def digest(data: bytes) -> str:
        return _blake3(data).hexdigest()

    HASH = "blake3"
except ImportError:  # pragma: no cover - the bench venv installs blake3
    import hashlib

    def digest(data: bytes) -> str:
        return hashlib.blake2b(data, digest_size=32).hexdigest()

    HASH = "blake2b"

# Never ask internet services for our address: this is a loopback benchmark.
networking.get_external_ip = lambda: "127.0.0.1"

PAYLOAD = 1024


class HashSynapse(bt.Synapse):
    """1 KiB in (base64), its hash out."""

    input_b64: str = ""
    output_hex: str = ""
    required_hash_fields = ("input_b64",)


def payload(i: int) -> bytes:
    data = bytearray((j * 31 + i) & 0xFF for j in range(PAYLOAD))
    data[:8] = (i & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    return bytes(data)


def make_wallet(root: str, name: str) -> "bt.Wallet":
    wallet = bt.Wallet(name=name, hotkey="default", path=root)
    wallet.create_if_non_existent(
        coldkey_use_password=False, hotkey_use_password=False, suppress=True
    )
    return wallet


def run_axon(root: str) -> None:
    """Child process: serve the synapse on an ephemeral port until stdin closes."""
    wallet = make_wallet(root, "axon")

    async def forward(synapse: HashSynapse) -> HashSynapse:
        synapse.output_hex = digest(base64.b64decode(synapse.input_b64))
        return synapse

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    axon = bt.Axon(wallet=wallet, port=port, ip="127.0.0.1", external_ip="127.0.0.1")
    axon.attach(forward_fn=forward)
    axon.start()
    print(
        json.dumps(
            {
                "port": port,
                "hotkey": wallet.hotkey.ss58_address,
                "coldkey": wallet.coldkeypub.ss58_address,
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the parent closes our stdin
    axon.stop()


class Bench:
    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="agora-bt-bench-")
        env = dict(os.environ)
        self.axon_proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--axon", self.tmp.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        info = json.loads(self.axon_proc.stdout.readline())
        self.axon = bt.AxonInfo(
            version=bt.__version_as_int__ if hasattr(bt, "__version_as_int__") else 0,
            ip="127.0.0.1",
            port=info["port"],
            ip_type=4,
            hotkey=info["hotkey"],
            coldkey=info["coldkey"],
        )
        self.wallet = make_wallet(self.tmp.name, "client")
        self.dendrites: list = []
        self.counter = 0

    def dendrite(self, i: int) -> "bt.Dendrite":
        while len(self.dendrites) <= i:
            self.dendrites.append(bt.Dendrite(wallet=self.wallet))
        return self.dendrites[i]

    async def ready(self) -> None:
        """Waits (up to a minute) until the axon's server answers: `start()` returns before it does."""
        deadline = time.monotonic() + 60
        while not await self.one(self.dendrite(0), quiet=True):
            if time.monotonic() > deadline:
                raise RuntimeError("the axon never answered")
            await asyncio.sleep(0.1)

    async def one(self, dendrite, quiet: bool = False) -> bool:
        self.counter += 1
        data = payload(self.counter)
        synapse = HashSynapse(input_b64=base64.b64encode(data).decode())
        response = await dendrite.call(
            target_axon=self.axon, synapse=synapse, timeout=30.0, deserialize=False
        )
        ok = response.dendrite.status_code == 200 and response.output_hex == digest(data)
        if not ok and not quiet:
            print(
                f"bittensor: failed query: {response.dendrite.status_code} "
                f"{response.dendrite.status_message}",
                file=sys.stderr,
            )
        return ok

    async def round(self, samples: int, queries: int, concurrency: int) -> dict:
        errors = 0
        lat = []
        first = self.dendrite(0)
        for _ in range(samples):
            t = time.perf_counter()
            errors += not await self.one(first)
            lat.append((time.perf_counter() - t) * 1e6)
        lat.sort()

        next_i = 0

        async def worker(d):
            nonlocal next_i, errors
            while next_i < queries:
                next_i += 1
                errors += not await self.one(d)

        dendrites = [self.dendrite(i) for i in range(concurrency)]
        start = time.perf_counter()
        await asyncio.gather(*(worker(d) for d in dendrites))
        qps = queries / (time.perf_counter() - start)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round((len(lat) - 1) * p))]

        return {"p50_us": pct(0.5), "p99_us": pct(0.99), "qps": qps, "errors": errors}

    async def close(self) -> None:
        for d in self.dendrites:
            await d.aclose_session()
        self.axon_proc.stdin.close()
        try:
            self.axon_proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.axon_proc.kill()
        self.tmp.cleanup()


async def stdio() -> None:
    bench = Bench()
    await bench.ready()
    print(json.dumps({"bittensor": bt.__version__, "hash": HASH}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            parts = line.split()
            if not parts or parts[0] == "quit":
                break
            if parts[0] == "round":
                samples, queries, concurrency = map(int, parts[1:4])
                result = await bench.round(samples, queries, concurrency)
                print(json.dumps(result), flush=True)
    finally:
        await bench.close()


async def standalone(rounds: int, samples: int, queries: int, concurrency: int) -> None:
    bench = Bench()
    try:
        await bench.ready()
        await bench.round(50, 50, 1)
        print(f"bittensor {bt.__version__}, {HASH}, 1 KiB round trip over 127.0.0.1")
        for r in range(rounds):
            result = await bench.round(samples, queries, concurrency)
            print(
                f"round {r}: p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us, "
                f"{result['qps']:.0f} queries/s ({concurrency} in flight), "
                f"errors {result['errors']}"
            )
    finally:
        await bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axon", metavar="WALLET_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.axon:
        run_axon(args.axon)
    elif args.stdio:
        asyncio.run(stdio())
    else:
        asyncio.run(standalone(args.rounds, args.samples, args.queries, args.concurrency))


if __name__ == "__main__":
    main()
