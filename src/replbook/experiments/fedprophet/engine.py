"""Run the chapter (every profile): the parameters become one settings dict, Flower's simulation engine runs every
(seed, arm) with the chapter's ServerApp and ClientApp, and the results are cached by the settings and the source of
the code that produced them (a rerun with nothing changed starts no simulation)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from replbook import attacks, fedprophet, measure
from replbook.cache import cache_key, code_version
from replbook.experiments.fedprophet import common, data, flower_app, miniature, paper
from replbook.experiments.fedprophet.data import input_shape
from replbook.federated import use_offline_flower
from replbook.models import cascade_cnn
from replbook.paths import cache_dir
from replbook.profiles import ParameterError
from replbook.progress import progress


@dataclass
class FedProphetResults:
    settings: dict[str, Any]
    plan: dict[str, Any]
    runs: list[dict[str, Any]]
    wall_s: float
    cached: bool


def arm_specs(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs per seed, in order: jFAT, one cascade per μ, then FedProphet (whose μ is selected among the
    cascade runs on validation when there are several) and its ablations without APA or without DMA."""
    specs: list[dict[str, Any]] = []
    if "jfat" in p["arms"]:
        specs.append({"name": "jFAT", "arm": "jfat"})
    if "cascade" in p["arms"]:
        specs += [{"name": f"cascade μ={mu:g}", "arm": "cascade", "mu": mu} for mu in p["mus"]]
    if "fedprophet" in p["arms"]:
        mu = "select" if len(p["mus"]) > 1 else p["mus"][0]
        specs.append({"name": "FedProphet", "arm": "fedprophet", "mu": mu})
        if p["ablate_apa"]:
            specs.append({"name": "FedProphet − APA", "arm": "fedprophet", "mu": mu, "apa": False})
        if p["ablate_dma"]:
            specs.append({"name": "FedProphet − DMA", "arm": "fedprophet", "mu": mu, "dma": "off"})
    return specs


def settings(p: dict[str, Any]) -> dict[str, Any]:
    """The JSON settings the Flower apps read (server and clients)."""
    shape, classes = input_shape(p)
    keep = ("dataset", "model", "width", "blocks", "batch_norm", "clients_per_round", "n_train", "n_val", "n_test",
            "split", "dirichlet_alpha", "rounds", "warmup_rounds", "local_steps", "batch_size", "lr", "eps", "step",
            "train_steps", "test_steps", "test_step", "val_steps", "strong_eval", "psi", "eps_quantile", "apa", "dma",
            "budget_fraction", "budget_bytes", "client_mem_multiples", "client_perf", "head_rule",
            "measure_samples", "sim_cpus")
    extra = {"image_size": p["image_size"]} if p["dataset"] == "caltech256" else {}  # unused by the others
    return {**{k: p[k] for k in keep}, **extra, "input_shape": list(shape), "num_classes": classes,
            "n_clients": p["clients"], "seeds": list(range(p["seeds"])), "arms": arm_specs(p), "data_seed": 0,
            "timeout": 3600, "client_threads": 1}


def _code() -> str:
    return code_version(fedprophet, attacks, measure, common, data, flower_app, miniature, paper, cascade_cnn)


def run_experiment(p: dict[str, Any]) -> FedProphetResults:
    """Every run of the parameters ``p``, from the cache when the same settings ran with the same code."""
    s = settings(p)
    path = cache_dir() / "fedprophet" / f"{cache_key(settings=s, code=_code())}.json"
    start = time.perf_counter()
    if path.exists():
        out = json.loads(path.read_text())
        return FedProphetResults(s, out["plan"], out["runs"], time.perf_counter() - start, True)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)
    return FedProphetResults(s, out["plan"], out["runs"], time.perf_counter() - start, False)
