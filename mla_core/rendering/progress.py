"""A progress line per finished scene."""

from __future__ import annotations

import threading


class Progress:
    """One line per finished scene with a bar across all scenes (thread-safe)."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.done, self.what = total, 0, what
        self.lock = threading.Lock()
        print(f"{what}: {total} scene(s)", flush=True)

    def started(self, name: str) -> None:
        with self.lock:
            print(f"  ... {name}", flush=True)

    def finished(self, name: str, note: str) -> None:
        with self.lock:
            self.done += 1
            width = 20
            filled = round(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            left = self.total - self.done
            print(f"[{bar}] {self.done}/{self.total} {name}: {note} ({left} left)", flush=True)
