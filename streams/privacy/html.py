"""The register of processing activities as pages a resident can read: plain HTML, no script.

Pure: strings in, a string out. Every value that came from a tenant goes through ``escape``
(``html.escape`` with quotes), so a name such as ``<script>`` shows as text and an attribute
cannot be broken out of, and a character that would not read as itself (a bidirectional
override stored before the rule refused it) shows as its ``\\uXXXX`` escape. The pages have a
language (``lang="en"``, the API's language), a title, headings in order, a table with a
caption and column headers for the list, and a definition list for one activity; they work
without JavaScript or styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from cityhub.schemas.plain_text import shown
from cityhub.schemas.processing import ActivityVersion, ProcessingActivity

PAGE_PATH = "/api/v1/processing-register"
"""Where the pages are served: the list here, one activity at ``<PAGE_PATH>/<tenant>/<slug>``."""
JSON_PATH = "/api/v1/processing-activities"


def _e(value: object) -> str:
    return escape(shown(str(value)), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )


def activity_href(activity: ProcessingActivity) -> str:
    """The page of one activity (tenant and slug are path-safe, quoted all the same)."""
    return f"{PAGE_PATH}/{quote(activity.tenant, safe='')}/{quote(activity.slug, safe='')}"


def _period(version: ActivityVersion) -> str:
    end = version.valid_to if version.valid_to is not None else "until further notice"
    return f"from {version.valid_from}, {end if version.valid_to is None else 'to ' + end}"


def register_page(activities: Sequence[ProcessingActivity], next_href: str | None) -> str:
    """The register's page: one table row per activity, linking to its own page, and a link to
    the next page when there is one (``next_href``, a URL cityhub made)."""
    rows = []
    for activity in activities:
        current = activity.current
        rows.append(
            "<tr>"
            f'<th scope="row"><a href="{_e(activity_href(activity))}">{_e(current.name)}</a></th>'
            f"<td>{_e(activity.tenant)}</td>"
            f"<td>{_e(current.purpose)}</td>"
            f"<td>{_e(current.legal_basis.value)}</td>"
            f"<td>{_e(', '.join(current.personal_data_categories))}</td>"
            f"<td>{_e(current.retention)}</td>"
            f"<td>{_e(_period(current))}</td>"
            "</tr>\n"
        )
    table = (
        "<table>\n<caption>Processing activities</caption>\n<thead><tr>"
        '<th scope="col">Activity</th><th scope="col">Organisation (tenant)</th>'
        '<th scope="col">Purpose</th><th scope="col">Legal basis</th>'
        '<th scope="col">Personal data</th><th scope="col">Kept for</th>'
        '<th scope="col">Valid</th></tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody>\n</table>\n"
        if rows
        else "<p>No processing activities are registered.</p>\n"
    )
    more = f'<p><a href="{_e(next_href)}" rel="next">Next page</a></p>\n' if next_href else ""
    body = (
        "<h1>Register of processing activities</h1>\n"
        "<p>What this city's data platform does with personal data, why, on which legal "
        "basis, for how long, and who receives it. Retention is an ISO 8601 duration "
        "(P30D: 30 days). The same register as JSON: "
        f'<a href="{JSON_PATH}">{JSON_PATH}</a>.</p>\n'
        f"{table}{more}"
    )
    return _page("Register of processing activities", body)


def _definitions(version: ActivityVersion) -> str:
    items = [
        ("Purpose", _e(version.purpose)),
        ("Purpose (vocabulary)", _e(version.purpose_iri) if version.purpose_iri else "—"),
        (
            "Legal basis",
            f"{_e(version.legal_basis.value)} (<code>{_e(version.legal_basis.iri)}</code>)",
        ),
        ("Personal data", _e(", ".join(version.personal_data_categories))),
        ("Kept for", _e(version.retention)),
        ("Controller", _e(version.controller)),
        ("Recipients", _e(", ".join(version.recipients)) if version.recipients else "none"),
        ("Valid", _e(_period(version))),
        ("Recorded", _e(version.recorded_at)),
    ]
    rows = "".join(f"<dt>{term}</dt><dd>{value}</dd>\n" for term, value in items)
    return f"<dl>\n{rows}</dl>\n"


def activity_page(activity: ProcessingActivity) -> str:
    """One activity's page: its current version, then every earlier one, newest first."""
    current = activity.current
    earlier = "".join(
        f"<section>\n<h3>Version {v.version}: {_e(v.name)}</h3>\n{_definitions(v)}</section>\n"
        for v in reversed(activity.versions[:-1])
    )
    body = (
        f"<h1>{_e(current.name)}</h1>\n"
        f"<p>Processing activity <code>{_e(activity.id)}</code> of {_e(activity.tenant)}, "
        f"version {current.version}.</p>\n"
        f"{_definitions(current)}"
        f"{'<h2>Earlier versions</h2>' + chr(10) + earlier if earlier else ''}"
        f'<p><a href="{PAGE_PATH}">All processing activities</a></p>\n'
    )
    return _page(current.name, body)
