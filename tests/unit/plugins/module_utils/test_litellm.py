"""The LiteLLM admin API client (module_utils/_litellm.py) against an in-process fake of the proxy."""

import hashlib
import json
import ssl
from urllib.error import URLError

import pytest
from ansible_collections.thorfleet.llm.plugins.module_utils import _litellm as litellm_utils
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm import (
    LiteLLMClient,
    LiteLLMError,
    error_message,
    hash_key,
    is_hash,
)

from ..litellm_fake import API_URL, MASTER_KEY, refused, sha256, timed_out

RAW = "sk-alice-0123456789abcdefXYZ"
REAL_OPEN_URL = litellm_utils.open_url  # before any fixture replaces it with the fake


@pytest.fixture
def client(fake):
    return LiteLLMClient(API_URL, MASTER_KEY, timeout=7, validate_certs=False, retries=3)


@pytest.fixture(autouse=True)
def no_raw_key_in_any_url(fake):
    """Whatever a test does, no raw key (generated, supplied or the master key) goes into a URL."""
    yield
    for sent in fake.requests:
        assert "sk-" not in sent.url, sent.url


# --- pure helpers ---------------------------------------------------------------------------------------


def test_hash_is_sha256_over_the_whole_raw_key():
    assert hash_key(RAW) == hashlib.sha256(RAW.encode()).hexdigest()
    assert is_hash(hash_key(RAW))
    assert not is_hash(RAW)
    assert not is_hash(hash_key(RAW).upper())
    assert not is_hash(None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"error": {"message": "Key not found.", "type": "not_found_error", "param": "key", "code": "404"}},
            "Key not found.",
        ),
        ({"error": "Invalid budget_duration 'x'."}, "Invalid budget_duration 'x'."),
        ({"detail": {"error": "Custom API key values are disabled"}}, "Custom API key values are disabled"),
        ({"detail": "Not Found"}, "Not Found"),
        (
            {"detail": [{"loc": ["body", "rpm_limit"], "msg": "Input should be >= 0"}]},
            "rpm_limit: Input should be >= 0",
        ),
        ({"message": "plain"}, "plain"),
        ("not json at all", "not json at all"),
    ],
)
def test_error_messages_from_every_shape_of_answer(body, message):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert error_message(raw) == message


# --- transport ------------------------------------------------------------------------------------------


def test_requests_carry_the_master_key_and_json(client, fake):
    client.request("POST", "/key/generate", body={"key_alias": "alice"})
    sent = fake.requests[-1]
    assert sent.url == API_URL + "/key/generate"
    assert sent.headers["Authorization"] == "Bearer " + MASTER_KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body == {"key_alias": "alice"}


def test_timeout_and_certificate_checking_reach_open_url(monkeypatch):
    seen = {}

    class Answer:
        status = 200

        def read(self):
            return b"{}"

    def open_url(url, **kwargs):
        seen.update(kwargs, url=url)
        return Answer()

    monkeypatch.setattr(litellm_utils, "open_url", open_url)
    LiteLLMClient(API_URL + "/", MASTER_KEY, timeout=7, validate_certs=False).request("GET", "/key/list", {"page": 1})
    assert seen["url"] == API_URL + "/key/list?page=1"
    assert (seen["timeout"], seen["validate_certs"], seen["method"]) == (7, False, "GET")
    assert isinstance(seen["context"], ssl.SSLContext)


def test_one_ssl_context_per_client_made_by_ansible_for_https(fake, monkeypatch):
    made = []
    monkeypatch.setattr(
        litellm_utils, "make_context", lambda **kwargs: made.append(kwargs) or ssl.create_default_context()
    )
    contexts = []
    monkeypatch.setattr(
        litellm_utils, "open_url", lambda url, **kwargs: contexts.append(kwargs["context"]) or fake(url, **kwargs)
    )
    client = LiteLLMClient("https://litellm.test:12434", MASTER_KEY, validate_certs=False)
    for _attempt in range(3):
        client.list_keys()
    assert made == [{"validate_certs": False}]
    assert len(contexts) == 3 and len({id(context) for context in contexts}) == 1


def test_plain_http_needs_no_ca_bundle(fake, monkeypatch):
    monkeypatch.setattr(litellm_utils, "make_context", lambda **kwargs: pytest.fail("CA bundle loaded for http"))
    LiteLLMClient(API_URL, MASTER_KEY).list_keys()


def test_the_transport_is_ansibles_request(monkeypatch):
    calls = []

    class Request:
        def open(self, method, url, **kwargs):
            calls.append((method, url, kwargs["context"]))
            return "answer"

    monkeypatch.setattr(litellm_utils, "Request", Request)
    assert REAL_OPEN_URL("http://x/y", method="POST", context="ctx", data=b"{}") == "answer"
    assert calls == [("POST", "http://x/y", "ctx")]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500])
