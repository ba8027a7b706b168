"""Fuzz-suite fixtures: the tiny random bundle, a sandbox per case, and the outcome checks.

Every case runs in a fresh sandbox (``case`` fixture, or ``new_case()`` for one sandbox per hypothesis example):
the cwd and ``$HOME`` are fresh temporary directories, inputs go in ``case.inputs``, outputs in ``case.out``, and a
sibling ``case.outside`` holds nothing but a file we watch. After the case, no file may have appeared or changed
anywhere in the sandbox except under ``case.out`` (and ``case.inputs``, which the case wrote itself), no pickle
payload marker may exist, protected files must be unchanged and the shared bundle must be unchanged. A per-case
alarm turns a hang into a failure.

Outcomes: ``case.api(fn)`` accepts a result or an :class:`~aromni.errors.AromniError`; anything else that leaves
the API fails the case. ``case.cli(argv)`` runs ``aromni`` in-process and accepts exit 0, or exit 2 with exactly
one non-empty stderr line starting with ``error:``. ``expect="error"`` also fails an input that should have been
refused but was accepted; ``expect="ok"`` fails valid input that was refused.

``AROMNI_FUZZ_REPORT=path`` writes ``{family: {"ok": n, "clean_error": n, "failure": n}, "_total": {...}}`` at the
end of the run. Every case counts once: a test item that fails counts one ``failure`` (its last case), its other
cases (hypothesis examples that passed before it) count as what they recorded. Counting happens in the process
that runs the tests; under pytest-xdist each worker writes its counts to a parts folder and merges all parts into
``path`` under a lock, so the last worker to finish leaves the complete report (this works whether or not the
xdist controller loaded this conftest: ``pytest tests`` does not, ``pytest tests/fuzz`` does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "inference"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzparts import MAX_NEW  # noqa: E402

from aromni.errors import AromniError  # noqa: E402

#: Seconds one case may run before it counts as a hang.
CASE_TIMEOUT = float(os.environ.get("AROMNI_FUZZ_TIMEOUT", "20"))
#: Name of the file a pickle payload would create (see test_fuzz_checkpoints).
MARKER = "PWNED_MARKER"
OUTCOMES = ("ok", "clean_error", "failure")


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that product code catching Exception cannot swallow it."""


def pytest_configure(config):
    config.addinivalue_line("markers", "fuzz_timeout(seconds): per-case alarm for a fuzz test (default 20 s)")
    if not hasattr(config, "_fuzz_counts"):
        config._fuzz_counts = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))


# ------------------------------------------------------------------------------------------------ shared model
@pytest.fixture(scope="session")
def fuzz_bundle(tmp_path_factory) -> Path:
    """The tiny random bundle (every modality), with short default generations. Read-only: copy it first."""
    import torch
    from tinyparts import tiny_decoder, tiny_image_tokenizer, tiny_speech_tokenizer, tiny_text_and_layout

    from aromni.bundle import save_bundle

    state = torch.get_rng_state()
    image, speech = tiny_image_tokenizer(), tiny_speech_tokenizer()
    text, layout = tiny_text_and_layout(image.codebook_size, speech.codebook_size)
    path = tmp_path_factory.mktemp("fuzzbundle") / "tiny"
    save_bundle(path, tiny_decoder(layout, max_seq_len=512), layout, text=text, image=image, speech=speech,
                generation={"max_new_tokens": MAX_NEW})
    torch.set_rng_state(state)
    return path


@pytest.fixture(scope="session")
def fuzz_model(fuzz_bundle):
    import aromni

    return aromni.load(str(fuzz_bundle))


@pytest.fixture(scope="session")
def fuzz_checkpoints(fuzz_bundle, tmp_path_factory) -> dict[str, Path]:
    """The fuzz bundle's decoder in the Meta and HF layouts (``.pth`` / ``.bin`` pickles: where payloads go) and
    its VQGAN in Meta's ``vqgan.yaml`` + ``vqgan.ckpt``. Read-only: copy first."""
    import torch

    from aromni.models import load_decoder, save_checkpoint
    from aromni.tokenizers.base import load_tokenizer
    from aromni.tokenizers.image.formats import save_chameleon

    root = tmp_path_factory.mktemp("fuzzckpt")
    decoder = load_decoder(fuzz_bundle)
    save_checkpoint(decoder, root / "meta", "meta")
    save_checkpoint(decoder, root / "hf", "hf")
    hf_bin = root / "hf_bin"
    hf_bin.mkdir()
    (hf_bin / "config.json").write_bytes((root / "hf" / "config.json").read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(str(root / "hf" / "model.safetensors")), hf_bin / "pytorch_model.bin")
    save_chameleon(load_tokenizer(fuzz_bundle / "image"), root / "vqgan")
    return {"meta": root / "meta", "hf": root / "hf", "hf_bin": hf_bin, "vqgan": root / "vqgan"}


