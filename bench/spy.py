"""py-spy around a measured phase: record a server's stacks, summarize the hot spots.

    bench/.venv-bench/bin/python bench/spy.py /path/to/raw-profile.txt   # summarize a file

``Spy(pid, path).start()`` runs ``py-spy record --format raw`` (collapsed stacks) on the
server for the phase; ``summarize()`` turns them into the functions with the most samples,
by self time (the leaf frame) and inclusive time (anywhere on the stack).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY = Path(__file__).resolve().parent / ".venv-bench" / "bin" / "py-spy"


def available() -> bool:
    return PY_SPY.exists()


class Spy:
    def __init__(self, pid: int, output: Path, duration: float, rate: int = 200) -> None:
        self.pid = pid
        self.output = output
        self.duration = max(int(duration), 1)
        self.rate = rate
        self.proc: subprocess.Popen | None = None

    def start(self) -> Spy:
        if not available():
            return self
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(self.pid), "--duration", str(self.duration),
             "--rate", str(self.rate), "--format", "raw", "--output", str(self.output),
             "--threads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def wait(self) -> Path | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(self.duration + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output if self.output.exists() else None


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)" without the line number.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


# Leaf frames of threads waiting for work (the WSGI and store pools): not CPU.
IDLE_LEAVES = ("Condition.wait (threading.py)", "Event.wait (threading.py)")


def summarize(path: Path, top: int = 15) -> dict:
    """Top frames of the busy samples (stacks of pool threads waiting for work dropped)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples = int(count)
            frames = [f for f in stack.split(";") if f and not f.startswith("thread (")]
            if not frames:
                continue
            names = [_frame_name(f) for f in frames]
            if names[-1] in IDLE_LEAVES:
                idle += samples
                continue
            total += samples
            own[names[-1]] += samples
            for name in set(names):
                inclusive[name] += samples
    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "self": [(name, round(100 * n / max(total, 1), 1)) for name, n in own.most_common(top)],
        "inclusive": [
            (name, round(100 * n / max(total, 1), 1)) for name, n in inclusive.most_common(top)
        ],
    }


def format_summary(summary: dict, top: int = 12) -> str:
    lines = [
        f"{summary['samples']} busy samples ({summary.get('idle_samples_dropped', 0)} samples"
        " of idle pool threads dropped); % of busy samples",
        "self time (leaf frame):",
    ]
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in summary["self"][:top]]
    lines.append("inclusive (anywhere on the stack):")
    lines += [f"  {pct:5.1f}%  {name}" for name, pct in summary["inclusive"][:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_summary(summarize(Path(sys.argv[1]))))
