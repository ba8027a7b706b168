import numpy as np
import pytest

from aromni.errors import InputError
from aromni.training.data.mixing import MixingSampler, group_indices


def _groups(sizes):
    out, start = {}, 0
    for g, n in sizes.items():
        out[g] = np.arange(start, start + n)
        start += n
    return out


def _drain(s, limit=10**6):
    out = []
    while len(out) < limit:
        i = s.next()
        if i is None:
            break
        out.append(i)
    return out


def test_ratios_match_the_paper_mixture_statistically():
    # 7000 cycling draws, expected shares 0.5/3.5, 1/3.5, 2/3.5. The binomial std of a share is <= 0.006 here;
    # the tolerance 0.02 is > 3 std.
    s = MixingSampler(_groups({"text": 500, "image": 500, "speech": 500}), {"text": 0.5, "image": 1, "speech": 2},
                      exhaust="cycle", seed=3)
    draws = np.asarray([s.next() for _ in range(7000)])
    share = np.asarray([(draws < 500).mean(), ((draws >= 500) & (draws < 1000)).mean(), (draws >= 1000).mean()])
    assert np.abs(share - np.asarray([0.5, 1, 2]) / 3.5).max() < 0.02


def test_stop_mode_ends_when_a_group_is_exhausted_and_never_repeats():
    groups = _groups({"text": 1000, "image": 1000, "speech": 40})
    s = MixingSampler(groups, {"text": 0.5, "image": 1, "speech": 2}, exhaust="stop", seed=0)
    epoch = _drain(s)
    assert len(epoch) == len(set(epoch))  # no sample twice in an epoch
    assert sum(i >= 2000 for i in epoch) == 40  # the scarce group was used up exactly once ...
    assert epoch[-1] >= 2000  # ... and its last sample ended the epoch
    assert s.next() is None and s.peek() is None
    # Roughly 0.5/2*40 text and 1/2*40 image samples came along (loose: it is one random epoch).
    assert 5 <= sum(i < 1000 for i in epoch) <= 25 and 10 <= sum(1000 <= i < 2000 for i in epoch) <= 40
    s.start_epoch(1)
    epoch1 = _drain(s)
    assert epoch1 != epoch  # a new epoch reshuffles


def test_cycle_mode_reshuffles_exhausted_groups():
    s = MixingSampler(_groups({"speech": 10}), {"speech": 1}, exhaust="cycle", seed=1)
    first, second = [s.next() for _ in range(10)], [s.next() for _ in range(10)]
    assert sorted(first) == sorted(second) == list(range(10)) and first != second


def test_natural_ratios_are_one_uniform_pass():
    groups = _groups({"text": 7, "image": 50, "speech": 3})
    s = MixingSampler(groups, {}, exhaust="stop", seed=2)
    epoch = _drain(s)
    assert sorted(epoch) == list(range(60))
    assert s.epoch_size() == 60


def test_peek_and_state_round_trip_mid_epoch():
    groups = _groups({"text": 30, "image": 30, "speech": 30})
    a = MixingSampler(groups, {"text": 0.5, "image": 1, "speech": 2}, seed=5)
    for _ in range(17):
        p = a.peek()
        assert a.next() == p
    state = a.state_dict()
    rest_a = _drain(a)
    b = MixingSampler(groups, {"text": 0.5, "image": 1, "speech": 2}, seed=5)
    b.load_state_dict(state)
    assert _drain(b) == rest_a
    c = MixingSampler(groups, {"text": 0.5, "image": 1, "speech": 2}, seed=6)
    with pytest.raises(InputError, match="seed"):
        c.load_state_dict(state)


def test_same_seed_same_order_and_zero_ratio_groups_are_skipped():
    groups = group_indices(["text", "image", "speech", "image", "text", "speech"] * 10)
    a = MixingSampler(groups, {"text": 1, "image": 0, "speech": 1}, exhaust="cycle", seed=9)
    b = MixingSampler(groups, {"text": 1, "image": 0, "speech": 1}, exhaust="cycle", seed=9)
    seq = [a.next() for _ in range(100)]
    assert seq == [b.next() for _ in range(100)]
    assert not set(seq) & set(groups["image"].tolist())
    with pytest.raises(InputError, match="no data"):
        MixingSampler(groups, {"video": 1})
