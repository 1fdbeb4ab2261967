from cityhub.connectors.mqtt.ack_order import AckSequencer


def test_acks_are_released_in_arrival_order_only():
    acks = AckSequencer()
    a, b, c = acks.received(1, 1), acks.received(2, 1), acks.received(3, 1)
    assert acks.confirm(c) == []
    assert acks.confirm(b) == []
    assert [p.mid for p in acks.confirm(a)] == [1, 2, 3]
    assert len(acks) == 0


def test_an_unconfirmed_message_holds_back_all_later_acks():
    acks = AckSequencer()
    first = acks.received(10, 1)
    later = [acks.received(mid, 1) for mid in range(11, 20)]
    for p in later:
        assert acks.confirm(p) == []
    assert len(acks) == 10
    assert [p.mid for p in acks.confirm(first)] == list(range(10, 20))


def test_in_order_confirmations_release_one_by_one():
    acks = AckSequencer()
    pending = [acks.received(mid, 1) for mid in (5, 6)]
    assert [p.mid for p in acks.confirm(pending[0])] == [5]
    assert [p.mid for p in acks.confirm(pending[1])] == [6]
