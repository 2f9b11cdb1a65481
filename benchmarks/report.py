"""Turn a run's samples into a markdown table (stdout), results.json and PNG charts."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .scenarios import Metric, Scenario, Settings
from .servers import H2C, HTTP1

#: The heading of each protocol's tables, when a run has more than HTTP/1.1's.
PROTOCOL_TITLES = {
    HTTP1: "HTTP/1.1",
    H2C: "HTTP/2 over cleartext (prior knowledge)",
}

# The tables use an en dash for ranges; spelled out so the source stays ASCII-clean.
DASH = "\u2013"

# Below this share of one core, a server was not the limit in a closed-loop
# scenario: the load generator (or something else on the machine) was.
SATURATED = 0.95

# Issue 17's targets: (our server, scenario, metric, peer, bound, "min" or "max").
# A peer written "@scenario" is our own server's figure in that scenario.
OURS = "trio-asgi-httptools"
TARGETS: tuple[tuple[str, str, str, str, float, str], ...] = (
    (OURS, "file", "mibps", "granian", 1.0, "min"),
    (OURS, "file", "mibps", "uvicorn-httptools", 3.0, "min"),
    (OURS, "stream", "mibps", "uvicorn-httptools", 1.0, "min"),
    (OURS, "post", "rps", "uvicorn-httptools", 1.1, "min"),
    (OURS, "many", "p99", "uvicorn-httptools", 1.0, "max"),
    (OURS, "many", "rps", "uvicorn-httptools", 1.5, "min"),
    (OURS, "many", "rps", "@hello", 0.9, "min"),
    (OURS, "ws", "mps", "uvicorn-h11", 1.0, "min"),
    (OURS, "ws", "mps", "uvicorn-httptools", 1.0, "min"),
    (OURS, "hello", "rps", "uvicorn-httptools", 1.2, "min"),
    (OURS, "hello", "rps", "granian", 1.0, "min"),
)
# Targets on a figure of ours alone: (server, scenario, metric, most allowed).
ABSOLUTE_TARGETS: tuple[tuple[str, str, str, float], ...] = ((OURS, "many", "timeouts", 0.0),)


@dataclass
class Measurement:
    round: int
    values: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    errors: int = 0
    cpu: float | None = None
    error: str | None = None


@dataclass
class ServerInfo:
    name: str
    description: str
    ours: bool
    version: str
    status: str = "ok"
    command: list[str] = field(default_factory=list)
    protocol: str = HTTP1


@dataclass
class Results:
    meta: dict[str, Any]
    settings: Settings
    scenarios: list[Scenario]
    servers: list[ServerInfo]
    # scenario name -> server name -> one measurement per round it ran in
    samples: dict[str, dict[str, list[Measurement]]] = field(default_factory=dict)

    def add(self, scenario: str, server: str, m: Measurement) -> None:
        self.samples.setdefault(scenario, {}).setdefault(server, []).append(m)

    def stats(self, scenario: str, server: str, key: str) -> dict[str, float] | None:
        values = [
            m.values[key]
            for m in self.samples.get(scenario, {}).get(server, [])
            if m.error is None and key in m.values
        ]
        if not values:
            return None
        return {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "n": len(values),
        }

    def target_ratio(self, scenario: str, key: str, ours: str, peer: str) -> float | None:
        """:meth:`ratio`, or for a peer "@other" ours over our own figure in scenario "other"."""
        if not peer.startswith("@"):
            return self.ratio(scenario, key, ours, peer)
        a = self.stats(scenario, ours, key)
        b = self.stats(peer[1:], ours, key)
        if not a or not b or b["median"] == 0:
            return None
        return a["median"] / b["median"]

    def ratio(self, scenario: str, key: str, ours: str, peer: str) -> float | None:
        a, b = self.stats(scenario, ours, key), self.stats(scenario, peer, key)
        if not a or not b or b["median"] == 0:
            return None
        return a["median"] / b["median"]


def _num(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(r: Results, scenario: str, server: ServerInfo, metric: Metric) -> str:
    if server.status != "ok":
        return "—"
    ms = r.samples.get(scenario, {}).get(server.name, [])
    st = r.stats(scenario, server.name, metric.key)
    if not st:
        errs = [m.error for m in ms if m.error]
        return f"error: {errs[0]}"[:80] if errs else "—"
    text = _num(st["median"])
    if st["n"] > 1:
        text += f" ({_num(st['min'])}{DASH}{_num(st['max'])})"
    cpus = [m.cpu for m in ms if m.cpu is not None]
    # The per-CPU-second figure is already corrected for a core the server did not get.
    normalised = metric.key == "per_cpu"
    if metric.higher_is_better and not normalised and cpus and statistics.median(cpus) < SATURATED:
        text += " †"
    if any(m.errors for m in ms):
        text += " !"
    return text


def _groups(r: Results) -> list[tuple[str, list[Scenario], list[ServerInfo]]]:
    """Per protocol that the run's scenarios speak: its scenarios and the servers that speak it."""
    protocols = list(dict.fromkeys(sc.protocol for sc in r.scenarios))
    return [
        (
            protocol,
            [sc for sc in r.scenarios if sc.protocol == protocol],
            [s for s in r.servers if s.protocol == protocol],
        )
        for protocol in protocols
    ]


