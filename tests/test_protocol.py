"""Pure protocol functions: frame parsing, handshake decisions, chunking."""

from __future__ import annotations

import json

import pytest

from runwire.protocol.envelope import Envelope, chunk_frames, encode, split_chunks, text_frame
from runwire.protocol.frames import (
    FrameError,
    Ping,
    Resume,
    SendMessage,
    StopAgent,
    parse_client_frame,
)
from runwire.protocol.handshake import b64url_encode, credentials, origin_allowed


def frame(type: str, payload: object = None, **extra: object) -> str:
    return json.dumps({"type": type, "payload": payload or {}, **extra})


@pytest.mark.parametrize("kind", ["user_message", "chat"])
def test_user_message_and_chat_parse_to_send_message(kind: str) -> None:
    parsed = parse_client_frame(frame(kind, {"content": "hi", "thread_id": "t-1",
                                             "message_id": "m-1"}, request_id="r1"))
    assert parsed == SendMessage(content="hi", thread_id="t-1", message_id="m-1", request_id="r1")


def test_start_agent_takes_user_request_and_agent() -> None:
    parsed = parse_client_frame(frame("start_agent", {"user_request": "go", "agent": "helper",
                                                      "settings": {"multitask_strategy": "reject"}}))
    assert isinstance(parsed, SendMessage)
    assert (parsed.content, parsed.agent, parsed.multitask_strategy) == ("go", "helper", "reject")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_json"),
        (frame("teleport"), "unknown_type"),
        (frame("user_message", {"content": ""}), "validation_error"),
        (frame("user_message", {"content": "   "}), "validation_error"),
        (frame("user_message", {}), "validation_error"),
        (frame("user_message", {"content": "x", "thread_id": "bad id!"}), "validation_error"),
        (frame("user_message", {"content": "x", "settings": {"multitask_strategy": "yolo"}}),
         "validation_error"),
        (frame("stop_agent", {}), "validation_error"),
        (frame("resume", {"thread_id": "t", "after_seq": -1}), "validation_error"),
        (json.dumps({"payload": {}}), "validation_error"),
        (json.dumps({"type": "ping", "payload": []}), "validation_error"),
    ],
)
def test_bad_frames_become_errors_with_a_code(text: str, code: str) -> None:
    parsed = parse_client_frame(text)
    assert isinstance(parsed, FrameError)
    assert parsed.code == code
    assert parsed.message


def test_control_frames_parse() -> None:
    assert parse_client_frame(frame("ping", request_id="p")) == Ping("p")
    assert parse_client_frame(frame("stop_agent", {"run_id": "r"})) == StopAgent("r", None)
    assert parse_client_frame(frame("resume", {"thread_id": "t", "after_seq": 3})) == Resume("t", 3)


def test_error_keeps_request_id() -> None:
    parsed = parse_client_frame(frame("user_message", {"content": ""}, request_id="abc"))
    assert isinstance(parsed, FrameError) and parsed.request_id == "abc"


def test_subprotocol_token_selects_runwire_v1_and_never_echoes_token() -> None:
    creds = credentials(["runwire.v1", "jwt." + b64url_encode("tok.en.sig")], None)
    assert creds == type(creds)(token="tok.en.sig", subprotocol="runwire.v1")


def test_jwt_only_subprotocol_is_echoed_for_old_clients() -> None:
    proto = "jwt." + b64url_encode("a.b.c")
    assert credentials([proto], None).subprotocol == proto


def test_bearer_header_is_read_when_no_subprotocol_token() -> None:
    assert credentials([], "Bearer xyz").token == "xyz"
    assert credentials([], "Basic xyz").token is None


def test_unreadable_subprotocol_token_is_not_missing() -> None:
    assert credentials(["jwt.%%%"], None).token == ""


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "h:1", (), True),
        ("http://h:1", "h:1", (), True),
        ("http://evil.example", "h:1", (), False),
        ("https://app.example", "h:1", ("https://app.example",), True),
        ("null", "h:1", (), False),
    ],
)
def test_origin_rules(origin: str | None, host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


def test_chunks_cut_between_code_points_and_rejoin_exactly() -> None:
    text = encode("tool_completed", {"result": "é€😀" * 5000 + "x" * 777})
    parts = split_chunks(text, 1000)
    assert "".join(parts) == text
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert len(parts) > 1


def test_chunk_frames_carry_index_and_total() -> None:
    text = "y" * 2500
    frames = [json.loads(f) for f in chunk_frames(text, 1000, "c1")]
    assert [f["payload"]["index"] for f in frames] == [0, 1, 2]
    assert {f["payload"]["total"] for f in frames} == {3}
    assert "".join(f["payload"]["data"] for f in frames) == text


def test_envelope_chunks_small_events_pass_through() -> None:
    env = Envelope(user_id="u", type="pong", text=encode("pong", {}))
    assert env.chunks(65536) == [env.text]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_prepared_text_frame_is_what_websockets_would_write(size: int) -> None:
    from websockets.frames import Frame, Opcode

    data = b"a" * size
    assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)
    env = Envelope(user_id="u", type="x", text="é" * 10)
    assert env.framed() is env.framed()  # made once, shared by every connection
    assert env.framed() == text_frame(env.text.encode())
