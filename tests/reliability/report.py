"""What a fault-injection run injected and what it found, printed and kept as JSON."""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "reliability"


def full_size() -> bool:
    return os.environ.get("VEOBOT_CHAOS", "quick") == "full"


@dataclass
class ChaosReport:
    run: str
    injected: dict = field(default_factory=dict)
    found: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def inject(self, **facts) -> None:
        self.injected.update(facts)

    def find(self, **facts) -> None:
        self.found.update(facts)

    def render(self) -> str:
        size = "full" if full_size() else "quick"
        lines = [f"[chaos] {self.run} ({size}, {time.monotonic() - self.started:.1f} s)"]
        lines += [f"  injected {key}: {value}" for key, value in self.injected.items()]
        lines += [f"  found    {key}: {value}" for key, value in self.found.items()]
        return "\n".join(lines)

    def save(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        size = "full" if full_size() else "quick"
        record = {
            "run": self.run,
            "size": size,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - self.started, 1),
            "injected": self.injected,
            "found": self.found,
        }
        with open(ARTIFACTS / f"{size}.jsonl", "a") as log:
            log.write(json.dumps(record, default=str) + "\n")
