"""The rendered book in a real browser: the smoke book is rendered in a sandbox copy of the project from the smoke
results computed once per session (``REPLBOOK_RENDER_ONLY``: a miss fails), then every page of the table of contents
is opened in Debian's headless Chromium (driven by Playwright). Each chapter page must show
its figures and its paper-vs-ours table, no error output or broken glue, rendered equations, and load nothing from
outside the machine. Screenshots land in _build/screenshots/."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from replbook.chapters import CHAPTERS, landed_chapters
from replbook.verdicts import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Keep the browser on this machine: every host but loopback fails to resolve and any proxied request goes to a
# closed local port, so neither the page nor Chromium's own background services can reach the network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
]

pytestmark = [
    pytest.mark.book,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)"),
]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def html_root(tmp_path_factory) -> Path:
    """Render the smoke book in a copy of the project from the session's smoke results, so the developer's own book
    (cpu profile) is untouched and nothing is computed twice."""
    from conftest import ensure_smoke_results

    results = ensure_smoke_results()
    sandbox = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, sandbox / name)
    for folder in ("notebooks", "data_manifests", "data", "benchmarks"):
        shutil.copytree(ROOT / folder, sandbox / folder)
    # the API reference is generated from the package's source
    shutil.copytree(ROOT / "src" / "replbook", sandbox / "src" / "replbook",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "book", sandbox / "book", ignore=shutil.ignore_patterns("chapters"))
    for ch in landed_chapters():
        (sandbox / "results" / ch.slug).mkdir(parents=True)
        for suffix in (".json", ".npz"):
            shutil.copy(results / ch.slug / f"smoke{suffix}", sandbox / "results" / ch.slug / f"smoke{suffix}")
    # What a developer's tree holds after `make test`: the build must not warn about it (warnings are errors).
    (sandbox / ".pytest_cache").mkdir()
    (sandbox / ".pytest_cache" / "README.md").write_text("# pytest cache directory\n")
    env = {**os.environ, "REPLBOOK_ROOT": str(sandbox), "REPLBOOK_CACHE": str(sandbox / "cache")}
    proc = subprocess.run([sys.executable, "-m", "replbook", "build", "--profile", "smoke", "--render-only"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "minkpp       results current, rendered in" in proc.stdout
    assert not (sandbox / "cache" / "models").exists()  # rendering trained nothing
    # A second build with nothing changed renders no chapter again.
    again = subprocess.run([sys.executable, "-m", "replbook", "build", "--profile", "smoke", "--render-only"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "minkpp       results current, page current" in again.stdout
    return sandbox / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def open_page(browser, html_root: Path, toc_file: str):
    """Open one page; return it with the list of URLs it requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((html_root / f"{toc_file}.html").as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{toc_file.replace('/', '_')}.png"), full_page=True)
    return page, requests


@pytest.mark.parametrize("toc_file", toc_files())
def test_every_page_loads_only_local_files_and_shows_no_error(browser, html_root, toc_file):
    page, requests = open_page(browser, html_root, toc_file)
    outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:", "about:"))]
    assert not outside, f"{toc_file} requested {outside}"
    text = page.inner_text("main")
    assert page.title()
    assert "Traceback" not in text and "{glue" not in text
    assert page.locator(".output.error, .output.traceback, .output.stderr").count() == 0
    page.close()


@pytest.mark.parametrize("slug", [c.slug for c in landed_chapters()])
def test_chapter_page_shows_figures_claims_table_and_equations(browser, html_root, slug):
    page, _ = open_page(browser, html_root, f"book/chapters/{slug}")
    page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=15000)
    images = page.locator("main img")
    assert images.count() >= 1
    for i in range(images.count()):  # every figure actually decoded
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", images.nth(i).element_handle())
    assert page.locator("table.premises-table").count() == 1  # the premises, measured, before the claims
    sources = page.locator("p.source-links a")
    assert sources.count() >= 3  # the notebook, the kernel module(s), the experiment package
    for link in sources.all():
        assert (html_root / "book" / "chapters" / link.get_attribute("href")).resolve().exists()
    table = page.locator("table.claims-table")
    assert table.count() == 1
    headers = [h.strip() for h in table.locator("thead th").all_inner_texts()]
    assert headers == ["claim", "paper", "source", "ours", "profile", "verdict", "reason"]
    verdict_col = headers.index("verdict")
    rows = table.locator("tbody tr")
    assert rows.count() >= 3
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(verdict_col).inner_text().strip() in VERDICTS
        assert rows.nth(i).locator("td").first.locator("span[id^='claim-']").count() == 1  # the dashboard's anchor
    page.close()


