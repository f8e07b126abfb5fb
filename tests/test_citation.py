"""What a reader who cites or reuses the book needs: a CITATION.cff valid against the Citation File Format 1.2.0
schema, listing the ten papers; the same edition named in CITATION.cff, CHANGELOG.md, the README's BibTeX and the
book's front page; and both licences named in LICENSE."""

import json
import re
from pathlib import Path

import jsonschema
import yaml

from replbook.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
#: The CFF 1.2.0 JSON schema (citation-file-format.github.io/1.2.0/schema.json, CC BY 4.0), as shipped in the
#: cffconvert 2.0.0 wheel; cffconvert itself pins jsonschema < 4, which the notebooks' stack cannot take.
SCHEMA = ROOT / "tests" / "data" / "cff-1.2.0.schema.json"


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_cff_is_valid_and_lists_the_ten_papers():
    doc = citation()
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    arxiv = {i["description"].removeprefix("arXiv:") for r in doc["references"] for i in r["identifiers"]}
    assert arxiv == {c.arxiv for c in CHAPTERS}
    assert doc["license"] == ["MIT", "CC-BY-4.0"]


def test_the_schema_check_catches_a_broken_file():
    doc = citation()
    del doc["authors"]
    try:
        jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    except jsonschema.ValidationError as err:
        assert "authors" in err.message
    else:
        raise AssertionError("a CITATION.cff without authors passed the schema")


def test_one_edition_everywhere():
    doc = citation()
    version, date = doc["version"], doc["date-released"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(r"^## Edition (\S+) \((\S+)\)", changelog, re.M).groups() == (version, date), \
        "the newest edition in CHANGELOG.md is CITATION.cff's version"
    assert f"version = {{{version}}}" in (ROOT / "README.md").read_text()
    assert f"*Edition {version} ({date})" in (ROOT / "book" / "intro.md").read_text()


def test_licence_names_what_each_licence_covers():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "CC BY 4.0" in text and "creativecommons.org/licenses/by/4.0" in text
