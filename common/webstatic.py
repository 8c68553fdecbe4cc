"""Static files for both web apps: each app's own folder first, then the shared common/static.

One copy of the page helpers (common.js) serves the officer console and the command dashboard,
since central may not import from edge_agent. Every file is behind the app's login gate.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

SHARED = Path(__file__).parent / "static"


def add_pages(app: FastAPI, own: Path, pages: dict[str, str]) -> None:
    """The app's pages (route -> file in its own folder), never cached so that an upgrade shows at the
    next load, and its static files."""
    for route, name in pages.items():
        app.add_api_route(route, _page(own / name), methods=["GET"], include_in_schema=False)
    add_static(app, own)


def _page(path: Path):
    def page() -> FileResponse:
        return FileResponse(path, headers={"cache-control": "no-store"})

    return page


def add_static(app: FastAPI, own: Path) -> None:
    folders = (own, SHARED)

    @app.get("/static/{name}")
    def static(name: str):
        if "/" in name or name.startswith("."):
            raise HTTPException(404, "not found")
        for folder in folders:
            p = folder / name
            if p.is_file():
                return FileResponse(p, headers={"cache-control": "no-cache"})
        raise HTTPException(404, "not found")