def markdown(r: Results) -> str:
    groups = _groups(r)
    # A run of the HTTP/1.1 suite alone has the one table, with no heading.
    titled = [protocol for protocol, _, _ in groups] not in ([], [HTTP1])
    m = r.meta
    generators = ", ".join(
        f"HTTP/2 load by {m['h2_generator']}"
        if protocol == H2C
        else f"HTTP load by {m['generator']}"
        for protocol, _, _ in groups
    )
    lines = [
        f"## Benchmark run {m['date']}",
        "",
        f"`{m['command']}` on {m['cpu']} ({m['cores']} cores), Python {m['python']}; "
        f"server pinned to core {m['server_core']}, load on core(s) {m['load_cores']}; "
        f"{generators}; {m['rounds']} interleaved round(s), "
        f"{r.settings.duration:g} s per load scenario; took {m['elapsed_s']:.0f} s.",
        "",
        "| server | version | status |",
        "|---|---|---|",
    ]
    lines += [f"| {s.name} | {s.version} | {s.status} |" for s in r.servers]
    for protocol, scenarios, ran in groups:
        if titled:
            lines += ["", f"### {PROTOCOL_TITLES.get(protocol, protocol)}"]
        lines += [
            "",
            f"Median of the rounds, (min{DASH}max) when there was more than one; "
            "↑ higher is better, ↓ lower is better.",
            "",
            "| scenario | metric | " + " | ".join(s.name for s in ran) + " |",
            "|---|---|" + "---:|" * len(ran),
        ]
        for sc in scenarios:
            for metric in sc.metrics:
                arrow = "↑" if metric.higher_is_better else "↓"
                cells = " | ".join(_cell(r, sc.name, s, metric) for s in ran)
                label = f"{metric.label} ({metric.unit}) {arrow}"
                lines.append(f"| {sc.describe(r.settings, short=True)} | {label} | {cells} |")
    table = "\n".join(lines)
    if " †" in table:
        lines += [
            "",
            f"† the server used under {SATURATED:.0%} of its core (median over rounds): "
            "the load generator or other processes on the machine, not the server, "
            "set that number.",
        ]
    if " !" in table:
        lines += ["", "! some requests failed or connections dropped: see results.json."]
    any_ratios = False
    for protocol, scenarios, ran in groups:
        ours = [s for s in ran if s.ours and s.status == "ok"]
        peers = [s for s in ran if not s.ours and s.status == "ok"]
        if not (ours and peers):
            continue
        any_ratios = True
        over = f", {PROTOCOL_TITLES.get(protocol, protocol)}" if titled else ""
        lines += ["", f"### trio-asgi / peer{over} (ratio of the medians above)", ""]
        pairs = [(o, p) for o in ours for p in peers]
        lines.append(
            "| scenario | metric | " + " | ".join(f"{o.name} / {p.name}" for o, p in pairs) + " |"
        )
        lines.append("|---|---|" + "---:|" * len(pairs))
        for sc in scenarios:
            for metric in (m for m in sc.metrics if m.compare):
                cells = []
                for o, p in pairs:
                    q = r.ratio(sc.name, metric.key, o.name, p.name)
                    cells.append("—" if q is None else f"{q:.2f}x")
                arrow = "↑" if metric.higher_is_better else "↓"
                lines.append(
                    f"| {sc.describe(r.settings, short=True)} | {metric.label} {arrow} | "
                    + " | ".join(cells)
                    + " |"
                )
        if protocol == HTTP1:
            lines += _targets(r, scenarios)
    if not any_ratios:
        lines += ["", "No ratios: they need trio-asgi and at least one peer in the same run."]
    for note in m.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def _targets(r: Results, scenarios: list[Scenario]) -> list[str]:
    """Issue 17's targets (HTTP/1.1): each with its ratio (or figure) from this run, and if met."""
    names = {sc.name for sc in scenarios}
    lines = [
        "",
        "### Issue 17 targets",
        "",
        "| target | ratio | met | ratio per server CPU-second |",
        "|---|---:|---|---:|",
    ]
    for our, scen, key, peer, bound, kind in TARGETS:
        if scen not in names or (peer.startswith("@") and peer[1:] not in names):
            continue
        q = r.target_ratio(scen, key, our, peer)
        sign = "≥" if kind == "min" else "≤"
        ok = q is not None and (q >= bound if kind == "min" else q <= bound)
        met = "n/a" if q is None else ("yes" if ok else "no")
        shown = "—" if q is None else f"{q:.2f}x"
        eff = r.target_ratio(scen, "per_cpu", our, peer) if kind == "min" else None
        eff_shown = "—" if eff is None else f"{eff:.2f}x"
        against = f"{our} in {peer[1:]}" if peer.startswith("@") else peer
        lines.append(
            f"| {scen} {key}: {our} / {against} {sign} {bound:g}x | {shown} | {met} | {eff_shown} |"
        )
    for our, scen, key, most in ABSOLUTE_TARGETS:
        if scen not in names:
            continue
        runs = [m.values[key] for m in r.samples.get(scen, {}).get(our, []) if key in m.values]
        worst = max(runs) if runs else None
        met = "n/a" if worst is None else ("yes" if worst <= most else "no")
        shown = "—" if worst is None else _num(worst)
        lines.append(f"| {scen} {key}: {our}, every round, ≤ {most:g} | {shown} | {met} | — |")
    return lines


