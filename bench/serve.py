"""`cnnlab serve` under load: N concurrent clients over 127.0.0.1, batched against one request
at a time (--max-batch 1), side by side in one run.

    python bench/serve.py RUN_DIR PHOTOS [--clients 16] [--requests 400] [--seconds 60]
                          [--repeats 3] [--max-batch 32] [--wait-ms 5]

Each mode starts its own server (`cnnlab serve RUN_DIR --max-batch B`), is warmed up, then the
clients send one photo per request (PHOTOS: a folder, searched recursively), as a raw image/jpeg
body over a kept-alive connection, until `--requests` have been answered or `--seconds` have
passed. Modes alternate over `--repeats` rounds; the table gives each mode's median throughput
and p50/p99 latency, and the ratio of throughputs. The clients (standard-library http.client,
one thread each) run on the same cores as the server.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port  # noqa: E402


def start(run: Path, max_batch: int, wait_ms: float, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port),
        "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()}")
        try:
            requests.get(url + "/health", timeout=2)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not answer in 180 s")


def load(url: str, photos: list[bytes], clients: int, total: int, seconds: float) -> dict:
    """Send up to `total` requests from `clients` threads within `seconds`."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    sent = iter(range(total))
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal failures
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(sent, None)
                if i is None:
                    return
                photo = photos[i % len(photos)]
                begin = time.perf_counter()
                connection.request(
                    "POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"}
                )
                response = connection.getresponse()
                response.read()
                took = time.perf_counter() - begin
                with lock:
                    if response.status == 200:
                        latencies.append(took)
                    else:
                        failures += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "answered": len(ms), "failed": failures, "throughput": len(ms) / wall,
        "p50": ms[len(ms) // 2], "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    if not files:
        raise SystemExit(f"{args.photos}: no .jpg or .png photos")
    photos = [p.read_bytes() for p in files[:200]]
    modes = {"batched": args.max_batch, "one at a time": 1}
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    log = Path("serve-bench.log")
    for round_ in range(args.repeats):
        for mode, max_batch in modes.items():
            process, url = start(args.run, max_batch, args.wait_ms, log)
            try:
                load(url, photos, args.clients, 4 * args.clients, 30)  # warm-up
                result = load(url, photos, args.clients, args.requests, args.seconds)
                health = requests.get(url + "/health", timeout=10).json()
                result["mean batch"] = health["images"] / max(health["batches"], 1)
            finally:
                process.terminate()
                process.wait(timeout=30)
            results[mode].append(result)
            print(
                f"round {round_ + 1} {mode}: {result['throughput']:.1f} images/s, "
                f"p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, "
                f"{result['answered']} answered, {result['failed']} failed",
                flush=True,
            )
    print(f"\n{args.clients} clients, {len(photos)} photos from {args.photos}, run {args.run}")
    print("| mode | images/s | p50 ms | p99 ms | mean batch |")
    print("| --- | --- | --- | --- | --- |")
    medians = {}
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("throughput", "p50", "p99")}
        batch = statistics.median(r["mean batch"] for r in rows)
        medians[mode] = med
        print(
            f"| {mode} | {med['throughput']:.1f} | {med['p50']:.0f} | {med['p99']:.0f} | "
            f"{batch:.1f} |"
        )
    ratio = medians["batched"]["throughput"] / medians["one at a time"]["throughput"]
    print(f"\nbatched / one at a time: {ratio:.2f}x throughput (medians of {args.repeats})")


if __name__ == "__main__":
    main()
