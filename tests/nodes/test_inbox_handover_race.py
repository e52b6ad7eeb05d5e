"""Nodes share the inbox's staging folder (on the inbox's share): a node that finishes hand-overs at its start can
meet the node that received the message moving the same folder into the inbox. The folder goes in once, and the
node that came second goes on (before, its start stopped on FileNotFoundError, seen with nodes killed at random)."""

from __future__ import annotations

import os

import pytest

from gateway.inbound import inbox as inbox_module
from gateway.journal.phases import Phase
from tests.dpo.test_inbox_handover import TRANSFER, Crash, _receiver, one_message_setting


@pytest.mark.parametrize("moment", ["before its check", "between its check and its rename"])
def test_a_hand_over_another_node_finished_first_is_left_to_it(tmp_path, monkeypatch, moment):
    config, identity, trust, channel, message_id = one_message_setting(tmp_path)
    receiving, journal = _receiver(config, identity, trust, channel)
    real_durable_rename, real_rename = inbox_module.durable_rename, os.rename

    def crash(*_args: object) -> None:
        raise Crash

    # The receiving node has journaled IN_INBOX and not yet moved the folder when the other node starts.
    monkeypatch.setattr(inbox_module, "durable_rename", crash)
    with pytest.raises(Crash):
        receiving.take(TRANSFER)
    staging = config.folders.inbox_staging / message_id
    assert staging.is_dir() and journal.find_live("in", message_id).phase == Phase.IN_INBOX

    def receiving_node_moves_it_first(source, target) -> None:
        real_rename(staging, config.folders.inbox / message_id)
        return real_rename(source, target) if moment != "before its check" else real_durable_rename(source, target)

    starting, other_journal = _receiver(config, identity, trust, channel)
    if moment == "before its check":
        monkeypatch.setattr(inbox_module, "durable_rename", receiving_node_moves_it_first)
    else:
        monkeypatch.setattr(inbox_module, "durable_rename", real_durable_rename)
        monkeypatch.setattr(os, "rename", receiving_node_moves_it_first)
    try:
        assert starting.inbox.recover() == 1
        assert os.listdir(config.folders.inbox) == [message_id]
        assert os.listdir(config.folders.inbox_staging) == []
    finally:
        for receiver, its_journal in ((receiving, journal), (starting, other_journal)):
            receiver.close()
            receiver.statuses.close()
            its_journal.close()
