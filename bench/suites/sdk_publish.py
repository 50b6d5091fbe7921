"""``sdk-publish``: this SDK against the official one (pyensign) on the same server, same run."""

from __future__ import annotations

from bench import official_sdk, rawclient, report, sdkrun
from bench.context import Context

TITLE = "SDK publish vs the official SDK (issue 3)"


def run(ctx: Context) -> report.Result:
    """Publish ``ctx.events`` events with each client; compare with each other and the echo."""
    versions = official_sdk.versions()
    server = rawclient.start_server(ctx.workdir)
    try:
        official = sdkrun.run(server, "official", ctx.events, "sdk-official")
        ours = sdkrun.run(server, "ours", ctx.events, "sdk-ours-batch")
        plain = sdkrun.run(server, "ours", ctx.events, "sdk-ours-plain", batch=False)
    finally:
        server.stop()
    echo = ctx.echo(ctx.events)
    table = report.Table(
        [
            "client",
            "events acked",
            "lost",
            "events/s",
            "publish→ack p50 ms",
            "p99 ms",
            "RSS start→end MiB",
            "compared with",
            "ratio",
            "goal",
        ]
    )

    def row(label: str, got: sdkrun.SdkRun, against: str, rate: float, goal: str) -> None:
        rss = got.rss()
        table.add(
            label,
            report.number(got.raw["acked"]),
            report.number(got.lost),
            report.number(got.rate),
            f"{got.raw['p50_ms']:.1f}",
            f"{got.raw['p99_ms']:.1f}",
            f"{rss[0]:.0f}→{rss[-1]:.0f}",
            against,
            report.ratio(got.rate, rate),
            goal,
        )

    row("django_ensign.client, batch extension", ours, "official SDK", official.rate, "≥ 3x")
    row("django_ensign.client, batch extension", ours, "echo, per message", echo.rate, "-")
    row("django_ensign.client, batch=False", plain, "echo, per message", echo.rate, "≥ 0.8x")
    row("official pyensign", official, "echo, per message", echo.rate, "-")
    table.add(
        "echo ceiling, per message", report.number(echo.acked), "0", report.number(echo.rate),
        f"{echo.p(0.5):.1f}", f"{echo.p(0.99):.1f}", "-", "-", "-", "-",
    )  # fmt: skip
    method = (
        "One fresh embedded server; each client runs in its own process "
        "(`bench/sdk_script.py`; the official SDK in its own virtualenv with "
        f"{versions}) and publishes {ctx.events:,} ≈200-byte JSON events, one `publish` call "
        "per event with async on_ack/on_nack callbacks, then waits for every outcome. "
        "events/s runs from the first publish call to the last outcome; latency is from the "
        "publish call to the ack (queueing inside the client included). Defaults otherwise "
        "(our client: max_in_flight 5000)."
    )
    notes = []
    for label, got in (("official", official), ("ours (batch)", ours), ("ours (plain)", plain)):
        if got.raw["timed_out"] or got.lost:
            notes.append(f"{label}: {got.lost:,} events had no outcome before the timeout.")
    return report.Result("sdk-publish", TITLE, method, table, notes)
