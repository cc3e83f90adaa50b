"""What the benchmarks share: a free local port, and the CPU spent by the processes they measure."""

from __future__ import annotations

import contextlib
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(database_name: str, pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process tree in ``pids`` and of this database's PostgreSQL backends."""
    import psutil

    totals: dict[str, float] = {}
    for kind, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(pid)
            for proc in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    totals[kind] = totals.get(kind, 0.0) + times.user + times.system
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if database_name in " ".join(proc.info["cmdline"] or []):
                times = proc.cpu_times()
                totals["postgresql"] = totals.get("postgresql", 0.0) + times.user + times.system
    return totals
