"""FedProphet on Flower 1.42's Message API: the coordinator is a :class:`flwr.serverapp.strategy.Strategy`, the
clients a :class:`flwr.clientapp.ClientApp`. The same two apps run in Flower's simulation engine
(:func:`run_in_simulation`) and its deployment engine (``server_app`` / ``client_app`` below, named in this
folder's ``pyproject.toml`` for ``flwr run``).

Everything a run needs travels as one JSON ``settings`` dict: the simulation closes over it, the deployment engine
passes it as the run config ``settings``. The ServerApp runs every (seed, arm) of the settings one after another on
the same SuperNodes and writes the results JSON to ``settings["results_path"]``.

Each message carries a ConfigRecord ``task`` (JSON: the op, the arm, the modules the client trains, the radii) and an
ArrayRecord with only the entries the client needs (the frozen prefix, its modules and heads). Replies carry only
the trained entries; the server averages each entry over the clients that trained it (spec §2.6).
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replbook.federated import use_offline_flower

# Before flwr is imported where this module is imported first (the notebook, the CLI, the tests). Under the
# deployment engine, flwr-serverapp and flwr-clientapp import flwr before this module: there the environment comes
# from the SuperLink's and SuperNodes' parent (replbook.federated.local_federation), and this call only checks it.
use_offline_flower()

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import Strategy  # noqa: E402

from replbook import fedprophet as fp  # noqa: E402
from replbook.experiments.fedprophet import common  # noqa: E402
from replbook.experiments.fedprophet.data import build_atoms, load_data  # noqa: E402


def _state_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


@lru_cache(maxsize=2)
def _data(settings_json: str) -> dict[str, Any]:
    return load_data(json.loads(settings_json))


@lru_cache(maxsize=4)
def _plan(settings_json: str) -> dict[str, Any]:
    s = json.loads(settings_json)
    return common.plan(build_atoms(s), (s["batch_size"], *s["input_shape"]), s["num_classes"],
                       s["budget_fraction"], s["head_rule"], s["budget_bytes"])


def build_model(s: dict, seed: int) -> common.Cascade:
    """The cascade of the settings, initialised from ``seed``."""
    plan = _plan(_settings_key(s))
    torch.manual_seed(seed)
    return common.Cascade(build_atoms(s), plan["modules"], plan["out_shapes"], s["num_classes"], s["head_rule"])


def _settings_key(s: dict) -> str:
    """The settings the data and model depend on (not the run's bookkeeping), as a cache key."""
    return json.dumps({k: v for k, v in s.items() if k not in ("results_path",)}, sort_keys=True)


# ---------------------------------------------------------------------------------------------------------------
# The coordinator


class FedProphetStrategy(Strategy):
    """One arm at one seed. Holds the coordinator's state: the stage, each stage's input radius ε_m, APA's α and
    target ratio, the best model of the stage (selected on the server's validation split, never on test)."""

    def __init__(self, s: dict, arm: dict, seed: int, nodes: dict[int, int], model: common.Cascade):
        self.s, self.arm, self.seed, self.nodes = s, arm, seed, nodes  # nodes: partition id -> node id
        self.model = model
        self.plan = _plan(_settings_key(s))
        self.kind = arm["arm"]
        self.n_modules = 1 if self.kind == "jfat" else model.n_modules
        self.lengths = fp.stage_lengths(s["rounds"], self.n_modules)
        self.stage, self.stage_round, self.stage_eps = 0, 0, [0.0]
        self.stage_norm: list[float] = []  # mean ‖f_m(z)‖ of each finished stage m, read against ε_{m+1}
        self.alpha, self.target_ratio, self.ratios = 1.0, 1.0, []
        self.best: tuple[float, dict, float, float] | None = None  # score, state, clean/PGD ratio, α
        self.pending_measure = False
        self.log: list[dict] = []
        self.bytes_down = self.bytes_up = 0
        self.clients: dict[int, list[dict]] = {}  # partition id -> its per-round metrics

    def summary(self) -> None:
        pass

    # what each client trains this round
    def sampled(self, server_round: int) -> list[int]:
        """The partition ids that train this round: ``clients_per_round`` of them, drawn from the seed and round."""
        pids = sorted(self.nodes)
        k = self.s["clients_per_round"]
        if k >= len(pids):
            return pids
        rng = np.random.default_rng([self.seed, server_round])
        return sorted(rng.choice(pids, size=k, replace=False).tolist())

    def assignments(self, server_round: int) -> dict[int, list[int]]:
        """The modules each sampled client trains: all (jfat), the stage module (cascade, or fedprophet without
        DMA), or DMA's list by the client's memory budget (and speed)."""
        pids = self.sampled(server_round)
        if self.kind == "jfat":
            return {pid: list(range(self.model.n_modules)) for pid in pids}
        dma = self.arm.get("dma", self.s["dma"])  # an ablation arm may switch it off
        if self.kind == "cascade" or dma == "off":
            return {pid: [self.stage] for pid in pids}
        budget = self.plan["budget_bytes"]
        mem = [int(self.s["client_mem_multiples"][pid] * budget) for pid in pids]
        perf = [float(self.s["client_perf"][pid]) for pid in pids]
        lists = fp.assign_modules(self.stage, mem, perf, self.plan["module_bytes"], self.plan["module_macs"],
                                  by_flops=dma == "flops+memory")
        return dict(zip(pids, lists, strict=True))

    def _task(self, op: str, modules: list[int], server_round: int, alpha: float | None = None) -> dict:
        return {"settings": self.s, "op": op, "arm": self.kind, "seed": self.seed, "round": server_round,
                "modules": modules, "mu": self.arm.get("mu", 0.0), "psi": self.s["psi"],
                "alpha": self.alpha if alpha is None else alpha,
                "stage_eps": self.stage_eps[self.stage], "adversarial": server_round > self.s["warmup_rounds"]}

    def _message(self, pid: int, task: dict, keys: list[str], kind: str) -> Message:
        state = {k: v for k, v in self.model.state_dict().items() if k in set(keys)}
        self.bytes_down += _state_bytes(state)
        content = RecordDict({"arrays": ArrayRecord(state), "task": ConfigRecord({"json": json.dumps(task)})})
        return Message(content=content, dst_node_id=self.nodes[pid], message_type=kind)

    def _needed_keys(self, modules: list[int]) -> list[str]:
        if self.kind == "jfat":
            return self.model.keys(list(range(self.model.n_modules)), [])
        heads = common.trained_heads(self.model, modules[0], modules[-1], self.s["psi"])
        return self.model.keys(list(range(modules[-1] + 1)), heads)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        self.stage_round += 1
        return [self._message(pid, self._task("train", mods, server_round), self._needed_keys(mods),
                              MessageType.TRAIN) for pid, mods in self.assignments(server_round).items()]

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        states, weights = [], []
        for reply in _checked(replies):
            state = reply.content["arrays"].to_torch_state_dict()
            metrics = json.loads(reply.content["metrics"]["json"])
            self.bytes_up += _state_bytes(state)
            states.append(state)
            weights.append(metrics["n_samples"])
            self.clients.setdefault(metrics["pid"], []).append({**metrics, "stage": self.stage,
                                                                "round": server_round})
        merged = fp.partial_average(states, weights)
        self.model.load_state_dict({**self.model.state_dict(), **merged})
        self._validate(server_round)
        if self._stage_over(server_round):
            self.model.load_state_dict(self.best[1])  # the stage's best model on validation
            self.pending_measure = self.stage < self.n_modules - 1
        return ArrayRecord(self.model.state_dict()), MetricRecord({"stage": self.stage})

    def _stage_over(self, server_round: int) -> bool:
        return self.stage_round >= self.lengths[self.stage] or server_round == self.s["rounds"]

    def _validate(self, server_round: int) -> None:
        x, y = _data(_settings_key(self.s))["val"]
        upto = None if self.kind == "jfat" else self.stage
        r = common.evaluate(self.model, x, y, self.s["eps"], self.s["step"], self.s["val_steps"], upto=upto,
                            seed=self.seed)
        ratio = r["clean"] / max(r["pgd"], 1e-3)
        score = r["clean"] + self.target_ratio * r["pgd"]
        self.ratios.append(ratio)
        if self.kind == "fedprophet" and self.stage > 0 and self.arm.get("apa", self.s["apa"]):
            length = self.lengths[self.stage]
            every = max(1, int(0.1 * length))
            if self.stage_round >= max(1, math.ceil(0.05 * length)) and self.stage_round % every == 0:
                self.alpha = fp.apa_update(self.alpha, float(np.mean(self.ratios[-5:])), self.target_ratio,
                                           self.s["eps_quantile"])
        if self.best is None or score > self.best[0] or server_round <= self.s["warmup_rounds"]:
            self.best = (score, {k: v.clone() for k, v in self.model.state_dict().items()}, ratio, self.alpha)
        self.log.append({"round": server_round, "stage": self.stage, "alpha": self.alpha,
                         "stage_eps": self.stage_eps[self.stage], **{f"val_{k}": v for k, v in r.items()}})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> list[Message]:
        if not self.pending_measure:
            return []
        keys = self._needed_keys([self.stage])
        # the radius is measured at the α of the stage's best model, the one kept (spec §2.3)
        task = self._task("measure", [self.stage], server_round, alpha=self.best[3])
        return [self._message(pid, task, keys, MessageType.EVALUATE)
                for pid in self.sampled(server_round)]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if not self.pending_measure:
            return None
        total = norms = count = 0.0
        for reply in _checked(replies):
            m = json.loads(reply.content["metrics"]["json"])
            total, norms, count = total + m["displacement_sum"], norms + m["norm_sum"], count + m["count"]
        self.stage_norm.append(norms / count)
        self.pending_measure = False
        self.target_ratio = self.best[2]  # r*: the ratio of the previous stage's best model
        self.stage += 1
        self.stage_eps.append(total / count)
        self.stage_round, self.ratios, self.best = 0, [], None
        self.alpha = self.s["eps_quantile"]
        return MetricRecord({"next_eps": total / count})


def _checked(replies: Iterable[Message]) -> list[Message]:
    out = []
    for reply in replies:
        if reply.has_error():
            raise RuntimeError(f"a client failed: {reply.error.reason}")
        if "error" in reply.content.config_records:
            raise RuntimeError(f"a client failed:\n{reply.content['error']['json']}")
        out.append(reply)
    return out


def _find_nodes(grid: Grid, n_clients: int, timeout: float = 120.0) -> dict[int, int]:
    """Partition id -> node id, asked of every node (node ids are random; data and budgets follow partition ids)."""
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < n_clients:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(node_ids)} of {n_clients} SuperNodes connected within {timeout:.0f} s.")
        time.sleep(0.5)
    messages = [Message(content=RecordDict({"task": ConfigRecord({"json": json.dumps({"op": "whoami"})})}),
                        dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
    nodes = {}
    for reply in _checked(grid.send_and_receive(messages)):
        nodes[json.loads(reply.content["metrics"]["json"])["pid"]] = reply.metadata.src_node_id
    return nodes


def _select_mu(runs: list[dict], seed: int) -> float:
    """FedProphet's μ: the one whose cascade run at this seed scores best on the server's validation split
    (clean + PGD accuracy), never on test."""
    scored = [(r["val"]["clean"] + r["val"]["pgd"], -r["mu"], r["mu"]) for r in runs
              if r["seed"] == seed and r["kind"] == "cascade"]
    if not scored:
        raise RuntimeError("FedProphet's μ is selected among the cascade runs, but none ran at this seed.")
    return max(scored)[2]


def serve(grid: Grid, s: dict, progress: Callable[[dict], None] | None = None) -> dict:
    """Every (seed, arm) of the settings on the grid's nodes; returns (and writes) the results."""
    from replbook.attacks import strong_robust_accuracy

    nodes = _find_nodes(grid, s["n_clients"])
    data = _data(_settings_key(s))
    runs: list[dict] = []
    for seed in s["seeds"]:
        for arm in s["arms"]:
            start = time.perf_counter()
            if arm.get("mu") == "select":
                arm = {**arm, "mu": _select_mu(runs, seed)}
            model = build_model(s, seed)
            strategy = FedProphetStrategy(s, arm, seed, nodes, model)
            strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=s["rounds"], timeout=s["timeout"])
            x, y = data["test"]
            test = common.evaluate(model, x, y, s["eps"], s["test_step"], s["test_steps"], seed=seed)
            if s["strong_eval"]:
                n = min(s["strong_eval"], len(y))
                test["apgd"] = strong_robust_accuracy(model, x[:n], y[:n], s["eps"], "apgd", steps=50,
                                                      num_classes=s["num_classes"], seed=seed)
                test["pgd_same_images"] = common.evaluate(model, x[:n], y[:n], s["eps"], s["test_step"],
                                                          s["test_steps"], seed=seed)["pgd"]
            xv, yv = data["val"]
            val = common.evaluate(model, xv, yv, s["eps"], s["step"], s["val_steps"], seed=seed)
            runs.append({"seed": seed, "arm": arm["name"], "kind": arm["arm"], "mu": arm.get("mu", 0.0),
                         "test": test, "val": val, "log": strategy.log,
                         "clients": {str(k): v for k, v in strategy.clients.items()},
                         "stage_eps": strategy.stage_eps, "stage_norm": strategy.stage_norm,
                         "bytes_down": strategy.bytes_down,
                         "bytes_up": strategy.bytes_up, "seconds": time.perf_counter() - start})
            if progress is not None:
                progress(runs[-1])
    out = {"plan": {k: v for k, v in _plan(_settings_key(s)).items() if k != "out_shapes"},
           "nodes": {str(k): v for k, v in nodes.items()}, "runs": runs}
    if s.get("results_path"):
        Path(s["results_path"]).write_text(json.dumps(out))
    return out


def make_server_app(settings: dict | None = None, sink: dict | None = None,
                    progress: Callable[[dict], None] | None = None) -> ServerApp:
    """A ServerApp that runs :func:`serve` with ``settings`` (else the run config's JSON ``settings``); the results
    also go into ``sink["results"]`` when given (the simulation runs the ServerApp in this process)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings if settings is not None else json.loads(str(context.run_config["settings"]))
        results = serve(grid, s, progress)
        if sink is not None:
            sink["results"] = results

    return app


# ---------------------------------------------------------------------------------------------------------------
# The client

client_app = ClientApp()


def _reply(msg: Message, metrics: dict, state: dict | None = None) -> Message:
    content = RecordDict({"metrics": ConfigRecord({"json": json.dumps(metrics)})})
    if state is not None:
        content["arrays"] = ArrayRecord(state)
    return Message(content=content, reply_to=msg)


def _guarded(handler: Callable[[Message, Context], Message]) -> Callable[[Message, Context], Message]:
    """Report a client's exception in its reply (Flower's simulation can hang when a ClientApp raises, #4476)."""
    def wrapped(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except Exception:  # noqa: BLE001 - sent back to the server, which raises it
            return Message(content=RecordDict({"error": ConfigRecord({"json": traceback.format_exc()})}),
                           reply_to=msg)
    return wrapped


def _client_setup(msg: Message, context: Context):
    task = json.loads(str(msg.content["task"]["json"]))
    s = task.pop("settings")  # every task carries the run's settings: ClientApps run in other processes
    torch.set_num_threads(s["client_threads"])
    pid = int(context.node_config["partition-id"])
    data = _data(_settings_key(s))
    x, y = data["clients"][task["seed"]][pid]
    model = build_model(s, 0)
    model.load_state_dict({**model.state_dict(), **msg.content["arrays"].to_torch_state_dict()})
    return s, pid, task, model, x, y


@client_app.query()
@_guarded
def whoami(msg: Message, context: Context) -> Message:
    return _reply(msg, {"pid": int(context.node_config["partition-id"])})


@client_app.train()
@_guarded
def train(msg: Message, context: Context) -> Message:
    s, pid, task, model, x, y = _client_setup(msg, context)
    plan = _plan(_settings_key(s))
    cfg = {**{k: s[k] for k in ("eps", "step", "train_steps", "local_steps", "batch_size", "lr")}, **task}
    predicted = plan["full_bytes"] if task["arm"] == "jfat" else sum(plan["module_bytes"][m] for m in task["modules"])
    seed = task["seed"] * 1_000_003 + task["round"] * 101 + pid
    result = common.local_train(model, x, y, cfg, predicted, seed)
    metrics = {"pid": pid, "n_samples": result.n_samples, "peak_bytes": result.peak_bytes,
               "predicted_bytes": result.predicted_bytes, "seconds": result.seconds, "loss": result.loss,
               "modules": task["modules"]}
    return _reply(msg, metrics, result.state)


@client_app.evaluate()
@_guarded
def measure(msg: Message, context: Context) -> Message:
    s, pid, task, model, x, y = _client_setup(msg, context)
    cfg = {**{k: s[k] for k in ("eps", "step", "train_steps", "batch_size", "measure_samples")}, **task}
    total, norms, count = common.measure_displacement(model, x, y, task["modules"][0], cfg, task["seed"] * 7 + pid)
    return _reply(msg, {"pid": pid, "displacement_sum": total, "norm_sum": norms, "count": count})


server_app = make_server_app()  # the deployment engine's ServerApp: settings from the run config


def write_run_config(s: dict, path: Path) -> Path:
    """The run config file for ``flwr run <app> <connection> --run-config <path>``: ``settings`` as one TOML
    literal string holding the settings' JSON."""
    text = json.dumps(s, ensure_ascii=False)
    if "'" in text or "\n" in text:
        raise ValueError("the settings' JSON must not contain a single quote or a newline (TOML literal string).")
    path = Path(path)
    path.write_text(f"settings = '{text}'\n", encoding="utf-8")
    return path


def run_in_simulation(s: dict, progress: Callable[[dict], None] | None = None) -> dict:
    """All (seed, arm) runs of ``s`` in Flower's simulation engine, in this process (Ray actors as clients);
    ``progress(run)`` is called after each run."""
    import logging

    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)  # a line per round and message otherwise
    sink: dict = {}
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               # Ray on loopback: without a node address it learns one by a UDP connect towards 8.8.8.8
               "init_args": {"num_cpus": s["sim_cpus"], "include_dashboard": False, "logging_level": "ERROR",
                             "log_to_driver": False, "_node_ip_address": "127.0.0.1"}}
    run_simulation(server_app=make_server_app(s, sink, progress), client_app=client_app, num_supernodes=s["n_clients"],
                   backend_config=backend)
    if "results" not in sink:
        raise RuntimeError("the Flower simulation ended without results; see the log above.")
    return sink["results"]
