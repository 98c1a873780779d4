"""`make check-sync` catches a library edited by hand, a dirty notebook and a stale README."""
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path):
    "A copy of the files check-sync looks at."
    for c in ['settings.ini', 'README.md', 'nbs', 'vlmerge', 'tools']:
        src = ROOT/c
        if src.is_dir(): shutil.copytree(src, tmp_path/c, ignore=shutil.ignore_patterns('__pycache__'))
        else: shutil.copy2(src, tmp_path/c)
    return tmp_path


def check(p): return subprocess.run([sys.executable, str(p/'tools'/'check_sync.py')], capture_output=True, text=True)


def test_in_sync(project):
    r = check(project)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hand_edited_library_fails(project):
    with open(project/'vlmerge'/'core.py', 'a') as f: f.write('\ndef sneaky(): pass\n')
    r = check(project)
    assert r.returncode != 0
    assert 'library is out of sync' in r.stderr and 'vlmerge/core.py' in r.stderr
    assert 'sneaky' in (project/'vlmerge'/'core.py').read_text()   # the user's edit is not overwritten


def test_stale_readme_fails(project):
    (project/'README.md').write_text('old\n')
    r = check(project)
    assert r.returncode != 0 and 'README.md is out of sync' in r.stderr
