import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aromni.errors import InputError
from aromni.training.data.shards import (
    ShardDataset,
    Sample,
    ShardWriter,
    _schema,
    read_manifest,
    write_manifest,
    write_samples,
)
from aromni.vocab.conversation import Span
from aromni.vocab.layout import VocabLayout


def _sample(n, task="asr", group="speech"):
    ids = np.arange(n) + 20
    resp = np.zeros(n, dtype=bool)
    resp[n // 2:] = True
    return Sample(ids, resp, [Span("speech", 1, n // 2, "user", 0), Span("text", n // 2, n, "assistant", 1)],
                  task, group, f"rec{n}")


def test_round_trip_across_shards(tmp_path):
    samples = [_sample(n) for n in range(3, 14)]
    assert write_samples(tmp_path, "train", samples, rows_per_shard=4) == len(samples)
    assert len(list((tmp_path / "train").glob("*.parquet"))) == 3
    ds = ShardDataset(tmp_path, "train")
    assert len(ds) == len(samples) and ds.skipped == {}
    for i, s in enumerate(samples):
        got = ds[i]
        assert np.array_equal(got.ids, s.ids) and np.array_equal(got.response, s.response)
        assert got.spans == s.spans and (got.task, got.group, got.source) == (s.task, s.group, s.source)
    assert ds.lengths().tolist() == list(range(3, 14))
    assert ds.column("task") == ["asr"] * len(samples)
    write_manifest(tmp_path, VocabLayout.compact(10, 10, 10), {"train": {"rows": len(samples)}}, {"skipped": 0})
    assert read_manifest(tmp_path)["splits"]["train"]["rows"] == len(samples)


def test_corrupt_rows_are_skipped_and_counted(tmp_path):
    w = ShardWriter(tmp_path, "train")
    w.add(_sample(6))
    w.close()
    bad = [{"ids": [], "response": [], "spans": [], "task": "asr", "group": "speech", "source": "empty"},
           {"ids": [1, 2, 3], "response": [True], "spans": [], "task": "asr", "group": "speech", "source": "mask"},
           {"ids": [1, 99999], "response": [False, True], "spans": [], "task": "asr", "group": "speech", "source": "big"}]
    pq.write_table(pa.Table.from_pylist(bad, schema=_schema()), tmp_path / "train" / "shard-00001.parquet")
    ds = ShardDataset(tmp_path, "train", vocab_size=1000)
    assert len(ds) == 1 and ds.skipped == {"corrupt_rows": 3}
    assert ds[0].source == "rec6"


def test_missing_data_fails_clearly(tmp_path):
    with pytest.raises(InputError, match="no shard files"):
        ShardDataset(tmp_path, "train")
    with pytest.raises(InputError, match="manifest"):
        read_manifest(tmp_path)
    with pytest.raises(InputError, match="group"):
        _sample(4, group="video").to_row()
