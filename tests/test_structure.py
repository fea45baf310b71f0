"""The shape the project keeps: the lesson first, layers that point one way, lint clean, quiet.

These fail when a change buries the GradientTape step under an extension, imports upward,
or lets TensorFlow's C++ log lines reach a user's terminal.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "low_level" / "train.py"


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_the_lesson_reads_top_to_bottom():
    lines = LESSON.read_text().splitlines()
    assert len(lines) <= 180, f"low_level/train.py has {len(lines)} lines"
    functions = _functions(LESSON)
    # The step comes first, then what compiles it, then the loop, as in Keras' own trainer.
    order = list(functions)
    assert order[0] == "train_step"
    assert order.index("train_step") < order.index("make_train_function") < order.index("train")
    train = functions["train"]
    assert train.end_lineno - train.lineno + 1 <= 60, "train() is longer than 60 lines"
    tape = next(i for i, line in enumerate(lines, 1) if "tf.GradientTape()" in line)
    assert tape <= 80
    strategy = [i for i, line in enumerate(lines, 1) if "strateg" in line.lower()]
    assert not strategy or tape < min(strategy)


def test_both_sides_offer_the_same_public_functions():
    high, low = _functions(ROOT / "high_level" / "train.py"), _functions(LESSON)
    public = {name for name in high if not name.startswith("_")}
    # fit()'s side has nothing of its own to offer: every public function is one the loop's
    # side has, with the same arguments (the loop's side has more: its step and what runs it).
    assert public == {"train", "evaluate", "predict"}
    step = _functions(ROOT / "high_level" / "custom_step.py")
    for name in public:
        arguments = [a.arg for a in high[name].args.args]
        assert arguments == [a.arg for a in low[name].args.args], name
        assert arguments == [a.arg for a in step[name].args.args], name


def test_the_middle_rung_calls_fit_as_the_first_does():
    """high_level/custom_step.py says its fit() call is high_level/train.py's word for word (only
    the model differs): every argument the same, so the rungs differ in the step alone."""
    def fit_call(path: Path) -> str:
        calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"]
        assert len(calls) == 1, path
        return ast.dump(ast.Tuple(calls[0].args + [k.value for k in calls[0].keywords], ast.Load())) \
            + repr([k.arg for k in calls[0].keywords])

    assert fit_call(ROOT / "high_level" / "custom_step.py") == fit_call(ROOT / "high_level" / "train.py")


def test_the_application_calls_the_sides_through_objects():
    """One registry of sides (fit_vs_tape/sides.py): the rest of the application and the
    benchmarks ask a side what to do, never whether fit() drives it, and import the lesson by
    name, never by a module-path string (only `check` loads a user's module so)."""
    from fit_vs_tape.sides import SIDES, FitSide, LoopSide, Side

    found = []
    for path in sorted([*(ROOT / "fit_vs_tape").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name == "uses_fit" and path.name != "sides.py":
                found.append(f"{path.name}:{node.lineno} asks uses_fit")
            if name in ("import_module", "__import__") and path.name != "user_code.py":
                found.append(f"{path.name}:{node.lineno} imports by a string")
    assert found == []
    # Every kind of side answers every question; every side names its own module's file.
    def answers(kind):
        return {name for name in vars(kind) if not name.startswith("_")}

    assert answers(FitSide) == answers(LoopSide) and answers(FitSide) > {"checkpointing", "uses_fit"}
    assert len({side.short for side in SIDES.values()}) == len(SIDES)
    for name, side in SIDES.items():
        assert isinstance(side, Side) and side.name == name
        assert (ROOT / side.source).is_file(), side.source
        assert all(callable(getattr(side, f)) for f in ("train", "evaluate", "predict"))


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["lint-imports"]])
def test_lint_and_layers(tool):
    if shutil.which(tool[0]) is None:
        pytest.fail(f"{tool[0]} is not installed: pip install -e '.[test]'")
    result = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_import_picture_has_no_upward_arrow(tmp_path):
    """tools/import_graph.py draws the layers of pyproject.toml; it finds an upward import in a
    graph that has one, and none in the project's."""
    import grimp

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import import_graph
    finally:
        sys.path.remove(str(ROOT / "tools"))
    graph = grimp.ImportGraph()
    for module in ("app", "app.cli", "app.core", "lib"):
        graph.add_module(module)
    graph.add_import(importer="app.core", imported="app.cli")  # runs back up
    graph.add_import(importer="app.cli", imported="lib")
    rows = import_graph.layer_rows(["app.cli", "app.core | app", "lib"], set(graph.modules))
    assert rows == [["app.cli"], ["app", "app.core"], ["lib"]]
    assert import_graph.upward_imports(rows, graph) == [("app.core", "app.cli")]
    assert import_graph.main(["--out", str(tmp_path / "imports.png")]) == 0
    assert (tmp_path / "imports.png").read_bytes()[:4] == b"\x89PNG"


def _cli(argv: list[str], env: dict[str, str | None], code: str = "",
         after: str = "") -> subprocess.CompletedProcess:
    """Run the command line in a fresh interpreter (``code`` before it, ``after`` after it);
    print whether TensorFlow got imported."""
    script = (f"import sys\n{code}\nfrom fit_vs_tape.cli import main\ncode = main({argv!r})\n"
              "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
              f"{after}\nsys.exit(code)\n")
    environ = {k: v for k, v in os.environ.items() if k not in env}
    environ.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, env=environ, timeout=300)


