import subprocess
import sys

from .conftest import ROOT


def test_import_is_light_and_fast():
    code = ("import sys, time; t = time.perf_counter(); import compression; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'gradio', 'numpy') if m in sys.modules]; "
            "print(dt, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    seconds, heavy = out.split(" ", 1)
    assert heavy.strip() == "[]"
    assert float(seconds) < 1.0
