"""common.webauth: users file, argon2, lockout, the AuthGate on a small real FastAPI app, the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import webauth
from tests.conftest import REPO
from tests.test_console_fixtures import csrf, login


def test_add_user_hashes_with_argon2_and_file_is_private(tmp_path):
    p = tmp_path / "users.toml"
    webauth.add_user(p, "olga", "officer", "correct horse")
    text = p.read_text()
    assert "$argon2id$" in text and "correct horse" not in text
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    users = webauth.load_users(p)
    assert users["olga"].role == "officer"
    assert webauth.verify_password(users, "olga", "correct horse") is users["olga"]
    assert webauth.verify_password(users, "olga", "wrong horse") is None
    assert webauth.verify_password(users, "nobody", "correct horse") is None


def test_add_user_refuses_bad_input(tmp_path):
    p = tmp_path / "users.toml"
    with pytest.raises(ValueError, match="role"):
        webauth.add_user(p, "olga", "admin", "long enough")
    with pytest.raises(ValueError, match="name"):
        webauth.add_user(p, "ol ga", "officer", "long enough")
    with pytest.raises(ValueError, match="at least"):
        webauth.add_user(p, "olga", "officer", "short")
    assert not p.exists()


def test_replace_and_remove_user(tmp_path):
    p = tmp_path / "users.toml"
    webauth.add_user(p, "olga", "officer", "first password")
    webauth.add_user(p, "sam", "supervisor", "other password")
    webauth.add_user(p, "olga", "engineer", "second password")
    users = webauth.load_users(p)
    assert users["olga"].role == "engineer" and webauth.verify_password(users, "olga", "second password")
    assert webauth.remove_user(p, "olga") and not webauth.remove_user(p, "olga")
    assert set(webauth.load_users(p)) == {"sam"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    # near-valid files: a users table with random names, roles and hash values
    st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["officer", "engineer", "x", ""]), st.text(max_size=20)),
             max_size=4).map(lambda us: "".join(f'[users."{n}"]\nrole = "{r}"\nhash = "{h}"\n' for n, r, h in us)),
))
def test_users_file_parser_never_crashes(tmp_path, text):
    p = tmp_path / "fuzz.toml"
    p.write_bytes(text.encode("utf-8", "replace"))
    try:
        users = webauth.load_users(p)
    except webauth.UsersFileError as e:
        assert str(p) in str(e)
    else:
        assert all(u.role in webauth.ROLES for u in users.values())


def test_users_file_bad_entry_is_named(tmp_path):
    p = tmp_path / "users.toml"
    p.write_text('[users.olga]\nrole = "admin"\nhash = "x"\n')
    with pytest.raises(webauth.UsersFileError, match="olga"):
        webauth.load_users(p)


def test_lockout_after_repeated_failures(tmp_path):
    p = tmp_path / "users.toml"
    webauth.add_user(p, "olga", "officer", "correct horse")
    auth = webauth.Authenticator(p, lock_after=3, lock_window_s=60)
    for _ in range(3):
        assert auth.login("olga", "nope nope") is None
    assert auth.login("olga", "correct horse") is None  # locked even with the right password
    assert auth.counters.login_failures == 3 and auth.counters.locked_out == 1
    auth2 = webauth.Authenticator(p, lock_after=3, lock_window_s=0.01)
    for _ in range(3):
        auth2.login("olga", "nope nope")
    import time

    time.sleep(0.02)
    assert auth2.login("olga", "correct horse") is not None


def test_cli_add_user_reads_password_from_stdin(tmp_path):
    p = tmp_path / "u.toml"
    r = subprocess.run([sys.executable, "-m", "common.webauth", "add-user", str(p), "eve", "engineer"],
                       input="s3cret-password\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "s3cret-password" not in r.stdout + r.stderr
    assert webauth.verify_password(webauth.load_users(p), "eve", "s3cret-password")
    r = subprocess.run([sys.executable, "-m", "common.webauth", "add-user", str(p), "eve", "engineer"],
                       input="short\n", capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "at least" in r.stderr


def small_app(tmp_path, secure: bool):
    p = tmp_path / "users.toml"
    webauth.add_user(p, "olga", "officer", "officer-pass-1")
    webauth.add_user(p, "eve", "engineer", "engineer-pass-1")
    auth = webauth.Authenticator(p)
    app = FastAPI()

    @app.get("/api/thing")
    def thing():
        return {"ok": True}

    @app.post("/api/thing")
    def write():
        return {"written": True}

    @app.get("/eng/page")
    def eng():
        return {"eng": True}

    webauth.install(app, auth, "k" * 48, secure, "sess", rules={"/eng": ("engineer",)})
    return app, auth, p


def test_gate_login_roles_csrf(tmp_path):
    app, auth, users = small_app(tmp_path, secure=False)
    c = TestClient(app)
    assert c.get("/api/thing").status_code == 401
    assert c.get("/api/thing", headers={"accept": "text/html"}, follow_redirects=False).headers["location"] == "/login"
    r = login(c, "olga", "wrong-password")
    assert r.headers["location"].startswith("/login?error")
    assert c.get("/api/thing").status_code == 401
    r = login(c, "olga", "officer-pass-1")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c.get("/api/thing").json() == {"ok": True}
    assert c.get("/eng/page").status_code == 403
    assert c.post("/api/thing").status_code == 403  # no CSRF token
    assert c.post("/api/thing", headers={"x-csrf-token": "forged"}).status_code == 403
    assert c.post("/api/thing", headers={"x-csrf-token": csrf(c)}).json() == {"written": True}
    assert auth.counters.csrf_refused == 2 and auth.counters.forbidden == 1
    # a user removed from the file is out at once, session or not
    webauth.remove_user(users, "olga")
    os.utime(users, (os.stat(users).st_atime, os.stat(users).st_mtime + 5))
    assert c.get("/api/thing").status_code == 401


def test_login_form_needs_its_csrf_token(tmp_path):
    app, auth, _ = small_app(tmp_path, secure=False)
    c = TestClient(app)
    r = c.post("/login", data={"username": "olga", "password": "officer-pass-1", "csrf": "x"}, follow_redirects=False)
    assert "error" in r.headers["location"]
    assert c.get("/api/thing").status_code == 401
    assert auth.counters.csrf_refused == 1


def test_session_cookie_flags(tmp_path):
    app, _, _ = small_app(tmp_path, secure=True)
    c = TestClient(app, base_url="https://testserver")
    r = login(c, "eve", "engineer-pass-1")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert c.get("/eng/page").json() == {"eng": True}
    app2, _, _ = small_app(tmp_path / "b", secure=False)
    r = login(TestClient(app2), "eve", "engineer-pass-1")
    assert "secure" not in r.headers["set-cookie"].lower()


def test_session_survives_only_with_the_same_key(tmp_path):
    k1 = webauth.session_secret(tmp_path / "key")
    assert webauth.session_secret(tmp_path / "key") == k1
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600


def test_security_headers_on_every_response(tmp_path):
    app, _, _ = small_app(tmp_path, secure=False)
    c = TestClient(app)
    for r in (c.get("/login"), c.get("/api/thing"), login(c, "olga", "officer-pass-1"), c.get("/api/thing"),
              c.get("/eng/page")):
        assert r.headers["x-frame-options"] == "DENY", r.request.url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_broken_users_file_while_running_keeps_last_good(tmp_path):
    p = tmp_path / "users.toml"
    webauth.add_user(p, "olga", "officer", "officer-pass-1")
    auth = webauth.Authenticator(p)
    assert auth.login("olga", "officer-pass-1")
    p.write_text("[users.olga\nrole = ")
    os.utime(p, (os.stat(p).st_atime, os.stat(p).st_mtime + 5))
    assert auth.login("olga", "officer-pass-1") is not None
    assert auth.counters.users_file_errors == 1
    with pytest.raises(webauth.UsersFileError):  # a fresh start refuses the broken file
        webauth.Authenticator(p).users()
