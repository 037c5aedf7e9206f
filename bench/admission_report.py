"""The admission benchmark's figures: rounds combined, ratios to the floor, the issue's targets."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from bench.admission_plans import ADMISSION, FLOOR, LOCAL, PROXY, THREE_STATEMENTS, Plan
from bench.pgbench_driver import Result


@dataclass
class Measurement:
    plan: Plan
    result: Result
    admitted: int = 0
    rejected: int = 0
    over_admitted: int | None = None  # None: the variant enforces no quota
    ratios: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    description: str
    figures: str
    met: bool


def combine(rounds: list[Measurement]) -> Measurement:
    """One plan over several rounds: the median of each figure, the totals of what was written."""
    results = [m.result for m in rounds]

    def median(figure: str) -> float | None:
        values = [getattr(r, figure) for r in results if getattr(r, figure) is not None]
        return statistics.median(values) if values else None

    over = [m.over_admitted for m in rounds]
    return Measurement(
        rounds[0].plan,
        Result(
            sum(r.transactions for r in results),
            median("tps"),
            median("p50_ms"),
            median("p99_ms"),
            median("server_cpu_us"),
            median("other_cores"),
        ),
        admitted=sum(m.admitted for m in rounds),
        rejected=sum(m.rejected for m in rounds),
        over_admitted=None if None in over else sum(over),
    )


def add_ratios(measurements: list[Measurement]) -> None:
    """Each run that writes requests against (a) with the same route and clients: tps and p50."""
    floors = {(m.plan.route, m.plan.clients): m.result for m in measurements if m.plan.variant == FLOOR}
    for m in measurements:
        floor = floors.get((m.plan.route, m.plan.clients))
        if floor and m.plan.writes_requests and m.plan.users.label != "hot":
            m.ratios = {"tps": m.result.tps / floor.tps, "p50": m.result.p50_ms / floor.p50_ms}
            if m.result.server_cpu_us and floor.server_cpu_us:
                m.ratios["cpu"] = m.result.server_cpu_us / floor.server_cpu_us


def _find(measurements: list[Measurement], variant: str, route: str, clients: int, users: str) -> Measurement | None:
    for m in measurements:
        if (m.plan.variant, m.plan.route, m.plan.clients, m.plan.users.label) == (variant, route, clients, users):
            return m
    return None


def targets(measurements: list[Measurement], rows: int) -> list[Target]:
    checks = []
    for clients in sorted({m.plan.clients for m in measurements if m.plan.variant == ADMISSION}):
        admitted_path = _find(measurements, ADMISSION, LOCAL, clients, "new")
        floor = _find(measurements, FLOOR, LOCAL, clients, "new")
        if admitted_path and floor:
            ratio = admitted_path.result.p50_ms / floor.result.p50_ms
            checks.append(
                Target(
                    f"admitted-path p50 <= 1.3x (a), local, {clients} client(s)",
                    f"{admitted_path.result.p50_ms:.3f} / {floor.result.p50_ms:.3f} ms = {ratio:.2f}x",
                    ratio <= 1.3,
                )
            )
    floor = _find(measurements, FLOOR, LOCAL, 16, "new")
    for users in ("new", "known") if floor else ():
        admission = _find(measurements, ADMISSION, LOCAL, 16, users)
        ratio = admission.result.tps / floor.result.tps
        checks.append(
            Target(
                f"16-client tps >= 0.8x (a), local, admission with {users} users",
                f"{admission.result.tps:.0f} / {floor.result.tps:.0f} tps = {ratio:.2f}x",
                ratio >= 0.8,
            )
        )
    for clients in sorted({m.plan.clients for m in measurements if m.plan.route == PROXY}):
        admission = _find(measurements, ADMISSION, PROXY, clients, "known")
        original = _find(measurements, THREE_STATEMENTS, PROXY, clients, "known")
        latency = original.result.p50_ms / admission.result.p50_ms
        throughput = admission.result.tps / original.result.tps
        checks.append(
            Target(
                f"{PROXY}: admission >= 2x faster than (b), {clients} client(s)",
                f"p50 {original.result.p50_ms:.3f} / {admission.result.p50_ms:.3f} ms = {latency:.2f}x, "
                f"tps {admission.result.tps:.0f} / {original.result.tps:.0f} = {throughput:.2f}x",
                latency >= 2 and throughput >= 2,
            )
        )
    scope = "" if rows >= 10_000_000 else f" [stated for 10M rows; this run has {rows:,}]"
    for m in measurements:
        if m.plan.variant == ADMISSION and m.plan.route == LOCAL and m.plan.users.label != "hot":
            checks.append(
                Target(
                    f"p99 < 5 ms, admission, {m.plan.users.label} users, local, {m.plan.clients} client(s){scope}",
                    f"{m.result.p99_ms:.3f} ms",
                    m.result.p99_ms < 5,
                )
            )
    over = sum(m.over_admitted for m in measurements if m.plan.variant == ADMISSION)
    checks.append(Target("zero over-admission by admission, every run", f"{over} over-admitted rows", over == 0))
    return checks


def print_table(measurements: list[Measurement], rounds: int) -> None:
    print(
        f"\nMedian of {rounds} round(s) per row; txns, admitted, rejected and over-admitted are totals.\n"
        "cpu us: server CPU per transaction; other: cores used by processes outside the benchmark meanwhile."
    )
    header = (
        f"{'variant':<17} {'users':<6} {'route':<12} {'clients':>7} {'txns':>8} {'tps':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'tps/(a)':>7} {'p50/(a)':>7} {'cpu us':>7} {'cpu/(a)':>7} "
        f"{'admitted':>8} {'rejected':>8} {'over':>5} {'other':>5}"
    )
    print(header + "\n" + "-" * len(header))

    def optional(value, spec):
        return "" if value is None else format(value, spec)

    for m in measurements:
        written = m.plan.writes_requests
        print(
            f"{m.plan.variant:<17} {m.plan.users.label:<6} {m.plan.route:<12} {m.plan.clients:>7} "
            f"{m.result.transactions:>8} {m.result.tps:>8.0f} {m.result.p50_ms:>7.3f} {m.result.p99_ms:>7.3f} "
            f"{optional(m.ratios.get('tps'), '.2f'):>7} {optional(m.ratios.get('p50'), '.2f'):>7} "
            f"{optional(m.result.server_cpu_us, '.0f'):>7} {optional(m.ratios.get('cpu'), '.2f'):>7} "
            f"{optional(m.admitted if written else None, 'd'):>8} "
            f"{optional(m.rejected if written else None, 'd'):>8} "
            f"{optional(m.over_admitted, 'd'):>5} {optional(m.result.other_cores, '.2f'):>5}"
        )


def print_targets(checks: list[Target]) -> None:
    print("\nTargets:")
    for check in checks:
        print(f"  [{'met' if check.met else 'NOT MET'}] {check.description}: {check.figures}")


def as_json(m: Measurement) -> dict:
    return {
        **asdict(m.plan),
        "window": str(m.plan.window),
        **asdict(m.result),
        "admitted": m.admitted,
        "rejected": m.rejected,
        "over_admitted": m.over_admitted,
        "ratios": m.ratios,
    }
