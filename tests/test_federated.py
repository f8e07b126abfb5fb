"""Flower stays on this machine: the offline environment, the simulation engine and the deployment engine, each run
inside a network namespace whose only interface is loopback, with every connect() traced; any attempt at an outside
address fails the test (inside the namespace it could not leave anyway)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from replbook import federated

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = federated.loopback_namespace_problem()
needs_namespace = pytest.mark.skipif(PROBLEM is not None, reason=f"no loopback-only network namespace: {PROBLEM}")
needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt strace)")

TINY = dict(arms=["jfat", "cascade", "fedprophet"], mus=[0.0, 1e-3], seeds=1, width=4, blocks=1, clients=2,
            clients_per_round=2, n_train=64, n_val=32, n_test=32, rounds=3, local_steps=1, batch_size=16,
            test_steps=1, strong_eval=0, client_mem_multiples=[1.0, 4.0], client_perf=[1.0, 4.0],
            measure_samples=16, ablate_apa=False, ablate_dma=False)  # the smoke notebook runs the ablation arms


def outside_connects(trace: str) -> list[str]:
    """The traced connect/sendto/sendmsg lines that name an address other than loopback."""
    bad = []
    for line in trace.splitlines():
        for addr in re.findall(r'inet_addr\("([^"]+)"\)', line):
            if not addr.startswith("127."):
                bad.append(line)
        for addr in re.findall(r'inet_pton\(AF_INET6, "([^"]+)"', line):
            if addr != "::1" and not addr.startswith("::ffff:127."):
                bad.append(line)
        if "sa_data=" in line and "AF_UNIX" not in line:  # an address strace could not decode: not proven loopback
            bad.append(line)
    return bad


def processes_with(text: str) -> list[int]:
    """Process ids whose environment mentions ``text`` (our FLWR_HOME: the federation's processes and children)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_outside_connects_finds_what_is_not_loopback():
    trace = textwrap.dedent('''\
        10 connect(3, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("127.0.0.1")}, 16) = -1
        11 connect(4, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("169.254.169.254")}, 16) = -1
        12 connect(5, {sa_family=AF_INET6, sin6_port=htons(53), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 0
        13 connect(5, {sa_family=AF_INET6, sin6_port=htons(53), inet_pton(AF_INET6, "2001:4860::8888", &x)}, 28)
        14 connect(6, {sa_family=AF_UNIX, sun_path="/tmp/ray/session/sockets/raylet"}, 110) = 0
        ''')
    assert [line.split()[0] for line in outside_connects(trace)] == ["11", "13"]


def test_offline_env_sets_every_switch(tmp_path, monkeypatch):
    env = federated.offline_env(tmp_path / "home")
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1" and env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == "http://127.0.0.1:9"
    assert set(env["NO_PROXY"].split(",")) == {"localhost", "127.0.0.1", "::1"}
    assert Path(env["FLWR_HOME"]).is_dir()


def test_use_offline_flower_refuses_when_flwr_was_imported_with_telemetry_on(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", object())
    monkeypatch.delenv("FLWR_TELEMETRY_ENABLED", raising=False)
    with pytest.raises(RuntimeError, match="before any `import flwr`"):
        federated.use_offline_flower()


def _in_namespace(script: str, tmp_path: Path, timeout: float) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``script`` with this Python in a loopback-only namespace under strace; returns the process and trace."""
    path = tmp_path / "script.py"
    path.write_text(script)
    trace = tmp_path / "trace.txt"
    # Ray's socket paths must stay under 107 bytes: its temp folder gets a short name of its own
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "REPLBOOK_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path / "home"),
           "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT / "src")}
    (tmp_path / "home").mkdir()
    argv = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace), sys.executable,
            str(path)]
    try:
        proc = subprocess.run(federated.loopback_command(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=tmp_path)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return proc, trace.read_text() if trace.exists() else ""


@needs_namespace
@needs_strace
def test_the_chapter_runs_in_flowers_simulation_engine_on_loopback_only(tmp_path):
    script = textwrap.dedent(f'''\
        import json
        from replbook.federated import in_loopback_namespace
        assert in_loopback_namespace()
        from replbook.profiles import resolve
        from replbook.experiments import fedprophet as chapter
        P = resolve(chapter.PARAMS, "smoke", {TINY!r})
        r = chapter.run(P)
        assert isinstance(r, chapter.RESULTS)
        print("RESULT", json.dumps({{"arms": [x.arm for x in r.runs], "mus": [x.mu for x in r.runs],
                                    "eps": r.runs[-1].stage_eps,
                                    "val": [x.val["clean"] + x.val["pgd"] for x in r.runs]}}))
        ''')
    proc, trace = _in_namespace(script, tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["arms"] == ["jFAT", "cascade μ=0", "cascade μ=0.001", "FedProphet"]
    # FedProphet's μ: the cascade run's with the best validation score (the smaller μ on a tie)
    best = max(zip(out["val"][1:3], [-m for m in out["mus"][1:3]], out["mus"][1:3], strict=True))[2]
    assert out["mus"][-1] == best
    assert len(out["eps"]) >= 2 and all(e > 0 for e in out["eps"][1:])  # measured at every stage transition
    assert "connect(" in trace  # the trace worked: Ray and Flower talk over loopback
    assert outside_connects(trace) == []


@needs_namespace
@needs_strace
def test_the_same_apps_run_in_flowers_deployment_engine_on_loopback_only(tmp_path):
    results = tmp_path / "deployed.json"
    script = textwrap.dedent(f'''\
        import json
        from pathlib import Path
        from replbook.federated import local_federation, use_offline_flower
        use_offline_flower()
        from replbook.profiles import resolve
        from replbook.experiments import fedprophet as chapter
        from replbook.experiments.fedprophet.engine import Experiment, settings
        from replbook.experiments.fedprophet.flower_app import write_run_config
        from replbook.profiles import config
        # one arm, one round per module: every message starts a ClientApp process that imports torch
        P = resolve(chapter.PARAMS, "smoke", {{**{TINY!r}, "arms": ["fedprophet"], "mus": [0.0], "rounds": 3}})
        s = {{**settings(config(Experiment, P)), "results_path": {str(results)!r}}}
        app = Path(chapter.__file__).parent / "flwr_app"
        nodes = [f"partition-id={{i}} num-partitions={{s['n_clients']}}" for i in range(s["n_clients"])]
        with local_federation(app, nodes, flwr_home=Path("flwr_home")) as fed:
            proc = fed["run"](str(write_run_config(s, Path("run_config.toml").resolve())), timeout=400)
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            assert proc.returncode == 0, proc.returncode
        ''')
    proc, trace = _in_namespace(script, tmp_path, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(results.read_text())
    # the run went through our SuperLink and SuperNodes, not a simulation SuperLink that `flwr run` starts itself
    assert "StartRun" in (tmp_path / "flwr_home" / "logs" / "superlink.log").read_text()
    assert not list(tmp_path.rglob("local-superlink"))
    assert [r["arm"] for r in out["runs"]] == ["FedProphet"]
    assert sorted(out["nodes"]) == ["0", "1"]
    fed = out["runs"][0]
    assert set(fed["clients"]) == {"0", "1"} and len(fed["stage_eps"]) == 3 and fed["stage_eps"][1] > 0
    # DMA: the client with four module budgets and four times the speed took a prophet module in round 1
    assert len(fed["clients"]["1"][0]["modules"]) > len(fed["clients"]["0"][0]["modules"])
    assert "connect(" in trace
    assert outside_connects(trace) == []
    assert processes_with(str(tmp_path / "flwr_home")) == [], "processes of the federation were left running"
