"""The options in device URLs' queries (`spool:///path?after=delete`, `dicos-scp://...?ae=X`),
read without importing the drivers (pydicom, pynetdicom, OpenCV): the drivers use these, and the
configuration check calls them too (drivers/registry.validate_url), so a wrong option is refused
with its key before the agent starts, as an unknown scheme is."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

AFTER_CHOICES = ("move", "delete", "keep")


def check_after(url: str, after: str) -> str:
    """What a spool does with a screened file: one of AFTER_CHOICES, else a ValueError saying so."""
    if after not in AFTER_CHOICES:
        raise ValueError(f"{url}: after={after!r}; one of {', '.join(AFTER_CHOICES)}")
    return after


def spool_options(url: str) -> dict:
    """The SpoolSource options a spool URL's query sets (after, done_days); others are refused."""
    q = parse_qs(urlsplit(url).query)
    unknown = set(q) - {"after", "done_days"}
    if unknown:
        raise ValueError(f"{url}: unknown spool option(s) {sorted(unknown)}; known: after, done_days")
    out: dict = {}
    if "after" in q:
        out["after"] = check_after(url, q["after"][-1])
    if "done_days" in q:
        try:
            out["done_days"] = float(q["done_days"][-1])
        except ValueError:
            raise ValueError(f"{url}: done_days must be a number of days") from None
        if not out["done_days"] > 0:
            raise ValueError(f"{url}: done_days must be more than 0")
    return out


def dicos_scp_options(url: str) -> tuple[str, int, str, str | None]:
    """host, port, AE title and inbox folder (None if the URL names none) of a dicos-scp URL."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port if parts.port is not None else 11112
    except ValueError:
        raise ValueError(f"{url}: bad port") from None
    q = parse_qs(parts.query)
    unknown = set(q) - {"ae", "inbox"}
    if unknown:
        raise ValueError(f"{url}: unknown dicos-scp option(s) {sorted(unknown)}; known: ae, inbox")
    ae = (q.get("ae") or ["ZASTAVA"])[0]
    if not 1 <= len(ae) <= 16 or not ae.isascii() or "\\" in ae:
        raise ValueError(f"{url}: ae must be 1-16 ASCII characters (got {ae!r})")
    return host, port, ae, (q.get("inbox") or [None])[0]
