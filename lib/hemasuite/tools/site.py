"""The landing page ``reports/index.html``: every profile's notebooks, their status and results."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from ..papers import COMPARISON

PROFILE_ORDER = ("cpu", "paper", "smoke")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#176f2c;font-weight:600}
.failed{color:#b00020;font-weight:600}code{background:#f6f6f6;padding:0 .2rem}
"""


def status_rows(reports: Path, profile: str) -> list[dict]:
    """One row per notebook from ``runs.json``: status, run time, date, links."""
    path = reports / profile / "runs.json"
    if not path.exists():
        return []
    rows = []
    for stem, entry in sorted(json.loads(path.read_text()).items()):
        attempt, good = entry.get("last_attempt", {}), entry.get("last_good")
        rows.append({"notebook": stem, "status": attempt.get("status", "?"), "seconds": attempt.get("seconds"),
                     "date": attempt.get("started_utc"), "html": (good or {}).get("html"),
                     "good_date": (good or {}).get("started_utc"), "error": attempt.get("error")})
    return rows


def comparison_table(reports: Path, profile: str) -> str:
    """The comparison notebook's main table as HTML, if that notebook has run."""
    csv = reports / profile / "results" / COMPARISON / "tables" / "comparison.csv"
    if not csv.exists():
        return "<p>No comparison table yet for this profile (run notebook 90_comparison).</p>"
    return pd.read_csv(csv).to_html(index=False, na_rep="missing", border=0, escape=True)


def profile_section(reports: Path, profile: str) -> str:
    """HTML of one profile: comparison table and notebook list."""
    rows = status_rows(reports, profile)
    if not rows:
        return ""
    lines = [f"<h2>Profile <code>{profile}</code></h2>", comparison_table(reports, profile),
             "<table><tr><th>notebook</th><th>status</th><th>run time (s)</th><th>date (UTC)</th><th>report</th></tr>"]
    for row in rows:
        link = f'<a href="{html.escape(row["html"])}">{html.escape(row["notebook"])}</a>' if row["html"] else "none"
        note = ""
        if row["status"] != "ok":
            note = f"<br><small>{html.escape((row['error'] or '')[:300])}</small>"
            if row["html"]:
                note += f"<br><small>showing last good run of {html.escape(str(row['good_date']))}</small>"
        lines.append(f"<tr><td>{html.escape(row['notebook'])}</td><td class=\"{row['status']}\">{row['status']}{note}"
                     f"</td><td>{row['seconds']}</td><td>{html.escape(str(row['date']))}</td><td>{link}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def build_index(reports: Path) -> Path:
    """Write ``reports/index.html`` (offline: inline CSS, no scripts, relative links)."""
    reports = Path(reports)
    profiles = [p for p in PROFILE_ORDER if (reports / p / "runs.json").exists()]
    sections = [profile_section(reports, p) for p in profiles]
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Leukemia / lymphoma replication "
            f"suite: reports</title><style>{STYLE}</style></head><body>"
            "<h1>Leukemia / lymphoma replication suite</h1>"
            "<p>Executed notebooks per profile. <code>smoke</code> runs on SYNTHETIC images and its numbers mean "
            "nothing; <code>cpu</code> is the reduced-scale run on the real data; <code>paper</code> the papers' "
            "own settings (GPU).</p>" + ("\n".join(sections) or "<p>No runs yet.</p>") + "</body></html>")
    target = reports / "index.html"
    target.write_text(page, encoding="utf-8")
    return target
