from cityhub.streams.normaliser.dedup import check_duplicate


def test_first_sighting_is_not_a_duplicate_and_is_remembered():
    dup, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    assert not dup
    assert state == {"f7": [100.0, 3.0]}


def test_same_frame_from_another_record_within_the_window_is_a_duplicate():
    _, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    dup, state2 = check_duplicate(state, "f7", now=101.0, offset=4, window=60)
    assert dup
    assert state2 == state


def test_the_same_record_replayed_is_not_a_duplicate():
    # At-least-once: after a crash the record is processed again and must produce again.
    _, state = check_duplicate(None, "f7", now=100.0, offset=3, window=60)
    dup, _ = check_duplicate(state, "f7", now=100.0, offset=3, window=60)
    assert not dup


def test_a_frame_outside_the_window_is_new_again():
    # A device that rejoined starts its frame counter over.
    _, state = check_duplicate(None, "f0", now=100.0, offset=1, window=60)
    dup, state = check_duplicate(state, "f0", now=200.0, offset=9, window=60)
    assert not dup
    assert state == {"f0": [200.0, 9.0]}


def test_state_is_bounded_and_forgets_the_oldest():
    state = None
    for i in range(10):
        _, state = check_duplicate(
            state, f"f{i}", now=100.0 + i, offset=i, window=1000, max_frames=4
        )
    assert sorted(state) == ["f6", "f7", "f8", "f9"]
