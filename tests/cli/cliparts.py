"""Running ``aromni`` in-process for the CLI tests."""

from aromni.cli.main import main


def run(argv, capsys):
    """``(exit code, stdout, stderr lines)`` of ``aromni ARGV`` in-process (argparse errors raise SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, [ln for ln in err.splitlines() if ln.strip()]
