"""Bounded load test of ``beyondvis serve``: concurrent cook requests on loopback.

    python benchmarks/web.py                         # 500 cook requests, 20 at a time
    python benchmarks/web.py --requests 100 --time-limit 300

Starts ``beyondvis serve`` as a child process on a free 127.0.0.1 port (never any other
address), then sends the shipped food photo to ``POST /api/cook``:

1. one request alone (warm-up), then 5 one at a time: the warm card as a client sees it;
2. a burst of ``--concurrency`` (20) requests at once;
3. ``--requests`` (500) requests in all, ``--concurrency`` in flight, stopped early by
   ``--time-limit`` seconds.

It prints a table of latency percentiles per phase, errors, and the server's resident memory
(VmRSS) after the warm-up and after the run, next to the in-process warm card of
``benchmarks/cook.py`` (``CookModel.cook`` on the same photo and decoding, median of 3).
The server runs one model thread (``serve --workers 1``), so a burst queues: p95 of the burst
is about ``concurrency x`` the warm card, by design (on a CPU, parallel cards only slow each
other down). Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HOST = "127.0.0.1"  # loopback only: this benchmark never sends traffic anywhere else


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _multipart(photo: bytes, name: str, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + photo
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _post(port: int, body: bytes, ctype: str, timeout: float) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/api/cook", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        err = "" if status == 200 else data[:200].decode("utf-8", "replace")
    except OSError as exc:
        status, err = 0, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return time.perf_counter() - t0, status, err


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def _row(name: str, lat: list[float], errors: int, warm: float, wall: float | None = None) -> str:
    p50, p95 = _pct(lat, 50), _pct(lat, 95)
    rate = f"{len(lat) / wall:.2f}" if wall else "-"
    return (
        f"| {name} | {len(lat)} | {errors} | {p50:.2f} | {p95:.2f} | {max(lat, default=0):.2f} "
        f"| {p50 / warm:.1f}x | {rate} |"
    )


def _in_process_warm(photo: Path, decode: str, threads: int) -> float:
    """benchmarks/cook.py's warm figure: CookModel.cook in this process, median of 3."""
    import torch

    from beyondvis.io import load_image
    from beyondvis.recipes.generation.bundle import CookModel

    torch.set_num_threads(threads)
    model = CookModel(device="cpu")
    image = load_image(photo)
    model.cook(image, decode)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.cook(image, decode)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    from beyondvis.recipes.generation.bundle import DEMO_PHOTO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="cook requests in phase 3")
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight")
    parser.add_argument("--time-limit", type=float, default=1800, help="seconds for phase 3")
    parser.add_argument("--photo", type=Path, default=DEMO_PHOTO, help="photo to send")
    parser.add_argument("--decode", default="greedy", help="decoding asked of the server")
    parser.add_argument("--threads", type=int, default=1, help="server's PyTorch threads")
    parser.add_argument("--no-in-process", action="store_true", help="skip the warm figure")
    args = parser.parse_args()

    photo = args.photo.read_bytes()
    body, ctype = _multipart(photo, args.photo.name, {"decode": args.decode})
    warm_lib = (
        float("nan")
        if args.no_in_process
        else _in_process_warm(args.photo, args.decode, args.threads)
    )
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, "-m", "beyondvis.cli.main", "serve", "--host", HOST, "--port",
           str(port), "--device", "cpu", "--threads", str(args.threads), "--decode",
           args.decode, "--timeout", "600", "--max-queue", str(args.concurrency + 8)]  # fmt: skip
    t_start = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                print(server.stderr.read().decode()[-2000:], file=sys.stderr)
                raise SystemExit("the server exited before it answered")
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
                conn.request("GET", "/api/health")
                health = json.loads(conn.getresponse().read())
                conn.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start within 600 s") from None
                time.sleep(0.5)
        startup = time.perf_counter() - t_start
        timeout = 900.0
        first = _post(port, body, ctype, timeout)
        if first[1] != 200:
            raise SystemExit(f"the first cook request failed: {first}")
        rss0 = _rss_mb(server.pid)
        seq = [_post(port, body, ctype, timeout) for _ in range(5)]
        seq_lat = [t for t, s, _ in seq if s == 200]
        warm = statistics.median(seq_lat) if seq_lat else float("nan")

        def burst(n: int, limit: float | None) -> tuple[list, float]:
            out = []
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
                futures = set()
                sent = 0
                while sent < n or futures:
                    in_time = limit is None or time.perf_counter() - t0 < limit
                    while sent < n and in_time and len(futures) < args.concurrency:
                        futures.add(pool.submit(_post, port, body, ctype, timeout))
                        sent += 1
                    if not futures:
                        break
                    done, futures = concurrent.futures.wait(
                        futures, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    out += [f.result() for f in done]
            return out, time.perf_counter() - t0

        b20, b20_wall = burst(args.concurrency, None)
        run, run_wall = burst(args.requests, args.time_limit)
        rss1 = _rss_mb(server.pid)
        cards = _health(port)["cook"]["cards"]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    def split(results):
        lat = [t for t, s, _ in results if s == 200]
        errs = [(s, e) for _, s, e in results if s != 200]
        return lat, errs

    b_lat, b_err = split(b20)
    r_lat, r_err = split(run)
    ref = warm_lib if warm_lib == warm_lib else warm
    print(
        f"beyondvis serve on {HOST}: {os.cpu_count()} CPUs, server PyTorch threads "
        f"{args.threads}, 1 model thread, decode {args.decode}, photo {args.photo.name}; "
        f"start-up {startup:.1f} s (model load {health['cook']['load_seconds']:.1f} s)"
    )
    print(f"warm card in process (benchmarks/cook.py's figure): {warm_lib:.2f} s\n")
    print("| phase | requests | errors | p50 s | p95 s | max s | p50 / warm card | req/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(_row("one at a time", seq_lat, 5 - len(seq_lat), ref))
    print(_row(f"burst of {args.concurrency}", b_lat, len(b_err), ref, b20_wall))
    name = f"{len(run)} at {args.concurrency} in flight"
    print(_row(name, r_lat, len(r_err), ref, run_wall))
    print(
        f"\nserver RSS: {rss0:.0f} MB after the warm-up, {rss1:.0f} MB after "
        f"{cards} cards ({rss1 - rss0:+.0f} MB); phase 3 took {run_wall:.0f} s"
        + (" (time limit reached)" if len(run) < args.requests else "")
    )
    for s, e in (b_err + r_err)[:5]:
        print(f"error {s}: {e}", file=sys.stderr)
    return 1 if (b_err or r_err) else 0


def _health(port: int) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.request("GET", "/api/health")
    out = json.loads(conn.getresponse().read())
    conn.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
