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


def test_shared_options_read_the_same():
    "Every subcommand's --out, --set and --resume come from core.add_common_args: one spelling, one kind of help."
    import contextlib, io, re
    from vlmerge.cli import find_commands, main
    seen = set()
    for name in sorted(find_commands()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try: main([name, '--help'])
            except SystemExit as e: assert e.code == 0, name
        h = ' '.join(out.getvalue().split())   # argparse wraps lines
        if '--set' in h: assert re.search(r'--set (data\.)?KEY=VALUE override .+ \(repeatable\)', h), (name, h); seen.add('set')
        if '--resume' in h: assert '--resume continue a killed run' in h, (name, h); seen.add('resume')
        if '--out' in h: assert re.search(r'--out OUT \S', h), (name, h); seen.add('out')
    assert seen == {'set', 'resume', 'out'}
    h = io.StringIO()
    with contextlib.redirect_stdout(h):
        try: main(['merge', '--help'])
        except SystemExit: pass
    assert 'killed run' in h.getvalue() and 'removed' in h.getvalue()   # merge's --out still explains the stale temporaries
