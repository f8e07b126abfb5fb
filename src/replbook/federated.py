"""Flower, kept on this machine: the environment that silences every outside address Flower 1.42 and Ray try, a
network namespace with only loopback for the tests, and a local deployment (one SuperLink, N SuperNodes on
127.0.0.1) started and stopped by process id.

The facts behind the settings were measured with strace in a network namespace (``shared/notes/flower_network.md``):
Flower's telemetry and update check look up outside hosts, the SuperLink installs run dependencies unless told not
to, and Ray's dashboard probes the cloud-metadata address 169.254.169.254 even with usage statistics off. A dead
loopback proxy turns every stray HTTP request into a refused local connection; Ray's gRPC ignores proxies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from replbook.paths import cache_dir

DEAD_PROXY = "http://127.0.0.1:9"
LOOPBACK = "localhost,127.0.0.1,::1"


def offline_env(flwr_home: Path | None = None) -> dict[str, str]:
    """The variables that keep Flower and Ray on this machine (``flwr_home`` defaults to the project cache)."""
    home = (Path(flwr_home) if flwr_home else cache_dir() / "flwr_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return {
        "FLWR_TELEMETRY_ENABLED": "0",  # read when flwr is imported
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # the SuperLink would otherwise `uv sync` from PyPI
        "FLWR_HOME": str(home),  # Flower writes `source`, `config.toml` and unpacked apps here, not in ~/.flwr
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # silences a start-up tip; no GPU is used
        # Ray's dashboard probes cloud metadata before it reads the usage-stats switch: the dead proxy refuses it.
        "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY,
        "NO_PROXY": LOOPBACK, "no_proxy": LOOPBACK,
    }


def use_offline_flower(flwr_home: Path | None = None) -> dict[str, str]:
    """Set :func:`offline_env` in this process (children inherit it). Every entry point that may start Flower calls
    this first: the notebook, the tests, the CLI. An ``FLWR_HOME`` already set is kept (``flwr run`` imports the
    app, and with it this call, after it has chosen its home). Raises if flwr was imported before with telemetry
    on, because Flower reads that switch at import."""
    if "flwr" in sys.modules and os.environ.get("FLWR_TELEMETRY_ENABLED") != "0":
        raise RuntimeError("flwr was imported before replbook.federated.use_offline_flower(); call it before any "
                           "`import flwr` (Flower reads FLWR_TELEMETRY_ENABLED at import).")
    if flwr_home is None and os.environ.get("FLWR_HOME"):
        flwr_home = Path(os.environ["FLWR_HOME"])  # a caller's choice stands: Flower's CLI imports our apps too
    env = offline_env(flwr_home)
    os.environ.update(env)
    return env


def in_loopback_namespace() -> bool:
    """True when this process sees no network interface but loopback (inside ``unshare --net``)."""
    try:  # /proc/self/net follows the process's network namespace (/sys/class/net follows sysfs's mount)
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def loopback_namespace_problem() -> str | None:
    """Why a loopback-only network namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (util-linux / iproute2)"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare --net` failed ({probe.stderr.strip() or probe.returncode}); it needs root or user namespaces"
    return None


def loopback_command(argv: list[str]) -> list[str]:
    """``argv`` wrapped to run in a fresh network namespace whose only interface, loopback, is up."""
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def _wait_for(url: str, timeout: float, process: subprocess.Popen) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to loopback
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode} before it was ready.")
        try:
            opener.open(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s.")


def _stop(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def local_federation(app_dir: Path, node_configs: list[str], port: int = 39200, flwr_home: Path | None = None,
                     log_dir: Path | None = None, ready_timeout: float = 60.0) -> Iterator[dict]:
    """A SuperLink and one SuperNode per entry of ``node_configs`` (Flower's ``--node-config`` strings), all on
    127.0.0.1, with a ``config.toml`` connection ``local`` in an isolated ``FLWR_HOME``; yields
    ``{"env", "run": callable, "logs"}`` where ``run(run_config)`` executes ``flwr run <app_dir> local`` with
    ``--run-config run_config`` (key=value pairs or a .toml file). Everything started
    here is stopped by its process id on exit (Flower's detached ``flower-superexec`` children exit with their
    parents; any left are killed)."""
    home = (Path(flwr_home) if flwr_home else cache_dir() / "flwr_deploy").resolve()
    home.mkdir(parents=True, exist_ok=True)
    logs = Path(log_dir) if log_dir else home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **offline_env(home)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # flower-superexec is found here
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    bin_dir = Path(sys.executable).parent
    started: list[subprocess.Popen] = []
    log_files = []

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        log_files.append(open(logs / f"{name}.log", "w"))  # noqa: SIM115 - closed after the processes stop
        p = subprocess.Popen(argv, env=env, stdout=log_files[-1], stderr=subprocess.STDOUT, cwd=home,
                             start_new_session=True)
        started.append(p)
        return p

    try:
        link = start("superlink", [str(bin_dir / "flower-superlink"), "--insecure", "--host", "127.0.0.1",
                                   "--port", str(port), "--disable-runtime-dependency-installation"])
        _wait_for(f"http://127.0.0.1:{port}/health", ready_timeout, link)
        for i, node_config in enumerate(node_configs):
            start(f"supernode{i}", [str(bin_dir / "flower-supernode"), "--insecure", "--superlink",
                                    f"127.0.0.1:{port}", "--port", str(port + 100 + i), "--node-config", node_config])

        def run(run_config: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
            return subprocess.run([str(bin_dir / "flwr"), "run", str(app_dir), "local", "--stream", "--run-config",
                                   run_config], env=env, cwd=home, capture_output=True, text=True, timeout=timeout)

        yield {"env": env, "run": run, "logs": logs}
    finally:
        _stop(list(reversed(started)))
        for p in started:
            _kill_session(p.pid)
        for f in log_files:
            f.close()


def _kill_session(sid: int) -> None:
    """Kill what is left of a process group we started (the detached superexec children of our processes)."""
    try:
        os.killpg(sid, signal.SIGTERM)
        time.sleep(0.5)
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
