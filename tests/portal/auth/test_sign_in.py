"""Sign-in rules of level-3 protection: policy, lockout, idle timeout, single session, forced change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth import services
from portal.auth.passwords import hash_password, policy_problems, verify_password
from portal.db import db, utcnow
from tests.conftest import PASSWORD, login


def actions(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Short-1a", False),  # too short
        ("alllowercaseletters", False),  # one class
        ("lowercase12345", False),  # two classes
        ("Lowercase12345", True),  # three classes
        ("lower-case-12345", True),  # lower + symbol + digit
        ("aaaaaaaaaaaa", False),
    ],
)
def test_password_policy(password: str, ok: bool) -> None:
    assert (policy_problems(password, "someone", 10, 3) == []) is ok


def test_password_may_not_contain_username() -> None:
    assert any("用户名" in p for p in policy_problems("Zhangsan-2026x", "zhangsan", 10, 3))


def test_pbkdf2_sm3_hash_round_trip_and_salt() -> None:
    first, second = hash_password("Secret-Value-1", 1000), hash_password("Secret-Value-1", 1000)
    assert first != second  # per-user salt
    assert first.startswith("pbkdf2-sm3$1000$")
    assert verify_password("Secret-Value-1", first)
    assert not verify_password("Secret-Value-2", first)
    assert not verify_password("Secret-Value-1", "garbage")


def test_sign_in_and_out(client, factory) -> None:
    user = factory.user("clerk")
    response = login(client, user.username)
    assert response.status_code == 302
    assert client.get("/account/password").status_code == 200
    client.post("/logout")
    assert client.get("/account/password").status_code == 302
    assert [e.outcome for e in actions("auth.login")] == ["success"]
    assert len(actions("auth.logout")) == 1


def test_wrong_password_is_generic_and_audited(client, factory) -> None:
    user = factory.user("clerk")
    page = login(client, user.username, "Wrong-Password-1").get_data(as_text=True)
    assert "用户名或密码错误" in page
    unknown = login(client, "nobody", "Wrong-Password-1").get_data(as_text=True)
    assert "用户名或密码错误" in unknown
    denied = actions("auth.login")
    assert [e.outcome for e in denied] == ["denied", "denied"]


def test_lockout_after_five_failures_and_expiry(client, factory) -> None:
    user = factory.user("clerk")
    for _ in range(4):
        login(client, user.username, "Wrong-Password-1")
    page = login(client, user.username, "Wrong-Password-1").get_data(as_text=True)
    assert "已锁定" in page
    # The right password is refused while locked.
    page = login(client, user.username).get_data(as_text=True)
    assert "锁定" in page
    assert len(actions("security.account_locked")) == 1
    # After the lock expires the right password works.
    db.session.refresh(user)
    user.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert login(client, user.username).status_code == 302


def test_idle_timeout_ends_session(client, factory, app) -> None:
    user = factory.user("clerk")
    login(client, user.username)
    with client.session_transaction() as sess:
        sess["last_seen"] -= 31 * 60
    response = client.get("/account/password")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert any(e.detail and "idle" in e.detail for e in actions("auth.logout"))


def test_polling_does_not_keep_a_session_alive(client, factory) -> None:
    user = factory.user("clerk")
    login(client, user.username)
    with client.session_transaction() as sess:
        before = sess["last_seen"] - 60
        sess["last_seen"] = before
    client.get("/account/password", headers={"X-Portal-Poll": "1"})
    with client.session_transaction() as sess:
        assert sess["last_seen"] == before


def test_new_sign_in_ends_the_old_session(app, factory) -> None:
    user = factory.user("clerk")
    first, second = app.test_client(), app.test_client()
    login(first, user.username)
    assert first.get("/account/password").status_code == 200
    login(second, user.username)
    response = first.get("/account/password")
    assert response.status_code == 302
    assert second.get("/account/password").status_code == 200


def test_first_sign_in_forces_password_change(client, factory, app) -> None:
    user = factory.user("clerk", must_change=True)
    login(client, user.username)
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account/password")
    page = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "weak", "confirm_password": "weak"},
    ).get_data(as_text=True)
    assert "密码长度至少" in page
    response = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "Brand-New-Pass-7",
              "confirm_password": "Brand-New-Pass-7"},
    )
    assert response.status_code == 302
    home = client.get("/")
    assert not home.headers.get("Location", "").endswith("/account/password")


def test_expired_password_forces_change(client, factory) -> None:
    user = factory.user("clerk")
    user.password_changed_at = utcnow() - timedelta(days=91)
    db.session.commit()
    login(client, user.username)
    assert client.get("/").headers["Location"].endswith("/account/password")


def test_password_reuse_is_refused(client, factory, app) -> None:
    user = factory.user("clerk")
    settings = app.config["SETTINGS"]
    assert services.change_password(user, PASSWORD, "Second-Pass-22", settings) == []
    problems = services.change_password(user, "Second-Pass-22", PASSWORD, settings)
    assert any("最近" in p for p in problems)


def test_inactive_user_cannot_sign_in(client, factory) -> None:
    user = factory.user("clerk")
    user.active = False
    db.session.commit()
    assert "用户名或密码错误" in login(client, user.username).get_data(as_text=True)
