"""attach.py: the keys the agent chooses itself."""

from __future__ import annotations

import uuid

from agent.config import Settings
from agent.lifecycle.attach import new_key, offline_attachment
from agent.message import EXPERIMENT_KEY_RE


def test_a_new_key_is_what_uuid4_hex_gives() -> None:
    """32 lowercase hex digits, a version-4 RFC 4122 UUID as comet_ml's own keys are
    (generate_guid: uuid.uuid4().hex), and accepted as an experiment key; no two alike."""
    keys = [new_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(hex=key)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == key and EXPERIMENT_KEY_RE.fullmatch(key)


def test_an_offline_run_uses_the_given_key_or_a_new_one() -> None:
    """A configured key is kept as given; without one, a new key of the same form."""
    given = "a" * 32
    assert offline_attachment(Settings(experiment_key=given)).experiment_key == given
    made = offline_attachment(Settings()).experiment_key
    assert uuid.UUID(hex=made).version == 4
