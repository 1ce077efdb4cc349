"""apidouble_content - the documents the API double says a batch produced.

For: scripts/apidouble.py, which serves these strings as parse results
(markdown and text, page by page) and extracted data. Pure and
deterministic: the same key always gives the same text, built on demand
from the key alone, so that a data set of ten thousand documents costs
nothing until a document is asked for.

Not for: looking like any particular real document. The text mixes
headings, tables, lists, bold, accented Latin, Greek, Cyrillic, CJK and
emoji so that byte-exact round trips are tested on more than ASCII.

Promises a test can rely on:
- SEARCH_PHRASE appears (always in lower case, in one paragraph) in the
  markdown and the text of exactly the documents made with phrase=True,
  and in no other document in any letter case.
- The text of a page is markdown_to_text() of its markdown.
- A page's markdown stays under 64 KB, like the real parser's pages.
"""

import functools
import random

SEARCH_PHRASE = "net revenue"
PAGE_LIMIT = 60 * 1024

TITLES = ("Annual report 2024", "Rapport trimestriel — T3", "Quarterly review Q2",
          "Jahresabschluss 2024", "事業報告書 2024年度", "Informe de gestión",
          "Board minutes — March", "Audit summary")
SECTIONS = ("Executive summary", "Résumé des résultats", "Financial highlights",
            "Regional breakdown", "Outlook 2025", "事業概要", "Risk factors",
            "Appendix — definitions", "Über uns", "Notes to the accounts", "Καθαρά στοιχεία")
SENTENCES = (
    "Operating costs fell by {p} % compared with the previous year.",
    "The board approved a dividend of {n} € per share.",
    "Customer satisfaction reached {p} % in the annual survey 📈.",
    "Les ventes à l'export ont progressé de {p} % grâce à la zone Asie-Pacifique.",
    "Die Umsätze in der DACH-Region blieben stabil; Zürich und München wuchsen am stärksten.",
    "東京と大阪の拠点で売上が前年比{p}%増加しました。",
    "El equipo de São Paulo cerró {n} contratos nuevos este trimestre ✅.",
    "Cash and equivalents stood at {n} million at the end of the period.",
    "Headcount grew to {n} employees across {m} countries 🌍.",
    "Free cash flow improved thanks to lower capital expenditure.",
    "北京办事处于20{m}年开业，目前有{n}名员工。",
    "Η ομάδα της Αθήνας ολοκλήρωσε το έργο εγκαίρως.",
    "Отдел в Москве завершил проект на {p} % быстрее плана.",
    "Gross margin was {p} %, in line with guidance.",
    "**Key figure:** order intake of {n} million, a record for the group.",
)
PHRASE_SENTENCE = ("The group's net revenue rose {p} % to {n} million, driven by strong "
                   "demand ☕.")
REGIONS = ("Europe", "Zürich", "São Paulo", "東京", "New York", "Kraków", "Москва",
           "Île-de-France", "Αθήνα", "Reykjavík")
BULLETS = ("Ship the new invoicing flow", "Réduire les délais de paiement",
           "Open the Ōsaka office", "Hire 12 engineers 👩‍💻", "Renegotiate the lease in Malmö")
HEADER = "ACME Holding — confidential"
VENDORS = ("ACME GmbH", "Société Générale d'Équipement", "株式会社サンプル", "Nordic Ørsted AB",
           "Café Olé S.L.", "Smith & Sons Ltd")


def markdown_to_text(markdown):
    """The plain text of a page: heading marks, bold marks and table rules
    dropped, table cells separated by tabs; everything else unchanged."""
    lines = []
    for line in markdown.split("\n"):
        if line.startswith("#"):
            line = line.lstrip("#").lstrip(" ")
        elif line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if all(set(cell) <= set("-:") for cell in cells):
                continue
            line = "\t".join(cells)
        lines.append(line.replace("**", ""))
    return "\n".join(lines)


def _number(rng):
    return "{:,}".format(rng.randrange(10, 99999))


def _sentence(rng, template):
    return template.format(p="%d.%d" % (rng.randrange(1, 40), rng.randrange(10)),
                           n=_number(rng), m=rng.randrange(10, 30))


