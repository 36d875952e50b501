"""End to end in headless Chromium: start the web demo, ask, see an answer with its passages and timings.

Uses the real packaged model and generator on five shipped documents. Needs Debian's chromium
(apt-get install -y chromium) and Playwright for Python (pip install -e '.[demo]'); never downloads a
browser. The screenshot lands in outputs/demo.png (ignored by git).
"""

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO / "outputs" / "demo.png"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install -y chromium); skipping the browser test", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[demo]' for Playwright").sync_playwright


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    for topic in ("with", "for", "pass", "class", "while"):  # 10 chunks
        shutil.copy(REPO / "demos" / "docs_corpus" / "python_topics" / f"{topic}.md", docs)
    yield from run_demo(["--docs", str(docs)])


@pytest.fixture(scope="module")
def company_url(tmp_path_factory):
    from demos.sample_company import make_company_folder

    folder = make_company_folder(tmp_path_factory.mktemp("northwind"))
    yield from run_demo(["--docs", str(folder), "--users", str(folder / "users.json")])


def run_demo(arguments):
    port = free_port()
    command = [
        sys.executable, "-m", "demos.docqa", *arguments, "--port", str(port), "--no-browser",
        "--index-path", ":memory:", "--k", "8", "--max-new-tokens", "32",
    ]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}  # proves it runs offline
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout], daemon=True).start()
    deadline, seen = time.monotonic() + 120, []
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if server.poll() is not None:
                    break
                continue
            seen.append(line)
            if "ResRank demo ready: open " in line:
                url = line.split("open ", 1)[1].split()[0]
                break
        else:
            url = None
        if server.poll() is not None or not url:
            pytest.fail("the demo server did not start:\n" + "".join(seen[-30:]))
        for _ in range(50):  # the URL is printed just before uvicorn binds the port
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_browser_asks_and_sees_answer_passages_order_and_timings(demo_url):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(demo_url)
        page.wait_for_function("document.getElementById('info').textContent.includes('chunks')")
        page.fill("#question", "What does the with statement do?")
        page.click("#send")
        page.wait_for_selector("#timings .stage[data-stage='generate']", timeout=60_000)

        assert page.inner_text("#answer").strip()
        assert page.locator("#passages .passage").count() == 3
        assert page.inner_text("#passage-1").startswith("[1] ")
        links = page.locator("#answer a.cite")
        assert links.count() >= 1, page.inner_text("#answer")  # written by the 135M model or attributed
        for i in range(links.count()):
            assert page.locator(links.nth(i).get_attribute("href")).count() == 1
        assert page.inner_text("#cite-note")
        stages = page.locator("#timings .stage").evaluate_all("nodes => nodes.map(n => n.dataset.stage)")
        assert stages == ["retrieve", "rerank", "generate", "cite"]
        assert "ms" in page.inner_text("#timings")
        rows = page.locator("#order tbody tr")
        assert rows.count() == 8
        resrank_ranks = sorted(int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(8))
        assert resrank_ranks == list(range(1, 9))
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000

        page.click("#mode-chat")
        page.fill("#question", "What does the with statement do?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('#turns .turn').length === 2", timeout=60_000)
        page.fill("#question", "and the for statement?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('#turns .turn').length === 4", timeout=60_000)
        assert "Searched for: What does the with statement do? and the for statement?" in page.inner_text("#search-query")
        browser.close()


def test_browser_page_citations_and_a_restricted_document(company_url):
    """Mixed PDF/DOCX/HTML/Markdown folder with access lists: citations name the file and page, a source
    link opens the file, and Bob (staff) never sees the HR-only salary bands that Alice (hr) gets."""
    from demos.sample_company import SALARY_SECRET

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(company_url)
        page.wait_for_selector("#user-box:not([hidden])")
        assert page.locator("#problems li").count() == 5  # corrupt, encrypted, scanned, empty: per-file results

        page.select_option("#user", "bob")
        page.fill("#question", SALARY_SECRET)
        page.click("#send")
        page.wait_for_selector("#timings .stage[data-stage='generate']", timeout=60_000)
        shown = page.inner_text("#passages") + page.inner_text("#order")
        assert "salary-bands" not in shown and "142,000" not in shown

        page.select_option("#user", "alice")
        page.fill("#question", SALARY_SECRET)
        page.click("#send")
        page.wait_for_function("document.getElementById('passages').textContent.includes('salary-bands-2027.pdf p. 2')", timeout=60_000)
        link = page.locator("#passages a.source", has_text="salary-bands-2027.pdf p. 2").first
        assert link.get_attribute("href") == "/api/source/hr/salary-bands-2027.pdf?user=alice#page=2"
        if page.locator("#sources .cited-source").count():
            assert " p. " in page.inner_text("#sources") or "§" in page.inner_text("#sources")
        page.screenshot(path=str(SCREENSHOT.with_name("document-qa.png")), full_page=True)
        assert page.request.get(company_url.rstrip("/") + "/api/source/hr/salary-bands-2027.pdf?user=bob").status == 404
        browser.close()
