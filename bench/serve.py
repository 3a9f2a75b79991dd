"""`cnnlab serve` under load: N concurrent clients over 127.0.0.1, batched against one request
at a time (--max-batch 1), side by side in one run; or under attack (--attack).

    python bench/serve.py RUN_DIR PHOTOS [--clients 16] [--requests 400] [--seconds 60]
                          [--repeats 3] [--max-batch 32] [--wait-ms 5] [--model-seconds 10]
                          [--onnx]
    python bench/serve.py RUN_DIR [PHOTOS] --attack [--clients 50] [--seconds 60]

Each mode starts its own server (`cnnlab serve RUN_DIR --max-batch B`), is warmed up, then the
clients send one photo per request (PHOTOS: a folder, searched recursively), as a raw image/jpeg
body over a kept-alive connection, until `--requests` have been answered or `--seconds` have
passed. Each round also measures the model alone, in this process with no HTTP: the photos
decoded by the server's own `Predictor.decode` (timed apart), then its `probabilities` on them
in batches of `--max-batch` and of 1 for `--model-seconds` each: the ceiling the batched server
could reach if HTTP, decoding and the clients cost nothing. Modes alternate over `--repeats`
rounds; the table gives each mode's median throughput and p50/p99 latency, then batched
throughput as a share of the ceiling and the ratio of throughputs, against the targets (at
least 85% of the ceiling, a p99 of at most 250 ms, at least 1.4x one at a time), and
where the CPU went: per answered image the server's CPU time (all its threads) and the
clients', beside the model's and decoding's alone. The clients (standard-library
http.client, one thread each) run on the same cores as the server.
`--onnx` serves (and measures) the run's ONNX export (`cnnlab export RUN_DIR --format onnx`).

--attack starts one server with its default limits and sends, from `--clients` threads for
`--seconds` (each client at most 1,000 requests), a mix of what has taken servers down: one in
five clients sends 9,000 x 9,000 PNGs of one colour (81 megapixels in 258 KB; they must be
refused from their header), one in five 8,000 x 5,000 PNGs (40 megapixels in 129 KB, under
--max-pixels: they must be decoded and answered), one in ten a body at a byte a second (it
must be cut off after --request-timeout), the rest photos (PHOTOS, or 640 x 480 JPEGs the
bench makes). Meanwhile GET /health is polled every 0.5 s, its latency recorded, and the
server's resident memory (VmRSS) sampled every 0.1 s against its level before the attack.
Targets: /health always within 1 s, every photo answered, memory under baseline + 1.5 GB.
Everything goes to 127.0.0.1 only.

Any run will do, since speed does not depend on what it learned; a tiny one, from a folder of
class folders of photos (PHOTO_FOLDER/cats/*.jpg, PHOTO_FOLDER/dogs/*.jpg, a few each):

    printf 'data: {loader: image_dir, root: PHOTO_FOLDER, image_size: [64, 64]}\n'\
    'model: {builder: small_cnn}\ntrain: {epochs: 1, batch_size: 8}\n' > tiny.yaml
    cnnlab train tiny.yaml    # the run directory is printed at the end
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
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


def start(
    run: Path, log: Path, max_batch: int = 32, wait_ms: float = 5.0, onnx: bool = False
) -> tuple[subprocess.Popen, str]:
    """`cnnlab serve RUN_DIR` on a free port of 127.0.0.1, up once /health answers."""
    port = free_port()
    command = [
        sys.executable, "-m", "cnnlab", "serve", str(run), "--port", str(port),
        "--max-batch", str(max_batch), "--batch-wait-ms", str(wait_ms),
        *(["--onnx"] if onnx else []),
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


def cpu_s(pid: int) -> float:
    """CPU seconds process `pid` has used, all its threads, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, photos: list[bytes], clients: int, total: int, seconds: float, pid: int) -> dict:
    """Send up to `total` requests from `clients` threads within `seconds`; with the CPU
    time an answered image cost the server (process `pid`) and the clients."""
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
    server_cpu, client_cpu = cpu_s(pid), time.process_time()
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    server_cpu, client_cpu = cpu_s(pid) - server_cpu, time.process_time() - client_cpu
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "answered": len(ms), "failed": failures, "throughput": len(ms) / wall,
        "p50": ms[len(ms) // 2], "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "server ms": server_cpu * 1000 / max(len(ms), 1),
        "client ms": client_cpu * 1000 / max(len(ms), 1),
        "cores": (server_cpu + client_cpu) / wall,
    }  # fmt: skip


