"""The SMG-Learning paper profile on generated data in the paper sets' layouts: prostate NIfTI volumes (nibabel) and
fundus PNG crops, the reader (slices, labels, split, checksums) and ``run_paper`` end to end. Nothing is downloaded."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from replbook.assets import AssetError, AssetUnavailable, ChecksumMismatch
from replbook.data import smg_sites
from replbook.experiments import smg as experiment
from replbook.experiments.smg import common, paper
from replbook.profiles import ParameterError, config, resolve

SIDE, DEPTH = 16, 5


def write_index(folder):
    files = sorted([*folder.rglob("*.nii.gz"), *folder.rglob("*.png")])
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}" for p in files]
    (folder / smg_sites.INDEX).write_text("\n".join(lines) + "\n")


def write_prostate(root, sites=("RUNMC", "BMC", "I2CVB"), cases=3):
    """Volumes SIDE × SIDE × DEPTH whose intensity grows with the case; prostate in slices 1 and 3 only. BMC names
    its masks '_Segmentation' (both spellings occur in the release)."""
    folder = root / "prostate"
    for site in sites:
        (folder / site).mkdir(parents=True)
        for c in range(cases):
            rng = np.random.default_rng(c)
            volume = rng.uniform(0, 100 * (c + 1), (SIDE, SIDE, DEPTH)).astype(np.float32)
            mask = np.zeros((SIDE, SIDE, DEPTH), np.uint8)
            mask[4:9, 5:10, 1] = 1
            mask[6:8, 6:12, 3] = 2  # any value > 0 is prostate
            suffix = "_Segmentation" if site == "BMC" else "_segmentation"
            nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / site / f"Case{c:02d}.nii.gz")
            nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / site / f"Case{c:02d}{suffix}.nii.gz")
    write_index(folder)
    return folder


def write_fundus(root, sites=("Domain1", "Domain2", "Domain3")):
    """RGB crops of 20 × 20 and masks with the DoFE grey levels: cup 0 (rows 8–11), rim 128 (rows 4–15), else 255."""
    folder = root / "fundus"
    for site in sites:
        for split, n in (("train", 3), ("test", 2)):
            for sub in ("image", "mask"):
                (folder / site / split / "ROIs" / sub).mkdir(parents=True)
            for i in range(n):
                rgb = np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
                mask = np.full((20, 20), 255, np.uint8)
                mask[4:16, 4:16] = 128
                mask[8:12, 8:12] = 0
                Image.fromarray(rgb).save(folder / site / split / "ROIs" / "image" / f"g{i}.png")
                Image.fromarray(mask).save(folder / site / split / "ROIs" / "mask" / f"g{i}.png")
    write_index(folder)
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    write_prostate(tmp_path)
    write_fundus(tmp_path)
    monkeypatch.setenv("REPLBOOK_SMG_DATA", str(tmp_path))
    return tmp_path


def test_prostate_site_slices_split_and_ranges(data_root):
    data = smg_sites.load_site("prostate", "BMC", 8)
    assert data.train_cases == ["Case00", "Case01"] and data.test_cases == ["Case02"]  # the last fifth, at least one
    assert data.train_images.shape == (4, 1, 8, 8) and data.test_images.shape == (2, 1, 8, 8)  # slices 1 and 3
    assert data.train_images.min() >= -1 and data.train_images.max() <= 1
    assert set(data.train_labels.unique().tolist()) == {0, 1}  # label 2 in the mask is prostate too
    full = smg_sites.load_site("prostate", "RUNMC", SIDE)
    assert full.train_labels[0, 4:9, 5:10].eq(1).all() and full.train_labels[0].sum() == 25


def test_volume_slices_scale_each_volume_and_keep_prostate_slices():
    volume = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    mask = np.zeros((2, 2, 3))
    mask[0, 0, 2] = 1
    images, labels = smg_sites.volume_slices(volume, mask, "v")
    assert images.shape == (1, 1, 2, 2) and labels.tolist() == [[[1, 0], [0, 0]]]
    assert images.min() >= -1 and images.max() <= 1
    with pytest.raises(AssetError, match="same grid"):
        smg_sites.volume_slices(volume, np.zeros((2, 2, 4)), "v")


def test_case_split_rule():
    assert smg_sites.case_split(["b", "a", "c", "d", "e", "f"]) == (["a", "b", "c", "d"], ["e", "f"])
    assert smg_sites.case_split(["a", "b"]) == (["a"], ["b"])
    with pytest.raises(AssetError, match="at least two cases"):
        smg_sites.case_split(["a"])


def test_fundus_site_labels_and_split(data_root):
    data = smg_sites.load_site("fundus", "Domain2", 20)
    assert data.train_images.shape == (3, 3, 20, 20) and data.test_images.shape == (2, 3, 20, 20)
    lab = data.train_labels[0]
    assert lab[9, 9] == 1 and lab[5, 5] == 2 and lab[0, 0] == 0
    assert smg_sites.fundus_labels(np.array([[0, 100, 128, 200, 255]])).tolist() == [[1, 2, 2, 0, 0]]


def test_altered_unlisted_and_lonely_files_are_named(data_root):
    folder = data_root / "prostate"
    (folder / "RUNMC" / "Case09.nii.gz").write_bytes(b"x")
    with pytest.raises(AssetError, match="does not list 1 file"):
        smg_sites.load_site("prostate", "RUNMC", 8)
    write_index(folder)
    with pytest.raises(AssetError, match="Case09"):  # a volume without a mask
        smg_sites.load_site("prostate", "RUNMC", 8)
    (folder / "RUNMC" / "Case09.nii.gz").unlink()
    write_index(folder)
    target = folder / "BMC" / "Case00.nii.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="Case00.nii.gz"):
        smg_sites.load_site("prostate", "BMC", 8)
    with pytest.raises(AssetUnavailable, match="lists no file of site 'HK'"):
        smg_sites.load_site("prostate", "HK", 8)


def test_paper_sites_must_belong_to_the_dataset():
    with pytest.raises(ParameterError, match="not sites of dataset 'prostate'"):
        resolve(experiment.PARAMS, "paper", {"seen": ["RUNMC", "Domain1"]}, check_assets=False)
    with pytest.raises(ParameterError, match="not sites of dataset 'phantoms'"):
        resolve(experiment.PARAMS, "smoke", {"unseen": ["HK"]})


def setups(p):
    return config(common.SMDSetup, p), config(common.ArmSetup, p), config(common.Schedule, p)


def paper_params(**overrides):
    """The paper profile at smoke scale: three prostate sites, three arms, one seed."""
    smoke = dict(experiment.PARAMS.defaults["smoke"])
    for key in ("dataset", "seen", "unseen", "n_train", "n_test"):
        smoke.pop(key)
    base = {**smoke, "seen": ["RUNMC", "BMC"], "unseen": ["I2CVB"], "size": SIDE, "seeds": 1,
            "arms": ["sequential fine-tuning", "SMD replay", "SMG (SMD + PGA)"], "gen_steps": 2, "seg_steps": 2,
            "n_replay": 2, "sample_steps": 2, "threads": 1}
    return resolve(experiment.PARAMS, "paper", {**base, **overrides}, check_assets=True)


def test_run_paper_end_to_end(data_root, tmp_cache):
    p = paper_params()
    assert p["dataset"] == "prostate" and p["size"] == SIDE
    out = experiment.run(p)
    assert [s.name for s in out.seen] == ["RUNMC", "BMC"]
    arms = out.seeds[0]
    assert list(arms) == p["arms"]
    for r in arms.values():
        assert len(r.dice) == 2 and sorted(r.dice[-1]) == ["BMC", "I2CVB", "RUNMC"]
        assert len(r.dice[-1]["I2CVB"]) == 2  # the test case's two prostate slices
    assert out.replayed["RUNMC"].shape == (2, SIDE, SIDE) and out.real["RUNMC"].shape == (2, SIDE, SIDE)
    assert out.prior["RUNMC"].shape == (len(arms["SMG (SMD + PGA)"].dice[-1]["RUNMC"]),)
    # the protocol's own output (loaded from the cache) holds the generator's replay and the loaded study
    run = paper.run_paper(*setups(p), p["dataset"], p["seen"], p["unseen"])
    assert run.smd.banks[0].images.shape == (2, 1, SIDE, SIDE) and torch.is_tensor(run.study.seen[0].train_images)


def test_paper_fundus_runs_with_three_channels(data_root, tmp_cache):
    p = paper_params(dataset="fundus", seen=["Domain1", "Domain2"], unseen=["Domain3"], size=8)
    out = experiment.run(p)
    assert out.replayed["Domain1"].shape == (2, 8, 8, 3)  # colour images, shown as RGB
    assert sorted(out.seeds[0]["SMG (SMD + PGA)"].dice[-1]) == ["Domain1", "Domain2", "Domain3"]
    run = paper.run_paper(*setups(p), p["dataset"], p["seen"], p["unseen"])
    assert run.study.channels == 3 and run.study.n_labels == 3
    assert run.smd.banks[0].images.shape == (2, 3, 8, 8)