def _table(rng, rows):
    out = ["| Region | Q1 | Q2 | Q3 | Q4 | Change |", "|---|---:|---:|---:|---:|---:|"]
    for _ in range(rows):
        cells = [REGIONS[rng.randrange(len(REGIONS))]]
        cells += ["%d.%02d" % (rng.randrange(100, 9999), rng.randrange(100))
                  for _ in range(4)]
        cells.append("%+d.%d %%" % (rng.randrange(-20, 30), rng.randrange(10)))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _long_table(page, target):
    """Rows computed, not drawn: a several-MB document stays cheap to make."""
    out = ["| # | Region | Amount | Note |", "|---:|---|---:|---|"]
    size, row = 0, 0
    while size < target:
        value = (row * 7919 + page * 104729) % 10000000
        line = "| %d | %s | %d.%02d | %s |" % (page * 100000 + row,
                                               REGIONS[(row + page) % len(REGIONS)],
                                               value // 100, value % 100,
                                               BULLETS[row % len(BULLETS)])
        out.append(line)
        size += len(line.encode("utf-8")) + 1
        row += 1
    return "\n".join(out)


def _page(rng, number, title, phrase_here, long_target):
    parts = []
    if number == 1:
        parts.append("# " + title)
    parts.append("## " + SECTIONS[rng.randrange(len(SECTIONS))])
    sentences = [_sentence(rng, SENTENCES[rng.randrange(len(SENTENCES))])
                 for _ in range(rng.randrange(2, 6))]
    if phrase_here:
        sentences.insert(rng.randrange(len(sentences) + 1), _sentence(rng, PHRASE_SENTENCE))
    parts.append(" ".join(sentences))
    if long_target:
        parts.append(_long_table(number, long_target))
    elif rng.random() < 0.7:
        parts.append(_table(rng, rng.randrange(2, 8)))
    if rng.random() < 0.5:
        parts.append("\n".join("- " + BULLETS[rng.randrange(len(BULLETS))]
                               for _ in range(rng.randrange(1, 4))))
    parts.append(_sentence(rng, SENTENCES[rng.randrange(len(SENTENCES))]))
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=32)
def parse_pages(key, phrase=False, large_bytes=0, failed_page=0):
    """The pages of one parsed document: a tuple of (page_number, markdown,
    text, header, footer), with markdown and text None for the page that
    failed (failed_page, 1-based, 0 for none). large_bytes > 0 makes the
    document about that large; otherwise it has 2 to 8 short pages."""
    rng = random.Random("doc/" + key)
    title = TITLES[rng.randrange(len(TITLES))]
    if large_bytes > 0:
        per_page = min(PAGE_LIMIT - 4096, 40 * 1024)
        count = max(1, -(-large_bytes // per_page))
    else:
        per_page = 0
        count = rng.randrange(2, 9)
    phrase_page = rng.randrange(1, count + 1) if phrase else 0
    pages = []
    for number in range(1, count + 1):
        markdown = _page(rng, number, title, number == phrase_page, per_page)
        header = HEADER if number % 2 == 0 else None
        footer = "Page %d / %d" % (number, count) if number % 3 != 1 else None
        if number == failed_page and number != phrase_page:
            pages.append((number, None, None, header, footer))
        else:
            pages.append((number, markdown, markdown_to_text(markdown), header, footer))
    return tuple(pages)


def join_pages(pages, index):
    """markdown_full (index 1) or text_full (index 2): the pages that parsed,
    separated by a blank line."""
    return "\n\n".join(page[index] for page in pages if page[index] is not None)


def extract_result(key, per_page):
    """Extracted data: one object per document, or (per_page) a list with
    one object per page. Every object has a numeric "total"."""
    rng = random.Random("extract/" + key)
    if per_page:
        return [{"page": n, "summary": _sentence(rng, SENTENCES[rng.randrange(len(SENTENCES))]),
                 "total": rng.randrange(0, 100000) / 100}
                for n in range(1, rng.randrange(2, 6))]
    lines = [{"description": BULLETS[rng.randrange(len(BULLETS))],
              "quantity": rng.randrange(1, 20),
              "unit_price": rng.randrange(100, 99999) / 100} for _ in range(rng.randrange(1, 5))]
    return {
        "vendor": VENDORS[rng.randrange(len(VENDORS))],
        "invoice_number": "INV-2025-%04d" % rng.randrange(10000),
        "date": "2025-%02d-%02d" % (rng.randrange(1, 13), rng.randrange(1, 29)),
        "currency": ("EUR", "USD", "JPY", "CHF")[rng.randrange(4)],
        "line_items": lines,
        "total": round(sum(line["quantity"] * line["unit_price"] for line in lines), 2),
        "paid": rng.random() < 0.5,
        "notes": None if rng.random() < 0.5 else "Zahlung per Überweisung 💶",
    }
