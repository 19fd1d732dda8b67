"""``flowpipe top URL``: the ``--progress`` view of a flow running elsewhere, from its ``/metrics``."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import TextIO
from urllib.parse import urlsplit

from ..sdk import FlowpipeError
from ._view import LiveFrame, Snapshot, render, snapshot

__all__ = ["metrics_url", "top"]


def metrics_url(url: str) -> str:
    """``HOST:PORT``, ``http://HOST:PORT`` or a full URL: the URL of the flow's metrics."""
    if "://" not in url:
        url = f"http://{url}"
    return url if urlsplit(url).path.strip("/") else f"{url.rstrip('/')}/metrics"


def _scrape(url: str) -> Snapshot:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return snapshot(text_string_to_metric_families(text), time.monotonic())


def top(url: str, interval_s: float, once: bool, out: TextIO) -> None:
    """Show the view every ``interval_s`` until interrupted or the flow goes away (redrawn in
    place on a terminal, one frame after another otherwise); ``once``: a single frame."""
    url = metrics_url(url)
    try:
        now = _scrape(url)
    except (urllib.error.URLError, OSError) as error:
        raise FlowpipeError(f"cannot read {url}: {getattr(error, 'reason', error)}") from error
    frame = LiveFrame(out) if out.isatty() and not once else None
    before: Snapshot | None = None
    while True:
        lines = render(now, before)
        if frame is not None:
            frame.draw(lines)
        else:
            out.write("\n".join(lines) + "\n\n")
            out.flush()
        if once:
            return
        time.sleep(interval_s)
        before = now
        try:
            now = _scrape(url)
        except (urllib.error.URLError, OSError) as error:
            out.write(f"{url}: no longer answers ({getattr(error, 'reason', error)}); the flow has ended?\n")
            return
