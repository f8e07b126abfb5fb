"""Run the chapter (every profile): the experiment's settings become one JSON settings dict (it crosses process
boundaries: Flower's ServerApp and ClientApps read it), Flower's simulation engine runs every (seed, arm) with the
chapter's ServerApp and ClientApp, and the server's output becomes the chapter's results type. Results are saved and
reused by :func:`replbook.results.compute` (by the compute key), so nothing is cached here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from replbook.experiments.fedprophet import flower_app
from replbook.experiments.fedprophet.common import ArmRun, ClientRounds, FedProphetResults, Plan, RoundLog
from replbook.experiments.fedprophet.data import input_shape
from replbook.federated import use_offline_flower
from replbook.profiles import ParameterError
from replbook.progress import progress


@dataclass(frozen=True)
class Experiment:
    """Every parameter the Flower apps read (the chapter's parameters of the same names)."""

    arms: list[str]
    mus: list[float]
    ablate_apa: bool
    ablate_dma: bool
    seeds: int
    clients: int
    dataset: str
    model: str
    image_size: int
    width: int
    blocks: int
    batch_norm: bool
    clients_per_round: int
    n_train: int
    n_val: int
    n_test: int
    split: str
    dirichlet_alpha: float
    rounds: int
    warmup_rounds: int
    local_steps: int
    batch_size: int
    lr: float
    eps: float
    step: float
    train_steps: int
    test_steps: int
    test_step: float
    val_steps: int
    strong_eval: int
    psi: float
    eps_quantile: float
    apa: bool
    dma: str
    budget_fraction: float
    budget_bytes: int
    client_mem_multiples: list[float]
    client_perf: list[float]
    head_rule: str
    measure_samples: int
    sim_cpus: int


#: The fields of :class:`Experiment` the settings dict carries as they are.
KEEP = ("dataset", "model", "width", "blocks", "batch_norm", "clients_per_round", "n_train", "n_val", "n_test",
        "split", "dirichlet_alpha", "rounds", "warmup_rounds", "local_steps", "batch_size", "lr", "eps", "step",
        "train_steps", "test_steps", "test_step", "val_steps", "strong_eval", "psi", "eps_quantile", "apa", "dma",
        "budget_fraction", "budget_bytes", "client_mem_multiples", "client_perf", "head_rule", "measure_samples",
        "sim_cpus")


def arm_specs(arms: list[str], mus: list[float], ablate_apa: bool, ablate_dma: bool) -> list[dict[str, Any]]:
    """The runs per seed, in order: jFAT, one cascade per μ, then FedProphet (whose μ is selected among the
    cascade runs on validation when there are several) and its ablations without APA or without DMA."""
    specs: list[dict[str, Any]] = []
    if "jfat" in arms:
        specs.append({"name": "jFAT", "arm": "jfat"})
    if "cascade" in arms:
        specs += [{"name": f"cascade μ={mu:g}", "arm": "cascade", "mu": mu} for mu in mus]
    if "fedprophet" in arms:
        mu = "select" if len(mus) > 1 else mus[0]
        specs.append({"name": "FedProphet", "arm": "fedprophet", "mu": mu})
        if ablate_apa:
            specs.append({"name": "FedProphet − APA", "arm": "fedprophet", "mu": mu, "apa": False})
        if ablate_dma:
            specs.append({"name": "FedProphet − DMA", "arm": "fedprophet", "mu": mu, "dma": "off"})
    return specs


def settings(e: Experiment) -> dict[str, Any]:
    """The JSON settings the Flower apps read (server and clients)."""
    shape, classes = input_shape({"dataset": e.dataset, "image_size": e.image_size})
    extra = {"image_size": e.image_size} if e.dataset == "caltech256" else {}  # unused by the others
    return {**{k: getattr(e, k) for k in KEEP}, **extra, "input_shape": list(shape), "num_classes": classes,
            "n_clients": e.clients, "seeds": list(range(e.seeds)),
            "arms": arm_specs(e.arms, e.mus, e.ablate_apa, e.ablate_dma), "data_seed": 0, "timeout": 3600,
            "client_threads": 1}


def client_rounds(clients: dict[str, list[dict[str, Any]]]) -> ClientRounds:
    """The server's per-client lists of round metrics (partition id → [metrics per round]) as columns, in the order
    the server recorded them."""
    rows = [m for ms in clients.values() for m in ms]
    column = lambda key, dtype: np.array([m[key] for m in rows], dtype=dtype)  # noqa: E731
    return ClientRounds(pid=column("pid", np.int64), round=column("round", np.int64), stage=column("stage", np.int64),
                        first_module=np.array([m["modules"][0] for m in rows], dtype=np.int64),
                        n_modules=np.array([len(m["modules"]) for m in rows], dtype=np.int64),
                        peak_bytes=column("peak_bytes", np.int64),
                        predicted_bytes=column("predicted_bytes", np.int64), seconds=column("seconds", np.float64))


def round_log(log: list[dict[str, Any]]) -> RoundLog:
    """The server's per-round log as columns."""
    column = lambda key, dtype: np.array([e[key] for e in log], dtype=dtype)  # noqa: E731
    return RoundLog(round=column("round", np.int64), stage=column("stage", np.int64),
                    alpha=column("alpha", np.float64), stage_eps=column("stage_eps", np.float64),
                    val_clean=column("val_clean", np.float64), val_pgd=column("val_pgd", np.float64))


def results_of(s: dict[str, Any], out: dict[str, Any]) -> FedProphetResults:
    """The chapter's results from the settings ``s`` and the ServerApp's output (:func:`flower_app.serve`)."""
    plan = out["plan"]
    runs = [ArmRun(seed=r["seed"], arm=r["arm"], kind=r["kind"], mu=float(r["mu"]), test=dict(r["test"]),
                   val=dict(r["val"]), stage_eps=list(r["stage_eps"]), stage_norm=list(r["stage_norm"]),
                   bytes_down=r["bytes_down"], bytes_up=r["bytes_up"], seconds=r["seconds"],
                   log=round_log(r["log"]), clients=client_rounds(r["clients"]))
            for r in out["runs"]]
    return FedProphetResults(s, Plan([list(m) for m in plan["modules"]], plan["full_bytes"], plan["budget_bytes"],
                                     list(plan["module_bytes"]), list(plan["module_macs"]),
                                     [tuple(a) for a in plan["atoms"]]), runs)


def run_experiment(s: dict[str, Any]) -> FedProphetResults:
    """Every (seed, arm) run of the settings ``s`` in Flower's simulation engine."""
    use_offline_flower()
    n_modules = len(flower_app._plan(flower_app._settings_key(s))["modules"])
    if any(a["arm"] != "jfat" for a in s["arms"]) and s["rounds"] < n_modules:
        raise ParameterError(f"parameter 'rounds' ({s['rounds']}) is below the {n_modules} modules the budget "
                             f"makes: every module needs at least one round; raise 'rounds' or the budget.")
    bar = progress(total=len(s["seeds"]) * len(s["arms"]), desc="FedProphet runs (seed × arm)")

    def tick(run: dict) -> None:
        bar.set_postfix_str(f"seed {run['seed']} {run['arm']}: clean {run['test']['clean']:.2f}, "
                            f"PGD {run['test']['pgd']:.2f}")
        bar.update(1)

    out = flower_app.run_in_simulation(s, tick)
    bar.close()
    return results_of(s, out)
