"""Login, roles, sessions and CSRF for both web apps (the officer console and the command dashboard).

Why it looks like this:
- Passwords are argon2id hashes (argon2-cffi's PasswordHasher defaults, RFC 9106 low-memory profile):
  a stolen users file does not give away passwords.
- The users file is TOML, one table per user ({role, hash}), written atomically with mode 0600, so an
  installer or the demo can create users with a CLI and an operator can read what is there.
- Sessions are Starlette's SessionMiddleware: the cookie is signed with itsdangerous, HttpOnly,
  SameSite=Strict, and Secure unless explicitly turned off for plain http on loopback.
- Every request passes `AuthGate`, a plain ASGI middleware: anyone not logged in gets 401 (API, event
  streams, static files) or a redirect to /login (pages). Because it wraps the whole app, a route added
  later cannot forget to check the login.
- CSRF: a random token lives in the session; every state-changing request must echo it in the
  X-CSRF-Token header (the pages' fetch calls do) or, for the login form only, a form field.
  SameSite=Strict already stops most cross-site posts; the token covers the rest (e.g. same-site
  subdomains, older browsers).

    python -m common.webauth add-user FILE NAME ROLE     (password read from stdin)
"""

# No `from __future__ import annotations`: FastAPI must see the real Request/Form types of the
# login routes defined inside install().
import argparse
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger("zastava.webauth")

