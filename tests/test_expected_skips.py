"""A skip that tests/conftest.py does not expect fails the test run (`make test` exits non-zero) and is
listed; the expected ones (EXPECTED_SKIPS, each with its reason) do not. Run on tiny test files in a
fresh pytest process, with tests/conftest.py loaded as a plugin: serially, and in two pytest-xdist
workers as `make test` runs the suite (the skips are then reported to the controlling process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

# How the suite is run: serially, and as `make test` runs it (see PYTEST in the Makefile).
RUNS = pytest.mark.parametrize("run_args", [[], ["-n", "2", "--dist", "loadfile"]], ids=["serial", "xdist"])


def _pytest(folder: Path, files: dict[str, str], run_args: list[str]) -> subprocess.CompletedProcess:
    (folder / "pytest.ini").write_text("[pytest]\n")  # the rootdir: node ids read tests/<file>::<test>
    for name, text in files.items():
        (folder / "tests").mkdir(exist_ok=True)
        (folder / "tests" / name).write_text(textwrap.dedent(text))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(folder), *run_args, "tests"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@RUNS
def test_an_expected_skip_with_its_reason_passes(tmp_path, run_args):
    done = _pytest(tmp_path, {"test_corpus.py": """
        import pytest

        def test_unreadable_file():
            pytest.skip("root reads any file, so chmod 000 cannot make one unreadable")

        def test_something_else():
            pass
        """}, run_args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 skipped" in done.stdout and "unexpected skips" not in done.stdout


@RUNS
def test_any_other_skip_fails_the_run_and_is_listed(tmp_path, run_args):
    done = _pytest(tmp_path, {
        "test_corpus.py": """
            import pytest

            def test_unreadable_file():  # an expected test, skipping for another reason
                pytest.skip("no time today")
            """,
        "test_whole_module.py": """
            import pytest

            pytest.importorskip("another_package_that_is_not_installed")

            def test_never_collected():
                pass
            """,
        "test_optional.py": """
            import pytest

            def test_needs_a_package():
                pytest.importorskip("a_package_that_is_not_installed")

            @pytest.mark.parametrize("n", [1, 2])
            def test_found_nothing_to_check(n):
                if n == 2:
                    pytest.skip("the converter reproduced the outputs bit for bit")
            """,
    }, run_args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unexpected skips (the run fails: see EXPECTED_SKIPS in tests/conftest.py)" in done.stdout
    for line in ("tests/test_corpus.py::test_unreadable_file: no time today",
                 "tests/test_optional.py::test_needs_a_package: could not import 'a_package_that_is_not_installed'",
                 "tests/test_optional.py::test_found_nothing_to_check[2]: the converter reproduced the outputs",
                 "tests/test_whole_module.py: could not import 'another_package_that_is_not_installed'"):
        assert line in done.stdout, done.stdout
    assert "1 passed, 4 skipped" in done.stdout
