"""The `vlmerge` console script end to end: help, version, user errors as one line with status 2."""
import torch
import vlmerge
from vlmerge.core import save_sd
from conftest import run_cli


def test_help_lists_subcommands():
    r = run_cli('--help')
    assert r.returncode == 0, r.stderr
    assert 'inspect' in r.stdout and 'subcommands' in r.stdout


def test_version():
    r = run_cli('--version')
    assert r.returncode == 0 and r.stdout.strip() == f'vlmerge {vlmerge.__version__}'


def test_subcommand_help():
    r = run_cli('inspect', '--help')
    assert r.returncode == 0 and 'vlmerge inspect' in r.stdout


def test_inspect(tmp_path):
    save_sd({'x.weight': torch.ones(2, 3)}, tmp_path/'m.safetensors')
    r = run_cli('inspect', tmp_path/'m.safetensors')
    assert r.returncode == 0, r.stderr
    assert 'x.weight\tfloat32\t(2, 3)\t6' in r.stdout


def test_user_error_is_one_line_and_status_2(tmp_path):
    (tmp_path/'bad.safetensors').write_bytes(b'\x00' * 10)
    r = run_cli('inspect', tmp_path/'bad.safetensors')
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'bad.safetensors' in lines[0] and 'Traceback' not in r.stderr


def test_unknown_subcommand():
    r = run_cli('frobnicate')
    assert r.returncode == 2 and 'invalid choice' in r.stderr
