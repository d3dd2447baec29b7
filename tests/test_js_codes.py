"""The JS client's close-code table (clients/js/packages/client/src/codes.ts) is the
server's (runwire.protocol.codes.CloseCode), and each code has a reconnect rule that matches
docs/protocol.md §3."""

from __future__ import annotations

import re
from pathlib import Path

from runwire.protocol.codes import CloseCode

ROOT = Path(__file__).parent.parent
CODES_TS = ROOT / "clients/js/packages/client/src/codes.ts"
PROTOCOL_MD = ROOT / "docs/protocol.md"
# What docs/protocol.md §3's "client should" column says, as codes.ts's rules.
DOC_RULES = {
    "reconnect on demand": "on-demand",
    "reconnect with backoff, resume": "backoff",
    "reconnect, resume": "backoff",
    "not reconnect automatically": "never",
    "not reconnect": "never",
    "not reconnect in a loop": "never",
    "reconnect, resume (nothing is lost)": "backoff",
    "refresh the token, then reconnect": "refresh-token",
    "not resend that frame": "backoff",
}


def _object(name: str, value: str) -> dict[str, str]:
    """`export const <name> ... = { KEY: value, ... }` from codes.ts, as strings."""
    text = CODES_TS.read_text()
    block = re.search(rf"export const {name}\b[^=]*=\s*\{{(.*?)\}}", text, re.S)
    assert block, f"{name} not found in {CODES_TS}"
    return dict(re.findall(rf"^\s*([A-Z_]+):\s*({value}),", block.group(1), re.M))


def test_codes_ts_has_exactly_the_servers_close_codes() -> None:
    js = {name: int(code) for name, code in _object("CloseCode", r"\d+").items()}
    assert js == {c.name: c.value for c in CloseCode}


def test_every_close_code_has_the_reconnect_rule_the_protocol_doc_gives() -> None:
    rules = {name: rule.strip('"') for name, rule in _object("RECONNECT_RULES", r'"[a-z-]+"').items()}
    assert set(rules) == {c.name for c in CloseCode}
    doc = PROTOCOL_MD.read_text().split("## 3. Close codes", 1)[1]
    rows = dict(re.findall(r"^\| (\d{4}) \|[^|]*\| ([^|]+?) \|$", doc, re.M))
    for code in CloseCode:
        said = rows.get(str(code.value))
        assert said is not None, f"docs/protocol.md §3 has no row for {code.value}"
        assert said in DOC_RULES, f"unknown rule wording for {code.value}: {said!r}"
        assert rules[code.name] == DOC_RULES[said], (code, said)