def load_predictor(run: Path, onnx: bool):
    """The server's predictor of `run`, in this process, loaded as `cnnlab serve` loads it."""
    from cnnlab.api.backend import open_finished_run, open_runs
    from cnnlab.commands.serve.predictor import load_predictor

    if onnx:
        open_finished_run(run)
    else:
        open_runs([run])
    return load_predictor([run], onnx)


def model_alone(predictor, photos: list[bytes], max_batch: int, seconds: float) -> dict:
    """The model with no HTTP: CPU ms an image `decode` takes, and images/s of
    `probabilities` on the decoded photos in batches of `max_batch` and of 1, `seconds` each
    after a warm-up, with the CPU ms an image in batches of `max_batch` and the cores used."""
    begin = time.process_time()
    decoded = [predictor.decode(photo) for photo in photos]
    result = {"decode ms": (time.process_time() - begin) * 1000 / len(photos)}
    for size in (max_batch, 1):
        batches = [decoded[i : i + size] for i in range(0, len(decoded) - size + 1, size)]
        for batch in batches[:3]:  # warm-up: the first calls of a batch size build its graph
            predictor.probabilities(batch)
        done, begin, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - begin < seconds:
            for batch in batches:
                predictor.probabilities(batch)
                done += len(batch)
                if time.perf_counter() - begin >= seconds:
                    break
        wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
        result[size] = done / wall
        if size == max_batch:
            result["model ms"], result["cores"] = cpu * 1000 / done, cpu / wall
    return result


def flat_png(width: int, height: int, shaded: bool) -> bytes:
    """An RGB PNG that compresses a thousandfold: one colour, or a shade per row."""
    import numpy as np
    from PIL import Image

    if shaded:
        shade = (np.arange(height, dtype=np.uint32) * 7 % 256).astype(np.uint8)
        pixels = np.empty((height, width, 3), np.uint8)
        pixels[:] = shade[:, None, None]
        image = Image.fromarray(pixels)
    else:
        image = Image.new("RGB", (width, height), (90, 120, 200))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def made_photos(count: int = 16) -> list[bytes]:
    """640 x 480 JPEGs of smooth random colour (about 38 KB each)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        out = io.BytesIO()
        coarse.resize((640, 480), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
        photos.append(out.getvalue())
    return photos


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x.split()[1] for x in status.splitlines() if x.startswith("VmRSS"))) / 1024


class Tally:
    """What the attack's clients saw: answers counted by '<kind> <outcome>', the seconds the
    photos' answers took, and the seconds after which each slow body was cut off."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.photo_s: list[float] = []
        self.cut_after: list[float] = []

    def add(self, key: str, seconds: float | None = None) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if key == "photo ok":
                self.photo_s.append(seconds)

    def ok(self, kind: str) -> int:
        return self.counts.get(f"{kind} ok", 0)

    def other(self, kind: str) -> int:
        return sum(
            n for k, n in self.counts.items() if k.startswith(f"{kind} ") and k != f"{kind} ok"
        )