def test_error_statuses_fail_at_once_with_status_message_and_path(client, fake, sleeps, status):
    fake.fail("GET", "/key/list", status, body={"error": {"message": f"nope {status}", "type": "whatever"}})
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys(key_alias="alice")
    error = caught.value
    assert (error.status, error.message, error.attempts) == (status, f"nope {status}", 1)
    assert error.path == "/key/list?key_alias=alice&return_full_object=true&page=1&size=100"
    assert str(error) == f"GET {error.path} answered HTTP {status}: nope {status}"
    assert len(fake.requests) == 1
    assert sleeps == []


def test_the_status_decides_not_the_type(client, fake):
    # A 200 whose body looks like an error is a success; a 400 typed like a success is an error.
    fake.fail("POST", "/key/update", 400, body={"error": {"message": "x", "type": "ok"}})
    with pytest.raises(LiteLLMError) as caught:
        client.update_key(sha256(RAW), {"rpm_limit": 1})
    assert caught.value.status == 400


def test_503_is_retried_with_backoff_then_fails(client, fake, sleeps):
    fake.fail("GET", "/key/list", 503, times=10)
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys()
    assert (caught.value.status, caught.value.attempts) == (503, 4)
    assert "(after 4 attempts)" in str(caught.value)
    assert len(fake.requests) == 4
    assert len(sleeps) == 3
    assert all(base <= delay <= base * 1.25 for base, delay in zip((1, 2, 4), sleeps, strict=True))


def test_503_then_success(client, fake, sleeps):
    fake.fail("GET", "/key/list", 503, times=2)
    assert client.list_keys() == []
    assert len(fake.requests) == 3
    assert len(sleeps) == 2


def test_backoff_is_capped(fake, sleeps):
    client = LiteLLMClient(API_URL, MASTER_KEY, retries=8, backoff=1, max_backoff=5)
    fake.fail("GET", "/key/list", 503, times=20)
    with pytest.raises(LiteLLMError):
        client.list_keys()
    assert max(sleeps) <= 5 * 1.25


def test_no_retries_when_told(fake, sleeps):
    client = LiteLLMClient(API_URL, MASTER_KEY, retries=0)
    fake.fail("GET", "/key/list", 503, times=5)
    with pytest.raises(LiteLLMError):
        client.list_keys()
    assert (len(fake.requests), sleeps) == (1, [])


def test_connection_errors_are_retried(client, fake, sleeps):
    fake.fail("GET", "/key/list", exception=refused(), times=2)
    assert client.list_keys() == []
    assert len(fake.requests) == 3


def test_unreachable_proxy_fails_without_a_status(client, fake, sleeps):
    fake.fail("GET", "/key/list", exception=refused(), times=10)
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys()
    assert caught.value.status is None
    assert "cannot reach the LiteLLM proxy (after 4 attempts)" in str(caught.value)
    assert "Connection refused" in str(caught.value)


def test_tls_failures_are_not_retried(client, fake, sleeps):
    fake.fail("GET", "/key/list", exception=URLError(ssl.SSLError("CERTIFICATE_VERIFY_FAILED")), times=10)
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys()
    assert caught.value.status is None
    assert len(fake.requests) == 1


def test_a_generate_that_may_have_arrived_is_not_resent_without_a_custom_key(client, fake, sleeps):
    fake.fail("POST", "/key/generate", exception=timed_out(), times=10)
    with pytest.raises(LiteLLMError):
        client.generate_key({"key_alias": "alice"})
    assert len(fake.calls("POST", "/key/generate")) == 1


def test_a_generate_that_never_arrived_is_resent(client, fake, sleeps):
    fake.fail("POST", "/key/generate", exception=refused(), times=1)
    answer = client.generate_key({"key_alias": "alice"})
    assert answer["key_alias"] == "alice"
    assert len(fake.calls("POST", "/key/generate")) == 2


def test_a_generate_with_a_custom_key_is_resent_after_a_timeout(client, fake, sleeps):
    fake.fail("POST", "/key/generate", exception=timed_out(), times=1)
    client.generate_key({"key_alias": "alice", "key": RAW})
    assert len(fake.calls("POST", "/key/generate")) == 2
    assert fake.row("alice")["token"] == sha256(RAW)


def test_raw_keys_are_redacted_from_errors(client, fake):
    client.add_secret(RAW)
    leaky = {"error": {"message": f"bad {RAW} and {MASTER_KEY} and sk-SomethingElse_123 (sk-...abcd)"}}
    fake.fail("GET", "/key/list", 400, body=leaky)
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys()
    text = str(caught.value)
    assert RAW not in text and MASTER_KEY not in text and "SomethingElse" not in text
    assert "sk-...abcd" in text  # LiteLLM's own masked key_name stays readable


def test_generated_keys_are_redacted_from_later_errors(client, fake):
    raw = client.generate_key({"key_alias": "alice"})["key"]
    fake.fail("GET", "/key/list", 400, body={"error": f"mentions {raw[3:]} and {raw}"})
    with pytest.raises(LiteLLMError) as caught:
        client.list_keys()
    assert raw not in str(caught.value)


