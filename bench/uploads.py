"""Attachments: upload throughput and the server's memory while uploads stream.

Against a real ``serve.py`` (SQLite, a throwaway work directory and MEDIA_ROOT):

1. throughput: one 10 MiB file uploaded 5 times, one after the other, over a signed-in
   session (POST /api/rooms/<slug>/uploads/); MiB/s of each, the median reported;
2. memory: the server process's resident set (VmRSS from /proc/<pid>/status) sampled
   every 5 ms while five 10 MiB uploads run in parallel, against its idle RSS just
   before (after one warm-up upload, so imports and pools are already paid for). The
   peak minus idle is what the uploads cost; had a body been held whole per upload, it
   would be at least 5 x 10 MiB more.

    .venv/bin/python bench/uploads.py [--size-mib 10] [--runs 5] [--parallel 5]

The payload is random bytes (typed application/octet-stream: the UTF-8 test stops at the
first invalid byte). The client runs in this process (httpx); the machine's two cores
are shared by both sides, so throughput is a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from live_clients import provision  # noqa: E402
from parley_testing import ServerProcess  # noqa: E402

MIB = 1024 * 1024
PASSWORD = "bench-upload-pw-7731"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def client_of(server: ServerProcess, account):
    client = server.client(
        headers={"X-CSRFToken": account.csrftoken, "Origin": server.url}, timeout=120.0
    )
    client.cookies.set("sessionid", account.sessionid)
    client.cookies.set("csrftoken", account.csrftoken)
    return client


def upload(client, payload: bytes, name: str) -> float:
    started = time.perf_counter()
    response = client.post("/api/rooms/bench/uploads/", files={"file": (name, payload)})
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"upload failed: {response.status_code} {response.text[:200]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=5)
    args = parser.parse_args()
    size = int(args.size_mib * MIB)
    payload = os.urandom(size)

    with tempfile.TemporaryDirectory(prefix="parley-bench-uploads-") as tmp:
        workdir = Path(tmp)
        env = {
            "MEDIA_ROOT": str(workdir / "media"),
            "CHAT_MAX_UPLOAD_BYTES": str(max(size, 10 * MIB)),
            "CHAT_RATE_LIMIT": "0",
        }
        server = ServerProcess(workdir, env=env).start()
        try:
            [account] = provision(server, users=[("uploader", PASSWORD)], rooms=["bench"]).values()
            pid = server.proc.pid
            with client_of(server, account) as client:
                upload(client, payload, "warm-up.bin")
                times = [upload(client, payload, f"run-{i}.bin") for i in range(args.runs)]
            rates = [size / MIB / t for t in times]

            time.sleep(1.0)  # let the last upload's temporary files go
            idle_kib = status_kib(pid, "VmRSS")
            peak_kib = idle_kib
            done = threading.Event()

            def sample() -> None:
                nonlocal peak_kib
                while not done.is_set():
                    peak_kib = max(peak_kib, status_kib(pid, "VmRSS"))
                    time.sleep(0.005)

            def one(index: int) -> None:
                with client_of(server, account) as client:
                    upload(client, payload, f"parallel-{index}.bin")

            sampler = threading.Thread(target=sample)
            sampler.start()
            workers = [threading.Thread(target=one, args=(i,)) for i in range(args.parallel)]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            parallel_seconds = time.perf_counter() - started
            done.set()
            sampler.join()
            hwm_kib = status_kib(pid, "VmHWM")
        finally:
            server.stop()

    result = {
        "file_mib": size / MIB,
        "throughput_mib_s": {
            "median": round(statistics.median(rates), 1),
            "runs": [round(r, 1) for r in rates],
        },
        "parallel_uploads": args.parallel,
        "parallel_seconds": round(parallel_seconds, 2),
        "idle_rss_mib": round(idle_kib / 1024, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_minus_idle_mib": round((peak_kib - idle_kib) / 1024, 1),
        "vmhwm_mib": round(hwm_kib / 1024, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
