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


def test_nothing_the_cli_runs_imports_gradio(served_app, tmp_path):
    """`list --markdown` and `export --chart` draw tables and charts with the pure dashboard modules only."""
    import shutil

    store = served_app[1] / "store"
    args = [["list", "--markdown", "--store", str(store)]]
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        args.append(["export", str(tmp_path / "ref.json"), "--label", "tiny", "--chart", str(tmp_path / "c.png"),
                     "--store", str(store)])
    for argv in args:
        code = ("import sys; from compression.cli import main; code = main(sys.argv[1:]); "
                "print('GRADIO' if 'gradio' in sys.modules else 'NO-GRADIO', code)")
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT)
        assert out.stdout.strip().splitlines()[-1] == "NO-GRADIO 0", (argv, out.stdout[-500:], out.stderr[-1500:])