def test_non_json_success_is_an_error(monkeypatch):
    class Answer:
        status = 200

        def read(self):
            return b"<html>"

    monkeypatch.setattr(litellm_utils, "open_url", lambda url, **kwargs: Answer())
    with pytest.raises(LiteLLMError) as caught:
        LiteLLMClient(API_URL, MASTER_KEY).request("GET", "/key/list")
    assert (caught.value.status, caught.value.message) == (200, "the answer is not JSON")


# --- keys -----------------------------------------------------------------------------------------------


def test_key_info_by_hash(client, fake):
    fake.add_key(RAW, key_alias="alice", rpm_limit=5)
    row = client.key_info(sha256(RAW))
    assert (row["token"], row["key_alias"], row["rpm_limit"], row["status"]) == (sha256(RAW), "alice", 5, "active")
    assert fake.requests[-1].target == "/key/info?key=" + sha256(RAW)


def test_key_info_absent_and_deleted_are_none(client, fake):
    assert client.key_info(sha256(RAW)) is None
    fake.add_key(RAW, key_alias="alice")
    client.delete_keys(tokens=[sha256(RAW)])
    assert client.key_info(sha256(RAW)) is None
    assert fake.requests[-1].target == "/key/info?key=" + sha256(RAW)  # answered 200, status deleted


def test_raw_keys_are_refused_where_a_hash_belongs(client, fake):
    for call in (
        lambda: client.key_info(RAW),
        lambda: client.find_by_hash(RAW),
        lambda: client.update_key(RAW, {"rpm_limit": 1}),
        lambda: client.delete_keys(tokens=[RAW]),
    ):
        with pytest.raises(ValueError, match="never a raw key"):
            call()
    assert fake.requests == []


def test_listing_walks_every_page_of_100(client, fake):
    for index in range(250):
        fake.add_key(key_alias=f"user{index:03}", team_id="t1")
    fake.add_key(key_alias="other", team_id="t2")
    keys = client.list_keys(team_id="t1")
    assert len(keys) == 250 and len({key["token"] for key in keys}) == 250
    assert [request.query for request in fake.requests] == [
        {"team_id": "t1", "return_full_object": "true", "page": str(page), "size": "100"} for page in (1, 2, 3)
    ]


def test_find_by_alias_and_hash_are_exact(client, fake):
    fake.add_key(RAW, key_alias="alice")
    fake.add_key(key_alias="alice2")
    assert [key["key_alias"] for key in client.find_by_alias("alice")] == ["alice"]
    assert [key["token"] for key in client.find_by_hash(sha256(RAW))] == [sha256(RAW)]
    assert fake.requests[-1].query["key_hash"] == sha256(RAW)


def test_list_all_keys_rescans_when_keys_vanish_between_pages(client, fake, monkeypatch):
    for index in range(150):
        fake.add_key(key_alias=f"user{index:03}")
    real_list = fake._list
    state = {"calls": 0}

    def shifting_list(request):
        state["calls"] += 1
        if state["calls"] == 2:  # someone deletes a key of page 1 while page 2 is fetched
            newest = max(fake.keys.values(), key=lambda row: row["_order"])
            fake.deleted[newest["token"]] = fake.keys.pop(newest["token"])
        return real_list(request)

    monkeypatch.setattr(fake, "_list", shifting_list)
    keys = client.list_all_keys()
    assert len(keys) == 149
    assert state["calls"] == 4  # the first scan missed a key: scanned again


def test_managed_keys_are_those_with_the_marker(client, fake):
    fake.add_key(key_alias="ours", metadata={"thorfleet_managed": True})
    fake.add_key(key_alias="theirs", metadata={"thorfleet_managed": "yes"})
    fake.add_key(key_alias="bare")
    assert [key["key_alias"] for key in client.list_managed_keys()] == ["ours"]


def test_update_by_hash_sends_only_the_fields(client, fake):
    fake.add_key(RAW, key_alias="alice")
    client.update_key(sha256(RAW), {"rpm_limit": 3})
    assert fake.requests[-1].body == {"key": sha256(RAW), "rpm_limit": 3}
    assert fake.row("alice")["rpm_limit"] == 3


def test_update_of_a_missing_key_is_404(client, fake):
    with pytest.raises(LiteLLMError) as caught:
        client.update_key(sha256(RAW), {"rpm_limit": 3})
    assert (caught.value.status, caught.value.message) == (404, "Key not found.")


def test_delete_by_hash_and_by_alias(client, fake):
    fake.add_key(RAW, key_alias="alice")
    fake.add_key(key_alias="bob")
    assert client.delete_keys(tokens=[sha256(RAW)]) == [sha256(RAW)]
    assert fake.requests[-1].body == {"keys": [sha256(RAW)]}
    assert client.delete_keys(key_aliases=["bob"]) == ["bob"]
    assert fake.requests[-1].body == {"key_aliases": ["bob"]}
    assert fake.keys == {}


def test_deleting_what_is_not_there_is_no_error(client, fake):
    assert client.delete_keys(tokens=[sha256(RAW)]) == []
    with pytest.raises(ValueError):
        client.delete_keys()


def test_the_master_key_is_required():
    with pytest.raises(ValueError):
        LiteLLMClient(API_URL, "")