@pytest.mark.parametrize("slug", [c.slug for c in landed_chapters()])
def test_chapter_page_opens_with_its_title_and_ends_with_a_run_record(browser, html_root, slug):
    page, _ = open_page(browser, html_root, f"book/chapters/{slug}")
    main = page.locator("main")
    first = main.locator("h1, h2, .cell_output, pre").first
    assert first.evaluate("e => e.tagName") == "H1", "the page opens with the title, not the parameters"
    assert "profile: str" not in main.inner_text() and "injected" not in main.inner_text().lower()
    panels = main.locator("details.replbook-panel")
    assert panels.count() == 2
    assert "Parameters of this run" in panels.first.locator("summary").inner_text()
    assert panels.first.get_attribute("open") is None  # collapsed
    panels.first.locator("summary").click()
    assert panels.first.locator("table.parameters-table tbody tr").count() >= 5
    record = panels.last
    assert record.locator("summary").inner_text().startswith("Run record")
    record.locator("summary").click()
    text = record.inner_text()
    for field in ("computed at commit", "compute key", "device", "compute wall time", "torch", "transformers",
                  "diffusers", "peft", "flwr"):
        assert field in text
    href = record.locator("a.results-json").get_attribute("href")
    target = (html_root / "book" / "chapters" / href).resolve()
    assert target.exists() and json.loads(target.read_text())["slug"] == slug
    page.close()


def test_verdict_dashboard_lists_every_landed_chapter_and_every_link_resolves(browser, html_root):
    page, _ = open_page(browser, html_root, "book/verdicts")
    overview = page.locator("table.verdicts-overview")
    assert overview.count() == 1
    chapters = {r.get_attribute("data-chapter") for r in overview.locator("tbody tr").all()}
    assert chapters == {c.slug for c in landed_chapters()}
    chips = overview.locator("a.verdict-chip")
    assert chips.count() >= 3 * len(chapters)
    for chip in chips.all():
        assert chip.get_attribute("data-verdict") in VERDICTS
    image = page.locator("main img").first
    assert page.evaluate("img => img.complete && img.naturalWidth > 0", image.element_handle())
    reasons = page.locator("details.verdicts-chapter")
    assert reasons.count() == len(chapters) and reasons.first.get_attribute("open") is None  # collapsed
    reasons.first.locator("summary").click()
    assert reasons.first.locator("table.verdicts-table tbody tr").count() >= 3
    links = page.locator("a.claim-link")
    assert links.count() == chips.count()
    targets = {}
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        path, anchor = href.split("#")
        targets.setdefault(path, []).append(anchor)
    for path, anchors in targets.items():
        target = browser.new_page()
        target.goto((html_root / "book" / path).as_uri(), wait_until="load")
        for anchor in anchors:
            assert target.locator(f"[id='{anchor}']").count() == 1, f"{path}#{anchor} does not resolve"
        target.close()
    text = page.inner_text("main")
    for ch in CHAPTERS:
        if not ch.landed:
            assert ch.slug in text  # a line per pending chapter
    page.close()


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""
    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_the_books_colours_are_readable_in_the_themes_dark_mode(browser, html_root):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page.goto((html_root / "book" / "chapters" / "minkpp.html").as_uri(), wait_until="load")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    page.wait_for_timeout(300)
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "dark_book_chapters_minkpp.png"), full_page=False)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    cells = page.locator("table.claims-table tbody td:nth-child(6)")  # the verdict column, coloured
    assert cells.count() >= 3
    for cell in cells.all():
        fg, bg = cell.evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]")
        assert _contrast(fg, bg) >= 4.5, f"verdict cell {cell.inner_text()!r}: {fg} on {bg}"
    body = page.locator("main p").first
    fg = body.evaluate("e => getComputedStyle(e).color")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _contrast(fg, bg) >= 4.5, "the theme's own text in dark mode"
    page.close()


def test_the_api_reference_renders_every_kernel_module_from_its_source(browser, html_root):
    page, _ = open_page(browser, html_root, "book/api")
    listed = {code.strip() for code in page.locator("table code").all_inner_texts()}
    assert {"replbook.minkpp", "replbook.osr", "replbook.verdicts"} <= listed
    for module in sorted(listed):
        name = module.split(".", 1)[1]
        assert (html_root / "book" / "api" / "replbook" / name / "index.html").exists(), module
    kernel, _ = open_page(browser, html_root, "book/api/replbook/minkpp/index")
    # a kernel's signature and its docstring (with the equation named) are on its page
    entry = kernel.locator('dt[id="replbook.minkpp.minkpp_token_scores"]')
    assert entry.count() == 1
    assert "Min-K%++" in kernel.locator('dt[id="replbook.minkpp.minkpp_token_scores"] + dd').inner_text()