def write_json(r: Results, path: Path) -> None:
    summary: dict[str, Any] = {}
    for sc in r.scenarios:
        for metric in sc.metrics:
            per_server = {s.name: r.stats(sc.name, s.name, metric.key) for s in r.servers}
            summary.setdefault(sc.name, {})[metric.key] = per_server
    ratios: dict[str, Any] = {}
    ours = [s.name for s in r.servers if s.ours]
    peers = [s.name for s in r.servers if not s.ours]
    for sc in r.scenarios:
        for metric in sc.metrics:
            for o in ours:
                for p in peers:
                    q = r.ratio(sc.name, metric.key, o, p)
                    if q is not None:
                        ratios.setdefault(sc.name, {}).setdefault(metric.key, {})[f"{o}/{p}"] = q
    doc = {
        "meta": r.meta,
        "settings": asdict(r.settings),
        "servers": [asdict(s) for s in r.servers],
        "scenarios": [
            {
                "name": sc.name,
                "protocol": sc.protocol,
                "title": sc.describe(r.settings),
                "metrics": [asdict(metric) for metric in sc.metrics],
            }
            for sc in r.scenarios
        ],
        "summary": summary,
        "ratios": ratios,
        "samples": {
            sc: {srv: [asdict(m) for m in ms] for srv, ms in by_server.items()}
            for sc, by_server in r.samples.items()
        },
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")


def charts(r: Results, out: Path) -> list[Path]:
    """One PNG per scenario: median bars with min-max whiskers, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server, and none needed for a file
    import matplotlib.pyplot as plt

    written = []
    for sc in r.scenarios:
        panels = []
        for metric in sc.metrics:
            rows = [(s, r.stats(sc.name, s.name, metric.key)) for s in r.servers]
            rows = [(s, st) for s, st in rows if st]
            if rows:
                panels.append((metric, rows))
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
        for ax, (metric, rows) in zip(axes[0], panels, strict=True):
            names = [s.name for s, _ in rows]
            med = [st["median"] for _, st in rows]
            low = [st["median"] - st["min"] for _, st in rows]
            high = [st["max"] - st["median"] for _, st in rows]
            colors = ["#d95f02" if s.ours else "#1f78b4" for s, _ in rows]
            ax.bar(names, med, yerr=[low, high], capsize=4, color=colors)
            arrow = "higher is better" if metric.higher_is_better else "lower is better"
            ax.set_title(f"{metric.label} ({metric.unit}), {arrow}", fontsize=10)
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
            for i, v in enumerate(med):
                ax.annotate(_num(v), (i, v), ha="center", va="bottom", fontsize=8)
        fig.suptitle(
            f"{sc.describe(r.settings)}\nmedian and min{DASH}max of {r.meta['rounds']} round(s), "
            f"server on one core",
            fontsize=10,
        )
        fig.tight_layout()
        path = out / f"{sc.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