@pytest.fixture(scope="session")
def fuzz_synth(tmp_path_factory) -> Path:
    """A small synthetic training corpus (read-only)."""
    import torch

    from aromni.training.data.synthetic import write_synthetic_shards

    state = torch.get_rng_state()
    root = tmp_path_factory.mktemp("fuzzsynth") / "synth"
    write_synthetic_shards(root, n_train=40, n_val=4, seed=0)
    torch.set_rng_state(state)
    return root


@pytest.fixture(scope="session")
def fuzz_run(fuzz_synth, tmp_path_factory) -> Path:
    """A finished 2-step tiny training run with checkpoints at steps 1 and 2 (read-only: copy it first)."""
    import torch
    from fuzzparts import tiny_train_overrides

    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    out = tmp_path_factory.mktemp("fuzzrun") / "run"
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            Trainer(pretrain.config(None, tiny_train_overrides(fuzz_synth, out))).fit()
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(state)
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """``{relative path: sha1 (or 'dir' / 'link')}`` of everything under ``root``."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                h = hashlib.sha1()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = h.hexdigest()
            else:
                out[rel] = "special"
    return out


# ------------------------------------------------------------------------------------------------ the sandbox
class Case:
    """One fuzz case's sandbox and checks (see the module docstring)."""

    def __init__(self, root: Path, family: str, node: Any, bundle: Path | None, case_id: int = 0):
        self.root, self.family, self.node, self.case_id = root, family, node, case_id
        self.work = root / "work"          # the cwd
        self.inputs = self.work / "inputs"  # files the case creates
        self.out = self.work / "out"        # the only place outputs may go
        self.outside = root / "outside"     # must stay as it is
        self.home = root / "home"
        for d in (self.work, self.inputs, self.outside, self.home):
            d.mkdir(parents=True)
        (self.outside / "keep.txt").write_text("untouched\n")
        self.bundle = bundle
        self.protected: dict[Path, str] = {}
        self.outcomes: list[str] = []
        node.user_properties.append(("fuzz_case", [family, case_id]))

    # -------------------------------------------------------------------------------------- helpers
    @property
    def marker(self) -> Path:
        return self.outside / MARKER

    def write(self, name: str, data: bytes | str) -> Path:
        p = self.inputs / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        return p

    def copy_bundle(self, name: str = "bundle") -> Path:
        """A private copy of the shared fuzz bundle under ``inputs`` (corrupt the copy, never the original)."""
        assert self.bundle is not None, "the test must request the fuzz_bundle fixture"
        dst = self.inputs / name
        shutil.copytree(self.bundle, dst)
        return dst

    def protect(self, path: Path, content: bytes = b"precious user data\n") -> Path:
        """Pre-create ``path`` (a file) with known content; it must be unchanged at the end."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.protected[path] = hashlib.sha1(content).hexdigest()
        return path

    def protect_existing(self, root: Path) -> list[Path]:
        """Every file under ``root`` (or ``root`` itself) must keep its current content."""
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            self.protected[p] = hashlib.sha1(p.read_bytes()).hexdigest()
        return files

    def record(self, outcome: str) -> None:
        assert outcome in ("ok", "clean_error"), outcome
        self.outcomes.append(outcome)
        self.node.user_properties.append(("fuzz", [self.family, self.case_id, outcome]))

    # -------------------------------------------------------------------------------------- outcomes
    def api(self, fn, *, expect: str = "any", check=None) -> Any:
        """Call ``fn()``; a result (checked by ``check``) or an AromniError is fine, anything else fails."""
        assert expect in ("any", "ok", "error"), expect
        try:
            result = fn()
        except CaseTimeout:
            raise
        except AromniError as e:
            msg = str(e)
            assert msg.strip(), f"{type(e).__name__} with an empty message"
            if expect == "ok":
                pytest.fail(f"valid input refused: {type(e).__name__}: {msg[:300]}")
            self.record("clean_error")
            return e
        except BaseException as e:  # noqa: BLE001 - the point: nothing but AromniError may leave the API
            pytest.fail(f"non-AromniError left the API: {type(e).__name__}: {str(e)[:400]}")
        if expect == "error":
            pytest.fail(f"invalid input accepted (returned {_describe(result)})")
        if check is not None:
            check(result)
        self.record("ok")
        return result

    def cli(self, argv: list[str], *, expect: str = "any", stdin: str | None = None,
            ok_codes: tuple[int, ...] = (0,), repl: bool = False, progress: bool = False) -> tuple[int, str, str]:
        """Run ``aromni ARGV`` in-process: exit 0 (or ``ok_codes``), or exit 2 with one ``error:`` line.

        ``repl``: an interactive session (exit 0) whose stdout carries ``error: ...`` lines for refused turns;
        such a line makes the case a clean error.
        ``progress``: a long-running command (``aromni train``) that logs progress lines on stderr; on exit 2 they
        may precede the error, which must still be exactly one ``error: ...`` line, the last one.
        """
        from aromni.cli.main import main

        assert expect in ("any", "ok", "error"), expect
        out, err = io.StringIO(), io.StringIO()
        old_stdin = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main([str(a) if not isinstance(a, str) else a for a in argv])
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except CaseTimeout:
            raise
        except BaseException as e:  # noqa: BLE001
            pytest.fail(f"traceback from `aromni {_short(argv)}`: {type(e).__name__}: {str(e)[:400]}")
        finally:
            sys.stdin = old_stdin
        o, e = out.getvalue(), err.getvalue()
        shown = f"`aromni {_short(argv)}` -> exit {code}\nstderr: {e[-1500:]!r}\nstdout: {o[-600:]!r}"
        assert "Traceback" not in o and "Traceback" not in e, f"a traceback was printed\n{shown}"
        if code == 2:
            lines = [ln for ln in e.splitlines() if ln.strip()]
            if progress:
                errors = [ln for ln in lines if ln.startswith("error:")]
                assert len(errors) == 1 and lines[-1] == errors[0] and len(errors[0]) > len("error: "), \
                    f"exit 2 must end stderr with exactly one 'error: ...' line\n{shown}"
            else:
                assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > len("error: "), \
                    f"exit 2 must print exactly one 'error: ...' line on stderr\n{shown}"
            if expect == "ok":
                pytest.fail(f"valid input refused\n{shown}")
            self.record("clean_error")
        elif code in ok_codes:
            # A refused turn prints "error: ..." (after the "assistant: " prompt when the reply had started).
            errors = [ln.removeprefix("assistant: ") for ln in o.splitlines()] if repl else []
            errors = [ln for ln in errors if ln.startswith("error:")]
            if errors:
                assert all(len(ln.strip()) > len("error:") for ln in errors), f"an empty 'error:' line\n{shown}"
                if expect == "ok":
                    pytest.fail(f"valid input refused\n{shown}")
                self.record("clean_error")
            else:
                if expect == "error":
                    pytest.fail(f"invalid input accepted\n{shown}")
                self.record("ok")
        else:
            pytest.fail(f"exit code must be 0 or 2\n{shown}")
        return code, o, e

    # -------------------------------------------------------------------------------------- invariants
    def snapshot(self) -> None:
        self._before = tree_digest(self.root)
        self._bundle_before = tree_digest(self.bundle) if self.bundle is not None else {}

    def verify(self) -> None:
        after = tree_digest(self.root)
        allowed = (str(self.out.relative_to(self.root)), str(self.inputs.relative_to(self.root)))
        changed = sorted(k for k in set(after) | set(self._before)
                         if after.get(k) != self._before.get(k)
                         and not any(k == a or k.startswith(a + os.sep) for a in allowed))
        problems = []
        if changed:
            problems.append(f"files written/changed outside the output directory: {changed[:10]}")
        hits = [k for k in after if Path(k).name == MARKER]
        if hits:
            problems.append(f"a pickle payload executed (marker files {hits})")
        if self.bundle is not None and tree_digest(self.bundle) != self._bundle_before:
            problems.append(f"the shared bundle {self.bundle} was modified")
        for p, digest in self.protected.items():
            now = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
            if now != digest:
                problems.append(f"{p} was overwritten or removed without --overwrite")
        assert not problems, "; ".join(problems)


def _describe(x: Any) -> str:
    text = getattr(x, "text", None)
    return type(x).__name__ + (f" text={text[:60]!r}" if isinstance(text, str) else "")


def _short(argv: list[str]) -> str:
    return " ".join(repr(a) if len(str(a)) < 80 else repr(str(a)[:60]) + "..." for a in argv)[:600]


def _alarm(signum, frame):
    raise CaseTimeout("case still running after its time limit (a hang)")


@contextlib.contextmanager
def sandbox(root: Path, family: str, node: Any, bundle: Path | None, seconds: float, case_id: int = 0):
    """Chdir into a fresh sandbox, clear the environment the CLI reads, arm the alarm; verify on exit."""
    c = Case(root, family, node, bundle, case_id)
    old_cwd, old_env = os.getcwd(), {k: os.environ.get(k) for k in ("HOME", "AROMNI_DEBUG", "AROMNI_MODEL")}
    os.chdir(c.work)
    os.environ["HOME"] = str(c.home)
    os.environ.pop("AROMNI_DEBUG", None)
    os.environ.pop("AROMNI_MODEL", None)
    c.snapshot()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    ok = False
    try:
        yield c
        ok = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if ok:
        c.verify()


def _family(request) -> str:
    return getattr(request.module, "FAMILY", request.module.__name__)


def _seconds(request) -> float:
    mark = request.node.get_closest_marker("fuzz_timeout")
    return float(mark.args[0]) if mark else CASE_TIMEOUT


@pytest.fixture
def case(request, tmp_path):
    """The sandbox of one case. The test module sets ``FAMILY``; ``fuzz_bundle`` is watched when requested."""
    bundle = request.getfixturevalue("fuzz_bundle") if "fuzz_bundle" in request.fixturenames else None
    with sandbox(tmp_path / "sandbox", _family(request), request.node, bundle, _seconds(request)) as c:
        yield c


@pytest.fixture
def new_case(request, tmp_path):
    """A factory of fresh sandboxes, one per hypothesis example: ``with new_case() as case: ...``."""
    bundle = request.getfixturevalue("fuzz_bundle") if "fuzz_bundle" in request.fixturenames else None
    counter = iter(range(1, 1 << 30))

    def make():
        n = next(counter)
        return sandbox(tmp_path / f"sandbox{n:05d}", _family(request), request.node, bundle, _seconds(request), n)

    return make


# ------------------------------------------------------------------------------------------------ the report
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Count each finished item's cases in the process that ran it (see the module docstring)."""
    outcome = yield
    rep = outcome.get_result()
    family = getattr(getattr(item, "module", None), "FAMILY", None)
    if family is None:
        return
    if rep.failed:
        item._fuzz_failed = True
    if rep.when != "teardown":
        return
    counts = item.config._fuzz_counts
    cases = [tuple(v) for k, v in item.user_properties if k == "fuzz_case"]
    recorded: dict[tuple[str, int], str] = {}
    for k, v in item.user_properties:
        if k == "fuzz":
            recorded[(v[0], v[1])] = v[2]  # the last outcome a case recorded is its outcome
    failed_case = None
    if getattr(item, "_fuzz_failed", False):
        failed_case = cases[-1] if cases else (family, -1)
        counts[failed_case[0]]["failure"] += 1
    for key, out in recorded.items():
        if key != failed_case:
            counts[key[0]][out] += 1


