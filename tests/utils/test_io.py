import os
import stat

import pytest

from aromni.errors import InputError
from aromni.utils.io import atomic_dir, atomic_path, atomic_write_json, read_json


def test_atomic_write_replaces_whole_file_and_keeps_normal_permissions(tmp_path):
    dest = tmp_path / "a.json"
    atomic_write_json(dest, {"x": 1})
    assert read_json(dest) == {"x": 1}
    mode = stat.S_IMODE(os.stat(dest).st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask
    # a failure inside the block leaves the old file intact and no temp file behind
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert read_json(dest) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_dir_refuses_to_overwrite_user_data(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as d:
        (d / "f.txt").write_text("1")
    assert (out / "f.txt").read_text() == "1"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o777 & ~mask
    with pytest.raises(InputError, match="overwrite"):
        with atomic_dir(out) as d:
            pass
    with atomic_dir(out, overwrite=True) as d:
        (d / "g.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["g.txt"]


def test_read_json_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
