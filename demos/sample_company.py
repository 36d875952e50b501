"""A folder of company-like documents to try document QA on: PDF, DOCX, HTML and Markdown, access lists,
demo users, and a few files that cannot be read (corrupt, password-protected, scanned, empty).

    python -m demos.sample_company /tmp/northwind
    resrank demo --docs /tmp/northwind --users /tmp/northwind/users.json

Everything is written here (fpdf2 for the PDFs, python-docx for the Word files); nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

SALARY_SECRET = "Band E7 engineers earn between 142,000 and 171,000 crowns a year from March 2027."
"""A sentence only group ``hr`` may read (hr/salary-bands-2027.pdf, page 2)."""
REORG_SECRET = "The Lisbon office closes in June 2027 and its twelve staff move to Porto."
"""A sentence only groups ``hr`` and ``executives`` may read (hr/reorg-plan.docx)."""
USERS = {"alice": ["staff", "hr"], "bob": ["staff"], "erin": ["staff", "executives"]}

TRAVEL_PAGES = [
    "Travel policy\nThis policy covers business trips for every Northwind employee. Ask your manager before you book.",
    "Trains and flights\nBook a train for any trip under 500 km. Flights need approval from your manager and "
    "economy class is the rule for flights under six hours.",
    "Hotels and meals\nHotels may cost up to 160 crowns a night in capitals and 120 crowns elsewhere. "
    "Meals are refunded up to 45 crowns a day with receipts.",
]
SALARY_PAGES = [
    "Salary bands 2027\nConfidential: Human Resources only. This document lists the salary bands for 2027.",
    SALARY_SECRET + " Band E6 earns between 118,000 and 141,000 crowns.",
]


def pdf(pages: list[str], title: str, user_password: str | None = None, image_only: bool = False) -> bytes:
    """A PDF with one page per text (first line as a bold heading); ``image_only``: a scan without text layer."""
    from fpdf import FPDF

    document = FPDF()
    document.set_title(title)
    if user_password:
        document.set_encryption(owner_password="owner-" + user_password, user_password=user_password)
    for text in pages:
        document.add_page()
        if image_only:
            from PIL import Image

            document.image(Image.new("RGB", (200, 120), (235, 235, 235)), x=20, y=20, w=120)
            continue
        heading, _, body = text.partition("\n")
        document.set_font("Helvetica", "B", 16)
        document.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        document.set_font("Helvetica", size=12)
        document.multi_cell(0, 7, body, new_x="LMARGIN", new_y="NEXT")
    return bytes(document.output())


def docx(title: str, sections: list[tuple[str, int, str]]) -> bytes:
    """A Word file: a Title paragraph, then (heading, level, paragraph) sections."""
    import docx as python_docx

    document = python_docx.Document()
    document.core_properties.title = title
    document.add_paragraph(title, style="Title")
    for heading, level, body in sections:
        document.add_heading(heading, level=level)
        document.add_paragraph(body)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


IT_SUPPORT_HTML = """<!doctype html><html><head><title>IT support</title><style>nav {color: red}</style></head>
<body><header>Northwind intranet | Home | News | Login</header>
<nav><a href="/">Home</a> <a href="/hr">HR</a> <a href="/it">IT</a></nav>
<main><h1>IT support</h1><p>The IT help desk answers on extension 4357 from 8:00 to 18:00.</p>
<h2>Passwords</h2><p>Passwords expire every 180 days; reset yours at the self-service portal.</p>
<h2>Laptops</h2><p>A broken laptop is replaced within two working days.</p></main>
<aside>Related: cafeteria menu, parking</aside>
<footer>Copyright Northwind Traders. Cookie settings. Privacy.</footer><script>track("it")</script></body></html>
"""

HANDBOOK_MD = """# Employee handbook

Welcome to Northwind Traders. The office opens at 7:30 and closes at 19:00 on working days.

## Working from home

Staff may work from home up to three days a week after agreeing the days with their team.
"""


def make_company_folder(folder: str | Path, broken: bool = True) -> Path:
    """Write the sample folder (and ``users.json``, the demo users and their groups); returns it."""
    folder = Path(folder)
    for sub in ("policies", "intranet", "hr", "broken"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / ".access.json").write_text(json.dumps({"allowed_groups": ["*"]}))  # public unless said otherwise
    (folder / "handbook.md").write_text(HANDBOOK_MD)
    (folder / "policies" / "travel-policy.pdf").write_bytes(pdf(TRAVEL_PAGES, "Travel policy"))
    (folder / "policies" / "leave-policy.docx").write_bytes(docx("Leave policy", [
        ("Annual leave", 1, "Full-time staff get 27 days of annual leave a year, plus public holidays."),
        ("Part-time staff", 2, "Part-time staff get leave in proportion to their hours."),
        ("Parental leave", 1, "Parents get 20 weeks of paid parental leave."),
    ]))
    (folder / "intranet" / "it-support.html").write_text(IT_SUPPORT_HTML)
    (folder / "hr" / ".access.json").write_text(json.dumps({"allowed_groups": ["hr"]}))
    (folder / "hr" / "salary-bands-2027.pdf").write_bytes(pdf(SALARY_PAGES, "Salary bands 2027"))
    (folder / "hr" / "reorg-plan.docx").write_bytes(docx("Reorganisation plan", [("Offices", 1, REORG_SECRET)]))
    (folder / "hr" / "reorg-plan.docx.access.json").write_text(json.dumps({"allowed_groups": ["hr", "executives"]}))
    if broken:
        (folder / "broken" / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a PDF\n")
        (folder / "broken" / "locked.pdf").write_bytes(pdf(["Locked\nSecret."], "Locked", user_password="s3cret"))
        (folder / "broken" / "scan.pdf").write_bytes(pdf(["scan"], "Scanned letter", image_only=True))
        (folder / "broken" / "corrupt.docx").write_bytes(b"PK\x03\x04 not a zip archive")
        (folder / "broken" / "empty.md").write_text("")
    (folder / "users.json").write_text(json.dumps(USERS, indent=1))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m demos.sample_company FOLDER")
    print(f"wrote {make_company_folder(sys.argv[1])}")
