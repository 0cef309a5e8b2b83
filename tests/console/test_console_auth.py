"""Console sign-in, session cookie, CSRF and roles."""

from __future__ import annotations

from console.helpers import Console, csrf_of, post_form, sign_in

from gateway.services import services
from gateway.store.audit import events


def test_signed_out_pages_send_to_sign_in(console: Console) -> None:
    client = console.client()
    for path in ("/console/", "/console/messages", "/console/outbox", "/console/audit"):
        answer = client.get(path)
        assert answer.status_code == 302
        assert "/console/sign-in" in answer.headers["Location"]


def test_sign_in_sets_a_session_cookie_that_scripts_cannot_read(console: Console) -> None:
    client = console.client()
    token = csrf_of(client.get("/console/sign-in").get_data(as_text=True))
    answer = client.post(
        "/console/sign-in",
        data={"key": console.admin_key, "csrf_token": token, "next": "/console/outbox"},
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/console/outbox")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert client.get("/console/messages").status_code == 200


def test_sign_in_never_redirects_off_the_console(console: Console) -> None:
    client = console.client()
    for elsewhere in ("https://evil.example/", "//evil.example/", "/records"):
        token = csrf_of(client.get("/console/sign-in").get_data(as_text=True))
        answer = client.post(
            "/console/sign-in",
            data={"key": console.viewer_key, "csrf_token": token, "next": elsewhere},
        )
        assert answer.headers["Location"].endswith("/console/messages")


def test_other_keys_and_wrong_keys_are_refused(console: Console) -> None:
    client = console.client()
    others = (console.gateway.platform_key, console.gateway.source_keys["emis-web"])
    for key in ("", "spg_a_nonsense", *others):
        token = csrf_of(client.get("/console/sign-in").get_data(as_text=True))
        answer = client.post("/console/sign-in", data={"key": key, "csrf_token": token})
        assert answer.status_code == 401
        assert "There is a problem" in answer.get_data(as_text=True)
        assert client.get("/console/messages").status_code == 302


def test_a_post_without_the_csrf_token_is_refused_with_a_plain_page(console: Console) -> None:
    client = console.client(console.admin_key)
    for data in ({}, {"csrf_token": "wrong"}):
        answer = client.post("/console/sign-out", data=data)
        assert answer.status_code == 400
        assert answer.content_type.startswith("text/html")
        assert "The form has expired" in answer.get_data(as_text=True)
    assert client.get("/console/messages").status_code == 200  # still signed in
    no_token = console.client().post("/console/sign-in", data={"key": console.admin_key})
    assert no_token.status_code == 400


def test_sign_out_ends_the_session(console: Console) -> None:
    client = console.client(console.viewer_key)
    answer = post_form(client, "/console/messages", "/console/sign-out")
    assert answer.status_code == 302
    assert client.get("/console/messages").status_code == 302


def test_an_expired_session_asks_for_the_key_again(console: Console) -> None:
    client = console.client(console.viewer_key)
    with client.session_transaction() as held:
        held["console_user"] = {**held["console_user"], "until": 0}
    assert client.get("/console/messages").status_code == 302


def test_viewers_look_but_do_not_act(console: Console) -> None:
    client = console.client(console.viewer_key)
    page = client.get("/console/messages").get_data(as_text=True)
    assert 'id="nhs"' not in page and "Reprocess" not in page
    assert client.get("/console/messages?nhs=9990000018").status_code == 400
    actions = ("/console/reprocess", "/console/messages/1/reprocess", "/console/outbox/1/replay")
    for action in actions:
        assert post_form(client, "/console/messages", action).status_code == 403


def test_sign_in_and_pages_are_in_the_audit_trail(console: Console) -> None:
    client = console.client()
    sign_in(client, console.viewer_key)
    client.get("/console/outbox")
    client.get("/console/volumes")
    found = events(services(console.gateway.app).db, actor="victor")
    assert [(e["actor_kind"], e["action"], e["target_kind"]) for e in found] == [
        ("console", "sign-in", "console"),
        ("console", "read", "outbox"),
        ("console", "read", "volumes"),
    ]
    assert found[0]["detail"] == {"role": "viewer"}
