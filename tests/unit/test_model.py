"""Message ids: unique, time-ordered, the same shape from new_id and a batch's sequence."""

from __future__ import annotations

from gateway.core.model import id_sequence, new_id


def test_a_batch_sequence_gives_unique_ordered_ids_of_the_single_id_shape() -> None:
    single = new_id()
    first, second = id_sequence(), id_sequence()
    batch = [first() for _ in range(12_000)]  # past the table of preformatted counters
    assert all(len(i) == len(single) == 28 for i in batch)
    assert batch == sorted(batch) and len(set(batch)) == len(batch)
    assert batch[10_001].endswith("002711")
    other = [second() for _ in range(100)]
    assert not set(other) & set(batch)  # another batch draws other random digits
    assert all(i[:12] >= single[:12] for i in batch)  # milliseconds first: time order