ROLES = ("officer", "supervisor", "engineer")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UsersFileError(ValueError):
    """The users file cannot be read or holds a bad entry; the message names the file and the entry."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str


def load_users(path: str | Path) -> dict[str, User]:
    """Read the users file; a missing file is an empty set of users (nobody can log in)."""
    p = Path(path)
    if not p.exists():
        return {}
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UsersFileError(f"{p}: cannot read users file: {e}") from None
    users = {}
    for name, entry in (data.get("users") or {}).items():
        if not NAME_RE.match(name):
            raise UsersFileError(f"{p}: bad user name {name!r}")
        if not isinstance(entry, dict) or entry.get("role") not in ROLES or not isinstance(entry.get("hash"), str):
            raise UsersFileError(f"{p}: user {name!r} needs role (one of {ROLES}) and hash")
        users[name] = User(name, entry["role"], entry["hash"])
    return users


def _write_users(path: Path, users: dict[str, User]) -> None:
    # Hand-written TOML because the file is a fixed shape of plain strings (names are [A-Za-z0-9_.-],
    # roles fixed, argon2 hashes are ASCII): json.dumps of such a string is a valid TOML basic string,
    # and no TOML writer is among our dependencies for this one file.
    lines = ["# Zastava web users: argon2id hashes. Edit with: python -m common.webauth add-user FILE NAME ROLE", ""]
    for u in sorted(users.values(), key=lambda u: u.name):
        lines += [f"[users.{u.name}]", f"role = {json.dumps(u.role)}", f"hash = {json.dumps(u.hash)}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_user(path: str | Path, name: str, role: str, password: str) -> User:
    """Create or replace a user (new password and role) in the users file."""
    if not NAME_RE.match(name):
        raise ValueError("user name must be 1-64 of A-Z a-z 0-9 _ . -")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
    p = Path(path)
    users = load_users(p)
    users[name] = User(name, role, _hasher.hash(password))
    _write_users(p, users)
    return users[name]


def remove_user(path: str | Path, name: str) -> bool:
    p = Path(path)
    users = load_users(p)
    if users.pop(name, None) is None:
        return False
    _write_users(p, users)
    return True


def verify_password(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name)
    try:
        _hasher.verify(user.hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def session_secret(path: str | Path) -> str:
    """The cookie-signing key, kept in a 0600 file so a restart does not log every officer out."""
    p = Path(path)
    if p.exists():
        key = p.read_text().strip()
        if len(key) >= 32:
            return key
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


@dataclass
class AuthCounters:
    """Shown on the engineer page; bad input is counted, never fatal."""

    logins: int = 0
    login_failures: int = 0
    locked_out: int = 0
    unauthenticated: int = 0
    forbidden: int = 0
    csrf_refused: int = 0
    bad_requests: int = 0  # request bodies/parameters refused by validation (422)
    users_file_errors: int = 0  # the users file became unreadable while running


@dataclass
class Authenticator:
    """Holds the users file path and counters; re-reads the file when it changes (add-user while running)."""

    users_path: Path
    lock_after: int = 5  # failed logins for one name within lock_window_s -> locked for lock_window_s
    lock_window_s: float = 60.0
    counters: AuthCounters = field(default_factory=AuthCounters)
    _users: dict[str, User] = field(default_factory=dict)
    _mtime: float = -1.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def users(self) -> dict[str, User]:
        try:
            m = self.users_path.stat().st_mtime
        except FileNotFoundError:
            m = 0.0
        with self._lock:
            if m != self._mtime:
                try:
                    self._users = load_users(self.users_path)
                except UsersFileError as e:
                    if self._mtime < 0:
                        raise  # at start: refuse, the operator must fix the file
                    # while running: keep the last good users rather than lock everybody out
                    self.counters.users_file_errors += 1
                    log.error("%s; keeping the %d users loaded before", e, len(self._users))
                self._mtime = m
            return self._users

    def login(self, name: str, password: str) -> User | None:
        now = time.time()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < self.lock_window_s]
            self._failures[name] = recent
            if len(recent) >= self.lock_after:
                self.counters.locked_out += 1
                return None
        user = verify_password(self.users(), name, password)
        with self._lock:
            if user is None:
                self.counters.login_failures += 1
                self._failures.setdefault(name, []).append(now)
                if len(self._failures) > 10000:  # bound memory under a name-spraying attack
                    self._failures.clear()
            else:
                self.counters.logins += 1
                self._failures.pop(name, None)
        return user


def new_csrf(session: dict) -> str:
    tok = session.get("csrf")
    if not tok:
        tok = secrets.token_urlsafe(32)
        session["csrf"] = tok
    return tok


def csrf_ok(session: dict, presented: str | None) -> bool:
    tok = session.get("csrf")
    return bool(tok and presented and hmac.compare_digest(str(tok), str(presented)))


def session_user(session: dict, auth: Authenticator) -> User | None:
    """The logged-in user, re-checked against the users file so a removed user is out at once."""
    name = session.get("user")
    if not name:
        return None
    u = auth.users().get(name)
    if u is None or u.role != session.get("role"):
        return None
    return u


def current_user(request) -> User:
    """The logged-in user AuthGate admitted this request (a FastAPI Request) for: every route behind
    the gate has one."""
    return request.scope["state"]["user"]


class AuthGate:
    """ASGI middleware (inside SessionMiddleware): login required everywhere but `public`, CSRF on writes.

    `rules` maps path prefixes to the roles allowed there; the longest matching prefix wins, and a path
    matching none is open to every logged-in role.
    """

    def __init__(self, app, auth: Authenticator, public: Iterable[str] = ("/login", "/favicon.ico"),
                 rules: dict[str, tuple[str, ...]] | None = None, csrf_exempt: Iterable[str] = ("/login",)):
        self.app = app
        self.auth = auth
        self.public = set(public)
        self.rules = sorted((rules or {}).items(), key=lambda kv: -len(kv[0]))
        self.csrf_exempt = set(csrf_exempt)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        send = _secure_headers(send)
        path = scope.get("path", "/")
        session = scope.get("session")
        if session is None:
            raise RuntimeError("AuthGate must run inside SessionMiddleware")
        if path in self.public:
            return await self.app(scope, receive, send)
        user = session_user(session, self.auth)
        if user is None and scope["type"] == "websocket":
            self.auth.counters.unauthenticated += 1
            return await send({"type": "websocket.close", "code": 1008})
        if user is None:
            self.auth.counters.unauthenticated += 1
            session.pop("user", None)
            wants_page = scope["type"] == "http" and scope.get("method") == "GET" and _accepts_html(scope)
            if wants_page:
                return await _send(send, 303, b"", [(b"location", b"/login")])
            return await _send(send, 401, b'{"detail":"login required"}', [(b"content-type", b"application/json")])
        for prefix, roles in self.rules:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                if user.role not in roles:
                    self.auth.counters.forbidden += 1
                    return await _send(send, 403, b'{"detail":"your role may not use this page"}',
                                       [(b"content-type", b"application/json")])
                break
        if scope.get("method") in UNSAFE_METHODS and path not in self.csrf_exempt:
            presented = dict(scope.get("headers") or []).get(CSRF_HEADER.encode())
            if not csrf_ok(session, presented.decode("latin-1") if presented else None):
                self.auth.counters.csrf_refused += 1
                return await _send(send, 403, b'{"detail":"CSRF token missing or wrong"}',
                                   [(b"content-type", b"application/json")])
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)


# Sent with every response: no framing (clickjacking of the decision buttons), no MIME sniffing, no
# referrer leaking alert URLs, and scripts only from our own static files.
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                                 b"form-action 'self'; base-uri 'none'"),
]


def _secure_headers(send):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return wrapped


def _accepts_html(scope) -> bool:
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/html" in accept


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def install(app, auth: Authenticator, secret: str, secure_cookies: bool, cookie_name: str,
            rules: dict[str, tuple[str, ...]] | None = None, title: str = "Zastava", max_age_s: int = 12 * 3600) -> None:
    """Add /login and /logout to a FastAPI app and wrap it in SessionMiddleware + AuthGate."""
    from fastapi import Form, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.middleware.sessions import SessionMiddleware

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str = ""):
        tok = new_csrf(request.session)
        return HTMLResponse(login_html(title, tok, error), headers={"cache-control": "no-store"})

    @app.post("/login", include_in_schema=False)
    def login_submit(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        if not csrf_ok(request.session, csrf):
            auth.counters.csrf_refused += 1
            return RedirectResponse("/login?error=Session+expired%2C+try+again", status_code=303)
        user = auth.login(username, password)
        if user is None:
            return RedirectResponse("/login?error=Wrong+name+or+password", status_code=303)
        request.session.clear()  # a fresh session at login: no fixation
        request.session.update({"user": user.name, "role": user.role, "login_t": time.time(),
                                "csrf": secrets.token_urlsafe(32)})
        return RedirectResponse("/", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        # Public and empty: browsers ask for it before login; a 204 keeps their consoles free of errors.
        return Response(status_code=204)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request):
        request.session.clear()
        return JSONResponse({"ok": True})

    @app.get("/api/me")
    def me(request: Request):
        u = current_user(request)
        return {"user": u.name, "role": u.role, "csrf": new_csrf(request.session)}

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        # FastAPI's default echoes the input back, and an input such as Infinity then fails to encode
        # (a 500). Say where and what is wrong, without the input.
        auth.counters.bad_requests += 1
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_middleware(AuthGate, auth=auth, rules=rules)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=cookie_name, max_age=max_age_s,
                       same_site="strict", https_only=secure_cookies)


def login_html(title: str, csrf: str, error: str) -> str:
    from html import escape

    err = f'<p class="err">{escape(error)}</p>' if error else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} — sign in</title>
<meta name="viewport" content="width=device-width">
<style>
body{{margin:0;height:100vh;display:flex;align-items:center;justify-content:center;background:#11161c;
color:#d8dee6;font:14px/1.4 "DejaVu Sans",system-ui,sans-serif}}
form{{background:#1b232c;border:1px solid #2d3945;padding:28px 32px;width:300px;border-radius:4px}}
h1{{font-size:16px;margin:0 0 4px;letter-spacing:.08em;text-transform:uppercase}}
.sub{{color:#8a99a8;font-size:12px;margin:0 0 18px}}
label{{display:block;font-size:12px;color:#8a99a8;margin:10px 0 4px}}
input{{width:100%;box-sizing:border-box;padding:8px;background:#0e1318;border:1px solid #2d3945;color:#e8eef4;
border-radius:3px;font-size:14px}}
button{{margin-top:18px;width:100%;padding:9px;background:#2f6fb0;color:#fff;border:0;border-radius:3px;
font-weight:bold;cursor:pointer}}
.err{{color:#ff7b72;font-size:13px}}
</style></head><body>
<form method="post" action="/login" autocomplete="off">
<h1>{escape(title)}</h1><p class="sub">Authorised personnel only. Activity is logged.</p>{err}
<input type="hidden" name="csrf" value="{escape(csrf)}">
<label for="username">User</label><input id="username" name="username" autofocus required>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit" id="signin">Sign in</button>
</form></body></html>"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.webauth", description="manage web console users")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add-user", help="create or reset a user; the password is read from stdin")
    a.add_argument("file", type=Path)
    a.add_argument("name")
    a.add_argument("role", choices=ROLES)
    r = sub.add_parser("remove-user")
    r.add_argument("file", type=Path)
    r.add_argument("name")
    ls = sub.add_parser("list")
    ls.add_argument("file", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd == "add-user":
            pw = sys.stdin.readline().rstrip("\r\n")
            add_user(args.file, args.name, args.role, pw)
            print(f"user {args.name} ({args.role}) written to {args.file}")
        elif args.cmd == "remove-user":
            if not remove_user(args.file, args.name):
                print(f"no user {args.name} in {args.file}", file=sys.stderr)
                return 1
        else:
            for u in load_users(args.file).values():
                print(f"{u.name}\t{u.role}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
