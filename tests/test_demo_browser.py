"""End to end in headless Chromium: start the web demo, ask, see the extractive answer highlighted in its
passage at once and the generated answer after it, with passages and timings; rate a passage 👍 and find
the rating in the demo's feedback file; and fail to rate what another user was shown.

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
def demo_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feedback") / "feedback.sqlite"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory, demo_db):
    docs = tmp_path_factory.mktemp("docs")
    for topic in ("with", "for", "pass", "class", "while"):  # 10 chunks
        shutil.copy(REPO / "demos" / "docs_corpus" / "python_topics" / f"{topic}.md", docs)
    yield from run_demo(["--docs", str(docs), "--feedback-db", str(demo_db)])


@pytest.fixture(scope="module")
def company_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("company-feedback") / "feedback.sqlite"


@pytest.fixture(scope="module")
def company_url(tmp_path_factory, company_db):
    from demos.sample_company import make_company_folder

    folder = make_company_folder(tmp_path_factory.mktemp("northwind"))
    yield from run_demo(["--docs", str(folder), "--users", str(folder / "users.json"), "--feedback-db", str(company_db)])


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


def post_from_page(page, path: str, body: dict) -> int:
    """The status of a JSON POST made by the page itself (its origin, its cookies)."""
    return page.evaluate("""async ([path, body]) => (await fetch(path, {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})).status""", [path, body])


def test_browser_asks_and_sees_answer_passages_order_and_timings(demo_url, demo_db):
    from resrank_rag.feedback import FeedbackStore

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(demo_url)
        page.wait_for_function("document.getElementById('info').textContent.includes('chunks')")
        held = []  # hold the generation request: the extractive answer must be on the page before it ends
        page.route("**/api/generate", lambda route: held.append(route))
        page.fill("#question", "What does the with statement do?")
        page.click("#send")
        page.wait_for_selector("#extractive blockquote.extract", timeout=30_000)
        page.wait_for_function("document.getElementById('answer').textContent.includes('Generating')")
        sentence = page.inner_text("#extractive blockquote.extract .extract-text")
        number = page.get_attribute("#extractive blockquote.extract a.cite", "href").removeprefix("#passage-")
        mark = page.locator(f"#passage-{number} mark.extract").first
        assert mark.inner_text() == sentence and "with" in sentence.lower()
        assert page.inner_text(f"#passage-{number} .label") in page.inner_text("#extractive blockquote.extract a.cite")
        assert page.locator("#timings .stage[data-stage='extract']").count() == 1
        assert page.locator("#timings .stage[data-stage='generate']").count() == 0
        held[0].continue_()
        page.unroute("**/api/generate")
        page.wait_for_selector("#timings .stage[data-stage='generate']", timeout=60_000)
        assert page.locator("#generated h2").inner_text() == "Generated answer"

        assert page.inner_text("#answer").strip()
        assert page.locator("#passages .passage").count() == 3
        assert page.inner_text("#passage-1 > b").startswith("[1] ")  # after its 👍/👎 buttons
        links = page.locator("#answer a.cite")
        assert links.count() >= 1, page.inner_text("#answer")  # written by the 135M model or attributed
        for i in range(links.count()):
            assert page.locator(links.nth(i).get_attribute("href")).count() == 1
        assert page.inner_text("#cite-note")
        stages = page.locator("#timings .stage").evaluate_all("nodes => nodes.map(n => n.dataset.stage)")
        assert stages == ["retrieve", "rerank", "extract", "generate", "cite"]
        assert "ms" in page.inner_text("#timings")
        rows = page.locator("#order tbody tr")
        assert rows.count() == 8
        resrank_ranks = sorted(int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(8))
        assert resrank_ranks == list(range(1, 9))

        chunk = page.get_attribute("#passage-2", "data-chunk")
        page.click("#passage-2 button.rate[data-label='1']")
        page.wait_for_selector("#passage-2 button.rate[data-label='1'][aria-pressed='true']")
        with FeedbackStore(demo_db) as store:
            [rated] = store.lists()
        assert (rated.user, rated.ratings) == ("anonymous", {chunk: 1})
        assert rated.query == "What does the with statement do?" and len(rated.shown) == 3
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000

        page.uncheck("#generate")  # the extractive answer alone: no generation at all
        page.fill("#question", "What does the pass statement do?")
        page.click("#send")
        page.wait_for_function("""document.getElementById("send").textContent === "Ask"
            && document.querySelector('#timings .stage[data-stage="extract"]') !== null
            && document.querySelector('#timings .stage[data-stage="generate"]') === null""", timeout=30_000)
        assert page.locator("#generated").is_hidden() and page.inner_text("#extractive")
        page.check("#generate")

        page.click("#mode-chat")
        page.fill("#question", "What does the with statement do?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('#turns .turn').length === 2", timeout=60_000)
        page.fill("#question", "and the for statement?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('#turns .turn').length === 4", timeout=60_000)
        assert "Searched for: What does the with statement do? and the for statement?" in page.inner_text("#search-query")
        browser.close()


def test_browser_page_citations_and_a_restricted_document(company_url, company_db):
    """Mixed PDF/DOCX/HTML/Markdown folder with access lists: citations name the file and page, a source
    link opens the file, Bob (staff) never sees the HR-only salary bands that Alice (hr) gets, and Alice
    cannot rate what Bob was shown, nor a passage her own answer did not show."""
    from demos.sample_company import SALARY_SECRET
    from resrank_rag.feedback import FeedbackStore

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
        bob_list, bob_chunk = page.evaluate("shown.list_id"), page.get_attribute("#passage-1", "data-chunk")

        page.select_option("#user", "alice")
        page.fill("#question", SALARY_SECRET)
        page.click("#send")
        page.wait_for_function("document.getElementById('passages').textContent.includes('salary-bands-2027.pdf p. 2')", timeout=60_000)
        page.wait_for_function("document.getElementById('send').textContent === 'Ask'", timeout=60_000)  # generated too
        link = page.locator("#passages a.source", has_text="salary-bands-2027.pdf p. 2").first
        assert link.get_attribute("href") == "/api/source/hr/salary-bands-2027.pdf?user=alice#page=2"
        if page.locator("#sources .cited-source").count():
            assert " p. " in page.inner_text("#sources") or "§" in page.inner_text("#sources")
        page.screenshot(path=str(SCREENSHOT.with_name("document-qa.png")), full_page=True)
        alice_list = page.evaluate("shown.list_id")
        passages = set(page.locator("#passages .passage").evaluate_all("nodes => nodes.map(n => n.dataset.chunk)"))
        unshown = next(c for c in (bob_chunk, "handbook.md", "policies/travel-policy.pdf#0") if c not in passages)
        for body in ({"list_id": bob_list, "chunk_id": bob_chunk, "label": 1, "user": "alice"},  # Bob's answer
                     {"list_id": alice_list, "chunk_id": unshown, "label": 1, "user": "alice"},  # not in her answer
                     {"list_id": alice_list, "chunk_id": sorted(passages)[0], "label": 1, "user": "bob"}):  # hers, as Bob
            assert post_from_page(page, "/api/feedback", body) == 403, body
        with FeedbackStore(company_db) as store:
            assert store.count() == 0 and {s.user for s in store.lists(rated_only=False)} == {"bob", "alice"}
        assert page.request.get(company_url.rstrip("/") + "/api/source/hr/salary-bands-2027.pdf?user=bob").status == 404
        browser.close()
