"""u builders against hand-computed labels."""
import numpy as np
import pandas as pd
import pytest

from trends_ivae.data.auxiliary import RunMeta, build_aux, parse_aux_spec, task_labels, window_labels
from trends_ivae.data.images import PrepareError


def _ev(rows):
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def test_task_labels_hand_computed():
    # TR 2 s: volume t covers [2t, 2t+2)
    events = _ev([
        (1.5, 4.0, "a"),    # [1.5, 5.5): vol0 0.5 s (rest wins), vol1 full, vol2 1.5 s
        (9.0, 2.0, "b"),    # [9, 11): half of vol4 and half of vol5 -> ties go to the event
        (13.1, 0.0, "c"),   # zero duration: the volume containing the onset (vol6)
        (14.5, 1.0, "d"),   # half of vol7
        (16.0, 0.8, "a"),   # vol8: a 0.8 s, b 1.2 s -> b
        (16.8, 1.2, "b"),
        (18.0, 1.0, "x"),   # vol9: x and y tie -> the earlier start
        (19.0, 1.0, "y"),
    ])
    got = task_labels(events, 10, 2.0)
    assert list(got) == ["rest", "a", "a", "rest", "b", "b", "c", "d", "b", "x"]


def test_task_labels_straddling_block_and_delay():
    events = _ev([(3.0, 5.0, "face")])  # [3, 8) with TR 2: vol1 1 s (tie), vol2, vol3
    assert list(task_labels(events, 6, 2.0)) == ["rest", "face", "face", "face", "rest", "rest"]
    # a 4 s hemodynamic delay shifts labels two volumes later: [7, 12)
    assert list(task_labels(events, 6, 2.0, hrf_delay=4.0)) == ["rest", "rest", "rest", "face", "face", "face"]


def test_zero_duration_events_and_min_duration():
    events = _ev([(0.0, 0.0, "go"), (0.5, 0.0, "stop"), (5.9, 0.0, "stop")])
    # two point events in vol0: the earliest wins; 5.9 s is in vol2 (TR 2.5: [5, 7.5))
    assert list(task_labels(events, 4, 2.5)) == ["go", "rest", "stop", "rest"]
    # lengthened to 2 s: [5.9, 7.9) covers 1.6 s of vol2 and 0.4 s of vol3
    got = task_labels(events, 4, 2.5, min_duration=2.0)
    assert list(got) == ["go", "rest", "stop", "rest"]


def test_events_beyond_end_warn_and_clip():
    events = _ev([(2.0, 4.0, "a"), (7.0, 10.0, "b"), (30.0, 2.0, "c")])
    with pytest.warns(UserWarning, match="1 event.*dropped.*1 run past"):
        got = task_labels(events, 5, 2.0, name="run.tsv")
    assert list(got) == ["rest", "a", "a", "b", "b"]


def test_events_file_checks(tmp_path):
    bad = tmp_path / "bad_events.tsv"
    bad.write_text("start\tduration\n1\t2\n")
    with pytest.raises(PrepareError, match="bad_events.tsv.*onset"):
        task_labels(bad, 5, 2.0)
    with pytest.raises(PrepareError, match="missing_events.tsv.*does not exist"):
        task_labels(tmp_path / "missing_events.tsv", 5, 2.0)
    notype = tmp_path / "notype_events.tsv"
    notype.write_text("onset\tduration\n2\t2\n")
    with pytest.warns(UserWarning, match="notype_events.tsv.*'trial_type'.*one condition, 'event'"):
        assert list(task_labels(notype, 3, 2.0)) == ["rest", "event", "rest"]


@pytest.mark.parametrize("n, window, step, expected", [
    (10, 4, None, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),   # partial tail folded into the last window
    (10, 4, 2, [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]),      # overlapping: nearest window centre
    (7, 3, 2, [0, 0, 0, 1, 1, 2, 2]),                # ties go to the earlier window
    (10, 2, 4, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]),      # gaps (starts 0, 4, 8): nearest window
    (5, 5, None, [0, 0, 0, 0, 0]),
])
def test_window_labels(n, window, step, expected):
    assert list(window_labels(n, window, step)) == expected


def test_window_longer_than_run():
    with pytest.raises(PrepareError, match="longer than run 'r1.nii'"):
        window_labels(5, 6, name="r1.nii")


def _metas():
    return [
        RunMeta("s1r1", "01", "1", 4, 2.0, _ev([(2.0, 2.0, "a")]), {"group": "patient"}),
        RunMeta("s1r2", "01", "2", 4, 2.0, _ev([(4.0, 4.0, "b")]), {"group": "patient"}),
        RunMeta("s2r1", "02", "1", 4, 2.0, _ev([(0.0, 2.0, "b")]), {"group": "control"}),
    ]


def test_build_aux_factors_and_product():
    u = build_aux("task", _metas())
    assert u.kind == "discrete" and u.names == ["rest", "a", "b"]
    assert list(u.data) == [0, 1, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0]
    u = build_aux("subject", _metas())
    assert u.names == ["sub-01", "sub-02"] and list(u.data) == [0] * 8 + [1] * 4
    u = build_aux("run", _metas())
    assert u.names == ["run-1", "run-2"] and list(u.data) == [0] * 4 + [1] * 4 + [0] * 4
    u = build_aux("group", _metas())
    assert u.names == ["control", "patient"] and list(u.data) == [1] * 8 + [0] * 4
    u = build_aux("window", _metas(), window=2)
    assert u.names[:2] == ["sub-01_run-1_w000", "sub-01_run-1_w001"] and len(u.names) == 6
    assert list(u.data) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    u = build_aux("task+subject", _metas(), combine="product")
    assert u.names == ["rest|sub-01", "rest|sub-02", "a|sub-01", "b|sub-01", "b|sub-02"]
    assert list(u.data) == [0, 2, 0, 0, 0, 0, 3, 3, 4, 1, 1, 1]
    assert u.data.dtype == np.int64 and u.factor_codes.shape == (12, 2)
    assert u.factors[0] == {"name": "task", "levels": ["rest", "a", "b"]}


def test_build_aux_concat_is_continuous_and_the_default():
    for kw in ({}, {"combine": "concat"}):
        u = build_aux("task+subject", _metas(), **kw)
        assert u.kind == "factors" and u.store_kind == "continuous"
        assert u.dense().shape == (12, 5) and u.dense().dtype == np.float32
        assert u.names == ["task=rest", "task=a", "task=b", "subject=sub-01", "subject=sub-02"]
        assert np.all(u.dense().sum(1) == 2)


def test_one_factor_is_discrete_whatever_combine_says():
    a, b = build_aux("subject", _metas(), combine="concat"), build_aux("subject", _metas(), combine="product")
    assert a.kind == b.kind == "discrete" and a.names == b.names and list(a.data) == list(b.data)


def test_build_aux_errors():
    metas = _metas()
    metas[1].events = None
    with pytest.raises(PrepareError, match="s1r2.*no events"):
        build_aux("task", metas)
    with pytest.raises(PrepareError, match="window length"):
        build_aux("window", _metas())
    with pytest.raises(PrepareError, match="'site'.*participants"):
        build_aux("site", _metas())
    with pytest.raises(PrepareError, match="malformed"):
        parse_aux_spec("task++run")
