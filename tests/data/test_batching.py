import numpy as np
import pytest

from charrnn.data.batching import BatchingError, StreamBatcher, eval_batches


def test_batches_continue_each_stream():
    ids = np.arange(1000, dtype=np.uint16)
    batcher = StreamBatcher(ids, batch_size=4, bptt=10, random_offset=False)
    first, second = batcher.next_batch(), batcher.next_batch()
    assert first.inputs.shape == (4, 10)
    assert first.first and not second.first
    assert np.array_equal(first.targets.numpy(), first.inputs.numpy() + 1)
    assert np.array_equal(second.inputs[:, 0].numpy(), first.inputs[:, -1].numpy() + 1)
    stream_length = (1000 - 1) // 4
    assert first.inputs[:, 0].tolist() == [0, stream_length, 2 * stream_length, 3 * stream_length]


def test_epochs_wrap_with_seeded_offsets():
    ids = np.arange(500, dtype=np.uint16)
    batcher = StreamBatcher(ids, batch_size=2, bptt=7, seed=3)
    per_epoch = batcher.batches_per_epoch
    batches = [batcher.next_batch() for _ in range(per_epoch * 3)]
    firsts = [b for b in batches if b.first]
    assert [b.epoch for b in firsts] == [0, 1, 2]
    offsets = [int(b.inputs[0, 0]) for b in firsts]
    assert offsets[0] == 0 and all(0 <= o < 7 for o in offsets)
    again = StreamBatcher(ids, batch_size=2, bptt=7, seed=3)
    assert [int(again.next_batch().inputs[0, 0]) for _ in range(per_epoch * 3)] == [
        int(b.inputs[0, 0]) for b in batches
    ]


def test_state_dict_resumes_position():
    ids = np.arange(300, dtype=np.uint16)
    batcher = StreamBatcher(ids, batch_size=3, bptt=5, seed=1)
    for _ in range(7):
        batcher.next_batch()
    resumed = StreamBatcher(ids, batch_size=3, bptt=5, seed=1)
    resumed.load_state_dict(batcher.state_dict())
    for _ in range(40):
        assert np.array_equal(batcher.next_batch().inputs, resumed.next_batch().inputs)


def test_too_small_corpus_says_sizes():
    with pytest.raises(
        BatchingError,
        match=r"corpus too small for one batch: 50 training tokens, need at least 101 for --batch-size 4 x --bptt 20",
    ):
        StreamBatcher(np.arange(50), batch_size=4, bptt=20)


def test_eval_batches_cover_the_split_once():
    ids = np.arange(103)
    chunks = eval_batches(ids, batch_size=2, bptt=10)
    seen = np.concatenate([t.numpy().ravel() for _, t in chunks])
    assert len(seen) == len(set(seen.tolist())) == 102
