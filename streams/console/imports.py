"""The import pages: upload a CSV (The Things Stack's columns and cityhub's) or a JSON array of
devices, watch the import's progress (htmx polls a fragment every second; without scripts, a
refresh link), then read the per-row report: counts, every bad row with its line, id and
reasons, and the good rows.

The import runs in the API process (``cityhub.streams.registry.import_jobs``), through the
registry's own importer and checks, in chunks; only the key that started an import sees it.
"""

from __future__ import annotations

from aiohttp import web

from cityhub.schemas.registry import Role
from cityhub.schemas.settings import QuotaSettings
from cityhub.streams.console.app import redirect
from cityhub.streams.console.pages import ConsolePage, Ctx
from cityhub.streams.registry.import_jobs import ImportJob, ImportJobs
from cityhub.streams.registry.import_rows import TooManyRows
from cityhub.streams.registry.importer import content_type_for
from cityhub.streams.service_errors import Invalid, NotFound, Unavailable

UPLOAD_OVERHEAD = 64 * 1024
"""Room for the multipart form around the file."""
MAX_UPLOAD_BYTES = QuotaSettings().import_max_bytes
"""The page's cap on a POST body: the default import cap (a smaller configured cap is checked
on the file itself)."""
_ROLES = frozenset({Role.ADMIN, Role.OPERATOR})
_KINDS = (".csv", ".json", ".txt")


def _jobs(ctx: Ctx) -> ImportJobs:
    jobs = ctx.services.imports
    if jobs is None:
        raise Unavailable("imports are not served by this process")
    return jobs


def _form(
    ctx: Ctx, jobs: ImportJobs, *, status: int = 200, error: str | None = None
) -> web.Response:
    return ctx.render(
        "imports.html",
        status=status,
        error=error,
        jobs=jobs.of(ctx.who, ctx.tenant),
        max_bytes=jobs.max_bytes,
        default_type=ctx.form_text("type", 64),
    )


async def import_form(ctx: Ctx) -> web.StreamResponse:
    return _form(ctx, _jobs(ctx))


async def start_import(ctx: Ctx) -> web.StreamResponse:
    jobs = _jobs(ctx)
    upload = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(upload, web.FileField) or not upload.filename:
        return _form(ctx, jobs, status=400, error=ctx.t("imp.no_file"))
    filename = upload.filename[:200]
    if not filename.lower().endswith(_KINDS):
        return _form(ctx, jobs, status=400, error=ctx.t("imp.bad_kind"))
    body = upload.file.read(jobs.max_bytes + 1)
    if len(body) > jobs.max_bytes:
        return _form(ctx, jobs, status=413, error=ctx.t("imp.too_large", bytes=jobs.max_bytes))
    try:
        job = await jobs.start(
            ctx.who,
            ctx.tenant,
            body,
            content_type_for(filename),
            filename=filename,
            default_type=ctx.form_text("type", 64) or None,
        )
    except TooManyRows as exc:
        return _form(ctx, jobs, status=413, error=ctx.t("imp.refused", why=exc.detail))
    except Invalid as exc:
        return _form(ctx, jobs, status=400, error=ctx.t("imp.refused", why=exc.detail[:500]))
    return redirect(f"/imports/{job.id}")


def _job(ctx: Ctx) -> ImportJob:
    job_id = ctx.request.match_info["job"][:40]
    job = _jobs(ctx).get(ctx.who, job_id)
    if job is None:
        raise NotFound(f"import {job_id!r} not found")
    return job


async def import_page(ctx: Ctx) -> web.StreamResponse:
    return ctx.render("import.html", job=_job(ctx))


async def import_progress(ctx: Ctx) -> web.StreamResponse:
    """The fragment htmx polls: it stops polling once the import is finished."""
    return ctx.render("import_progress.html", job=_job(ctx))


PAGES = (
    ConsolePage("GET", "/imports", import_form, "consoleImports", nav="nav.imports", roles=_ROLES),
    ConsolePage(
        "POST",
        "/imports",
        start_import,
        "consoleImportStart",
        max_body_bytes=MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD,
    ),
    ConsolePage("GET", "/imports/{job}", import_page, "consoleImport"),
    ConsolePage("GET", "/imports/{job}/progress", import_progress, "consoleImportProgress"),
)