def _merge_into(path: Path, counts: dict[str, dict[str, int]]) -> None:
    total = {k: sum(v.get(k, 0) for v in counts.values()) for k in OUTCOMES}
    report = {fam: {k: v.get(k, 0) for k in OUTCOMES} for fam, v in sorted(counts.items())}
    report["_total"] = total
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    target = os.environ.get("AROMNI_FUZZ_REPORT")
    if not target:
        return
    path = Path(target).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {fam: dict(v) for fam, v in config._fuzz_counts.items()}
    winput = getattr(config, "workerinput", None)
    if winput is None:
        # One process ran the tests (no xdist), or this is the xdist controller: it counted nothing itself, the
        # workers merged their parts already (they finish before the controller's session does).
        if config.pluginmanager.hasplugin("dsession") or getattr(config.option, "numprocesses", None):
            return
        _merge_into(path, mine)
        return
    parts = Path(tempfile.gettempdir()) / f"aromni-fuzz-{winput.get('testrunuid', 'run')}"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / f"{winput['workerid']}.json").write_text(json.dumps(mine))
    with open(parts / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        files = sorted(parts.glob("*.json"))
        for f in files:
            for fam, v in json.loads(f.read_text()).items():
                for k in OUTCOMES:
                    merged[fam][k] += int(v.get(k, 0))
        _merge_into(path, merged)
        done = len(files) >= int(winput.get("workercount", 1))
    if done:
        shutil.rmtree(parts, ignore_errors=True)