def sender(port: int, kind: str, body: bytes, expect: int, tally: Tally, stop_at: float) -> None:
    """A client that posts `body` as a raw image over a kept-alive connection, again and again
    (at most 1,000 times) until `stop_at`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(1000):
            if time.monotonic() >= stop_at:
                return
            begin = time.perf_counter()
            try:
                # Any image/* type will do: the server reads the format from the bytes.
                connection.request(
                    "POST", "/predict", body=body, headers={"Content-Type": "image/png"}
                )
                response = connection.getresponse()
                response.read()
                outcome = "ok" if response.status == expect else response.status
                tally.add(f"{kind} {outcome}", time.perf_counter() - begin)
            except (OSError, http.client.HTTPException) as e:
                tally.add(f"{kind} {type(e).__name__}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    finally:
        connection.close()


def trickler(port: int, tally: Tally, stop_at: float) -> None:
    """A client that sends a body a byte a second; once cut off, it starts again."""
    while time.monotonic() < stop_at - 1:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            sock.settimeout(1)
            begin = time.monotonic()
            while time.monotonic() < stop_at:
                try:
                    sock.sendall(b"\xff")
                    sock.recv(4096)  # a second of nothing, or the server's end
                except TimeoutError:
                    continue
                except OSError:  # reset: cut off too
                    pass
                with tally.lock:
                    tally.cut_after.append(time.monotonic() - begin)
                break


def watch(url: str, pid: int, stop_at: float, health: list, rss: list) -> None:
    """GET /health every 0.5 s (its seconds, or None when it failed) and the server's resident
    memory every 0.1 s, until `stop_at`."""
    poll_at = time.monotonic()
    while time.monotonic() < stop_at:
        if time.monotonic() >= poll_at:
            poll_at = time.monotonic() + 0.5
            begin = time.perf_counter()
            try:
                ok = requests.get(url + "/health", timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            health.append(time.perf_counter() - begin if ok else None)
        rss.append(rss_mb(pid))
        time.sleep(0.1)


# The attack's clients, by client number modulo 10: (kind, expected status).
MIX = {0: ("huge", 413), 1: ("huge", 413), 2: ("large", 200), 3: ("large", 200), 4: ("slow", 0)}


def attack(run: Path, photos: list[bytes], clients: int, seconds: float) -> bool:
    """Attack a server of `run` for `seconds`, print what happened; whether the targets held."""
    print("making the PNGs ...", flush=True)
    huge, large = flat_png(9000, 9000, shaded=False), flat_png(8000, 5000, shaded=True)
    print(f"81 Mpx: {len(huge):,} bytes, 40 Mpx: {len(large):,} bytes", flush=True)
    log = Path("serve-attack.log")
    process, url = start(run, log)
    port = int(url.rsplit(":", 1)[1])
    try:
        for photo in photos[:8]:  # warm-up: the first model calls build the graph
            requests.post(
                url + "/predict", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=60
            )
        time.sleep(1)
        baseline = rss_mb(process.pid)
        tally, health, rss = Tally(), [], []
        stop_at = time.monotonic() + seconds
        threads = [threading.Thread(target=watch, args=(url, process.pid, stop_at, health, rss))]
        for i in range(clients):
            kind, expect = MIX.get(i % 10, ("photo", 200))
            if kind == "slow":
                threads.append(threading.Thread(target=trickler, args=(port, tally, stop_at)))
                continue
            body = {"huge": huge, "large": large}.get(kind) or photos[i % len(photos)]
            args = (port, kind, body, expect, tally, stop_at)
            threads.append(threading.Thread(target=sender, args=args))
        print(f"attacking for {seconds:g} s with {clients} clients ...", flush=True)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        alive = process.poll() is None
        if alive:
            alive = requests.get(url + "/health", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)

    timed = sorted(x for x in health if x is not None)
    missed = len(health) - len(timed)
    p99 = timed[min(len(timed) - 1, int(len(timed) * 0.99))] if timed else float("nan")
    peak = max(rss, default=baseline)
    cut = tally.cut_after
    print(f"\n{clients} clients for {seconds:g} s on run {run}, `cnnlab serve` with its defaults")
    print(
        f"- GET /health: {len(health)} polls, max {max(timed, default=0):.3f} s, "
        f"p99 {p99:.3f} s, {missed} failed (target: each within 1 s)"
    )
    took = sorted(tally.photo_s) or [float("nan")]
    print(
        f"- photos: {tally.ok('photo')} answered (median {took[len(took) // 2]:.2f} s, max "
        f"{took[-1]:.2f} s), {tally.other('photo')} failed"
    )
    print(f"- 81-Mpx PNGs: {tally.ok('huge')} refused (413), {tally.other('huge')} otherwise")
    print(f"- 40-Mpx PNGs: {tally.ok('large')} answered, {tally.other('large')} failed")
    if cut:
        print(f"- slow bodies: {len(cut)} cut off, after {min(cut):.1f} to {max(cut):.1f} s")
    else:
        print("- slow bodies: none cut off")
    print(
        f"- resident memory: {baseline:,.0f} MB before, peak {peak:,.0f} MB "
        f"(+{peak - baseline:,.0f} MB; target under +1,536 MB)"
    )
    print(f"- afterwards the server {'answers' if alive else f'is DOWN: see {log}'}")
    unexpected = {k: n for k, n in tally.counts.items() if not k.endswith(" ok")}
    if unexpected:
        print(f"- unexpected answers: {unexpected}")
    met = (
        alive and not missed and bool(timed) and timed[-1] < 1 and tally.ok("photo") > 0
        and not tally.other("photo") and peak - baseline < 1536
    )  # fmt: skip
    print("targets met" if met else "TARGETS MISSED")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("photos", type=Path, nargs="?")
    parser.add_argument("--attack", action="store_true", help="the attack mix (above)")
    parser.add_argument("--clients", type=int, help="default: 16; 50 with --attack")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--model-seconds", type=float, default=10, help="model alone, per size")
    parser.add_argument("--onnx", action="store_true", help="serve the run's ONNX export")
    args = parser.parse_args()
    args.run = args.run.resolve()  # the server runs in the repository's folder
    if args.photos is None and not args.attack:
        parser.error("PHOTOS: a folder of photos to send (only --attack makes its own)")
    photos = made_photos()
    if args.photos is not None:
        suffixes = (".jpg", ".jpeg", ".png")
        files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in suffixes)
        if not files:
            raise SystemExit(f"{args.photos}: no .jpg or .png photos")
        photos = [p.read_bytes() for p in files[:200]]
    if args.attack:
        met = attack(args.run, photos, args.clients or 50, args.seconds)
        raise SystemExit(0 if met else 1)
    args.clients = args.clients or 16
    modes = {"batched": args.max_batch, "one at a time": 1}
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    alone: list[dict] = []
    predictor = load_predictor(args.run, args.onnx)
    log = Path("serve-bench.log")
    for round_ in range(args.repeats):
        alone.append(model_alone(predictor, photos, args.max_batch, args.model_seconds))
        print(
            f"round {round_ + 1} model alone: {alone[-1][args.max_batch]:.1f} images/s in "
            f"batches of {args.max_batch} ({alone[-1]['cores']:.2f} cores), {alone[-1][1]:.1f} "
            f"one at a time; decoding {alone[-1]['decode ms']:.2f} ms an image",
            flush=True,
        )
        for mode, max_batch in modes.items():
            process, url = start(args.run, log, max_batch, args.wait_ms, args.onnx)
            try:
                load(url, photos, args.clients, 4 * args.clients, 30, process.pid)  # warm-up
                result = load(url, photos, args.clients, args.requests, args.seconds, process.pid)
                health = requests.get(url + "/health", timeout=10).json()
                result["mean batch"] = health["images"] / max(health["batches"], 1)
            finally:
                process.terminate()
                process.wait(timeout=30)
            results[mode].append(result)
            print(
                f"round {round_ + 1} {mode}: {result['throughput']:.1f} images/s, "
                f"p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, "
                f"{result['answered']} answered, {result['failed']} failed; "
                f"{result['cores']:.2f} cores",
                flush=True,
            )
    runtime = "onnxruntime" if args.onnx else "keras"
    print(
        f"\n{args.clients} clients, {len(photos)} photos from {args.photos}, run {args.run} "
        f"({runtime})"
    )
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
    ceiling = statistics.median(a[args.max_batch] for a in alone)
    single = statistics.median(a[1] for a in alone)
    decode_ms = statistics.median(a["decode ms"] for a in alone)
    print(
        f"| model alone, no HTTP (batches of {args.max_batch} / of 1) | {ceiling:.1f} / "
        f"{single:.1f} | | | |"
    )
    batched = medians["batched"]
    share = batched["throughput"] / ceiling
    ratio = batched["throughput"] / medians["one at a time"]["throughput"]
    cost = {k: statistics.median(r[k] for r in results["batched"]) for k in results["batched"][0]}
    model_ms = statistics.median(a["model ms"] for a in alone)
    print(
        f"\nmedians of {args.repeats} rounds. CPU an image, batched: the server "
        f"{cost['server ms']:.2f} ms, the clients {cost['client ms']:.2f} ms, on "
        f"{cost['cores']:.2f} cores; alone, the model {model_ms:.2f} ms in batches of "
        f"{args.max_batch} (on {statistics.median(a['cores'] for a in alone):.2f} cores) and "
        f"decoding {decode_ms:.2f} ms"
    )
    print(f"- batched / model ceiling: {share:.0%} (target: at least 85%)")
    print(f"- batched p99: {batched['p99']:.0f} ms (target: at most 250 ms)")
    print(f"- batched / one at a time: {ratio:.2f}x throughput (target: at least 1.4x)")
    met = share >= 0.85 and batched["p99"] <= 250 and ratio >= 1.4
    print("targets met" if met else "TARGETS MISSED")


if __name__ == "__main__":
    main()
