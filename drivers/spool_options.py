"""A spool URL's options (`spool:///path?after=delete&done_days=3`), checked without importing the
spool driver (pydicom, OpenCV): the configuration check refuses a wrong option before the agent
starts, as it refuses an unknown scheme (drivers/registry.validate_url)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

AFTER_CHOICES = ("move", "delete", "keep")


def url_options(url: str) -> dict:
    """The SpoolSource options a spool URL's query sets (after, done_days); others are refused."""
    q = parse_qs(urlsplit(url).query)
    unknown = set(q) - {"after", "done_days"}
    if unknown:
        raise ValueError(f"{url}: unknown spool option(s) {sorted(unknown)}; known: after, done_days")
    out: dict = {}
    if "after" in q:
        out["after"] = q["after"][-1]
        if out["after"] not in AFTER_CHOICES:
            raise ValueError(f"{url}: after={out['after']!r}; one of {', '.join(AFTER_CHOICES)}")
    if "done_days" in q:
        try:
            out["done_days"] = float(q["done_days"][-1])
        except ValueError:
            raise ValueError(f"{url}: done_days must be a number of days") from None
        if not out["done_days"] > 0:
            raise ValueError(f"{url}: done_days must be more than 0")
    return out
