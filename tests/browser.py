"""Headless Chromium for the end-to-end tests: found once, run until a page reports back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

CHROMIUM = next(
    (
        path
        for path in ("/usr/bin/chromium", shutil.which("chromium"))
        if path and os.access(path, os.X_OK)
    ),
    None,
)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium')"
)


async def browse_until(
    url: str, profile: Path, reported: trio.Event, *flags: str, within: float = 60
) -> None:
    """Open ``url`` in headless Chromium and wait (at most ``within`` s) for ``reported``.

    The flags keep it off the network (this machine's is closed) and away
    from the first-run work; ``flags`` adds to them.
    """
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        *flags,
        f"--user-data-dir={profile}",
        url,
    ]
    async with trio.open_nursery() as nursery:
        browser = await nursery.start(
            lambda task_status: trio.run_process(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                task_status=task_status,
            )
        )
        try:
            with trio.fail_after(within):
                await reported.wait()
        finally:
            browser.terminate()
