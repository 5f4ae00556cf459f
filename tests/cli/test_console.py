"""The console script: a Ctrl-C while the CLI is still being imported, or during the interpreter's teardown
after the command, ends in one line and no traceback."""
from __future__ import annotations

import signal
import subprocess
import sys

# A Ctrl-C that lands while `import click` runs (a finder that raises it there, deterministically).
INTERRUPT_AT_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "click":
            raise KeyboardInterrupt
        return None
sys.meta_path.insert(0, Interrupt())
for name in [m for m in sys.modules if m == "click" or m.startswith("click.")]:
    del sys.modules[name]
sys.argv = ["edgeexit", "boards"]
from edgeexit.console import main
main()
"""

SIGINT_AFTER_THE_COMMAND = """
import signal, sys
from edgeexit.console import main
sys.argv = ["edgeexit", "boards", "--json"]
try:
    main()
except SystemExit as done:
    print(done.code, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_ctrl_c_while_the_cli_imports_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 130 and done.stderr == "edgeexit: interrupted\n", done.stderr


def test_ctrl_c_is_ignored_once_the_command_is_done() -> None:
    done = subprocess.run([sys.executable, "-c", SIGINT_AFTER_THE_COMMAND], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 True"


def test_python_dash_m_and_the_console_script_share_the_entry_point() -> None:
    import configparser
    from pathlib import Path

    import edgeexit.__main__ as dunder_main
    from edgeexit import console

    cfg = configparser.ConfigParser()
    cfg.read(str(Path(__file__).resolve().parents[2] / "setup.cfg"))
    assert cfg["options.entry_points"]["console_scripts"].strip() == "edgeexit = edgeexit.console:main"
    assert dunder_main.main is console.main
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # importing them changed nothing
