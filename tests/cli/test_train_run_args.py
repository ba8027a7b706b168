import pytest

from aromni.cli.main import main


@pytest.mark.parametrize("command, data_flag", [("codec", "--audio"), ("vqgan", "--images")])
def test_trainers_share_run_flags_and_refuse_config_with_resume(command, data_flag, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 2\n")
    args = [command, "train", data_flag, str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(config),
            "--resume", "steps=3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--config cannot be combined with --resume" in err and "key=value" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main([command, "train", "--help"])
    usage = capsys.readouterr().out
    for flag in ("--out", "--config", "--resume", "--overwrite", "--quiet", "key=value"):
        assert flag in usage