@pytest.mark.parametrize("level", [None, "3"])
def test_a_wrong_resume_path_is_one_line_before_tensorflow(level, tmp_path):
    result = _cli(["compare", "--resume", str(tmp_path / "no-such-run")],
                  {"TF_CPP_MIN_LOG_LEVEL": level, "FIT_VS_TAPE_TF_LOGS": None})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fit-vs-tape: error: --resume {tmp_path / 'no-such-run'}: not a run directory "
        "(no run.json)"]
    assert "tensorflow imported: False" in result.stdout


#: TensorFlow imported the application's way, then a kernel that fails at run time: its C++
#: side logs "W... OP_REQUIRES failed at whole_file_read_ops.cc ..." (as SaveV2 does on a full
#: disk) unless the log level hides warnings.
_KERNEL_WARNING = """
from fit_vs_tape.runtime import import_tensorflow
tf = import_tensorflow("cpu")
try:
    tf.io.read_file("/no/such/file")
except tf.errors.NotFoundError:
    print("raised")
"""


@pytest.mark.parametrize("level", [None, "", "0", "1", "3"])
def test_tensorflow_stays_quiet_at_start_up_and_at_run_time_whatever_the_log_level(
        level, tiny_data_dir):
    """One process per level: the command line imports TensorFlow and stops with one line
    (--device gpu on a machine without one), then a kernel fails at run time."""
    result = _cli(["compare", "--device", "gpu", "--data-dir", str(tiny_data_dir)],
                  {"TF_CPP_MIN_LOG_LEVEL": level, "FIT_VS_TAPE_TF_LOGS": None},
                  after=_KERNEL_WARNING)
    if result.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fit-vs-tape: error: --device gpu: TensorFlow sees no GPU on this machine"]
    assert "tensorflow imported: True" in result.stdout
    assert "raised" in result.stdout  # the kernel failed, and said nothing on stderr


def test_fit_vs_tape_tf_logs_shows_them_again():
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ["FIT_VS_TAPE_TF_LOGS"] = "1"
    result = subprocess.run([sys.executable, "-c", _KERNEL_WARNING], cwd=ROOT, capture_output=True,
                            text=True, env=environ, timeout=120)
    assert result.stdout.strip() == "raised"
    assert "OP_REQUIRES failed at whole_file_read_ops" in result.stderr, result.stderr


def test_a_failed_download_is_one_line_too(tmp_path):
    # No data anywhere, and the download server refuses at once (a closed localhost port).
    patch = ("from pathlib import Path\nfrom shared import data\n"
             f"data.DEBIAN_DIR = Path({str(tmp_path / 'no-debian')!r})\n"
             "data.DOWNLOAD_BASE = 'http://127.0.0.1:9/'\n")
    result = _cli(["compare"], {"TF_CPP_MIN_LOG_LEVEL": "3", "FIT_VS_TAPE_TF_LOGS": None,
                                "FASHION_MNIST_DIR": None, "KERAS_HOME": str(tmp_path / "kh")},
                  code=patch)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fit-vs-tape: error: could not download "), lines
    assert "dataset-fashion-mnist" in lines[0]
