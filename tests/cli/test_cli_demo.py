import json

from aromni.cli.main import main


def test_random_demo_runs_and_cached_decoding_matches(tmp_path, capsys):
    assert main(["demo", "--random", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cached_equals_full_forward"] is True
    assert summary["generated_tokens"] == len(summary["generated_ids"]) == 32
    assert "random" in summary["mode"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    # A user error must print one line, not a traceback.
    from aromni.cli import main as cli_main
    from aromni.errors import InputError

    def boom(args):
        raise InputError("x.wav: no such file", "check the path")

    parser_main = cli_main.main
    import argparse

    ns = argparse.Namespace(version=False, func=boom)
    orig = cli_main.build_parser

    class P:
        def parse_args(self, argv):
            return ns

    cli_main.build_parser = lambda: P()
    try:
        assert parser_main([]) == 2
    finally:
        cli_main.build_parser = orig
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: x.wav: no such file (check the path)"]
