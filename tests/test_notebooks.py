"""Every numbered notebook runs top to bottom under papermill in the quick profile."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import papermill
import pytest

from conftest import ROOT, SAMPLE_CSV

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(notebook: Path) -> None:
    cells = json.loads(notebook.read_text())["cells"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)
    assert all(
        not c.get("outputs") and not c.get("execution_count")
        for c in cells
        if c["cell_type"] == "code"
    )
    assert "/work/" not in notebook.read_text() and "/home/" not in notebook.read_text()


EXECUTED = sorted((ROOT / "notebooks" / "executed").glob("[0-9][0-9]_*.ipynb"))
NOISE = (
    "\x1b[",
    "Traceback",
    "W0000",
    "E0000",
    "I0000",
    "oneDNN custom operations",
    "Warning:",
    "\r",
)


def _sources(cells: list[dict]) -> list[str]:
    """The text of the cells (code and narration), without papermill's injected parameters."""
    return [
        "".join(c["source"])
        for c in cells
        if "injected-parameters" not in c["metadata"].get("tags", [])
    ]


@pytest.mark.parametrize("executed", EXECUTED, ids=lambda p: p.stem)
def test_executed_copy_is_current_and_clean(executed: Path) -> None:
    """What GitHub shows: the editable notebook's code, run to the end in the cpu profile,
    with outputs and without errors, tracebacks, framework log noise or progress bars."""
    raw = executed.read_text()
    assert "/work/" not in raw and "/home/" not in raw, "a path of the machine that ran it"
    notebook = json.loads(raw)
    editable = json.loads((ROOT / "notebooks" / executed.name).read_text())
    assert _sources(notebook["cells"]) == _sources(editable["cells"]), (
        f"{executed.name} is older than notebooks/{executed.name}: "
        f"./run_all.sh --profile cpu --only {executed.name[:2]}"
    )
    assert notebook["metadata"]["papermill"]["parameters"]["profile"] == "cpu"
    assert executed.stat().st_size < 5 * 2**20
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "every cell ran"
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "\n".join(
        "".join(part)
        for o in outputs
        for part in (o.get("text", ""), *(v for k, v in o.get("data", {}).items() if "text" in k))
    )
    noise = [n for n in NOISE if n.lower() in text.lower()]  # WARNING:root: … as well
    assert not noise, noise
    assert any("image/png" in o.get("data", {}) for o in outputs), "a reader sees its figures"


def run_quick(tmp_path: Path, name: str, **parameters) -> tuple[set[str], set[str]]:
    """Run notebook ``name`` in the quick profile on the sample; its records and figures."""
    notebook = ROOT / "notebooks" / name
    papermill.execute_notebook(
        str(notebook), str(tmp_path / notebook.name),
        parameters={"profile": "quick", "data_path": str(SAMPLE_CSV), **parameters},
        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False,
    )  # fmt: skip
    records = {p.stem for p in Path(os.environ["FER_RESULTS"]).glob("*.json")}
    figures = {p.stem for p in Path(os.environ["FER_FIGURES"]).glob("*.png")}
    return records, figures


@pytest.mark.slow
def test_notebook_01_runs_and_writes_its_figures(tmp_path: Path) -> None:
    _, figures = run_quick(tmp_path, "01_data_exploration_and_cleaning.ipynb", seed=0)
    assert {"01_class_balance", "01_mean_faces", "01_cleaning_examples", "01_ferplus_agreement",
            "01_samples_per_class", "01_intensity_contrast"} <= figures  # fmt: skip


@pytest.mark.slow
def test_notebook_02_trains_records_and_plots(tmp_path: Path) -> None:
    records, figures = run_quick(tmp_path, "02_baseline_cnn.ipynb")
    assert {"baseline-quick", "five_layer-quick", "five_layer-quick-tta-flip"} <= records
    assert {"five_layer-ce-e1-quick", "five_layer-focal-e1-quick"} <= records
    assert {"02_learning_curves", "02_confusion_matrix", "02_confident_mistakes"} <= figures


@pytest.mark.slow
def test_notebook_05_builds_records_and_distils_an_ensemble(tmp_path: Path) -> None:
    records, figures = run_quick(tmp_path, "05_ensemble.ipynb")
    assert {"ensemble-quick", "student-quick", "five_layer-quick-s1"} <= records
    assert {"05_accuracy_vs_members", "05_member_agreement", "05_ensemble_confusion",
            "05_per_class_members_vs_ensemble"} <= figures  # fmt: skip


@pytest.mark.slow
def test_notebook_06_draws_filters_and_maps(tmp_path: Path) -> None:
    _, figures = run_quick(tmp_path, "06_feature_maps_and_filters.ipynb")
    assert {"06_first_layer_filters", "06_block_activations", "06_class_maximisation",
            "06_filter_maximisation", "06_filter_regions"} <= figures  # fmt: skip


@pytest.mark.slow
def test_notebook_07_explains_and_measures_faithfulness(tmp_path: Path) -> None:
    _, figures = run_quick(tmp_path, "07_gradcam_explainability.ipynb")
    assert {"07_methods_by_emotion", "07_attention_per_class", "07_mistakes_explained",
            "07_faithfulness", "07_region_attention_per_class"} <= figures  # fmt: skip
    table = Path(os.environ["FER_RESULTS"]) / "faithfulness-quick.csv"
    assert len(table.read_text().splitlines()) == 1 + 11 * 3  # 10 methods and random × 3 ways


@pytest.mark.slow
def test_notebook_03_transfers_and_draws_the_label_efficiency_curve(tmp_path: Path) -> None:
    records, figures = run_quick(
        tmp_path, "03_transfer_learning.ipynb", label_epochs={0.5: 1, 1.0: 1}
    )  # the profile's smoke budget: MobileNetV2 alone, its runs tagged "smoke"
    transfer_runs = {"transfer-mobilenetv2-head-smoke", "transfer-mobilenetv2-smoke"}
    curve_runs = {"simclr-fast_cnn-quick", "labels-0.5-simclr-quick", "fast_cnn-ls-quick"}
    assert transfer_runs | curve_runs <= records
    assert {"03_simclr_loss", "03_label_efficiency"} <= figures


@pytest.mark.slow
def test_notebook_04_compares_corrections_and_lighting_robustness(tmp_path: Path) -> None:
    records, figures = run_quick(tmp_path, "04_illumination_correction.ipynb", strengths=[0.5])
    assert {"illum-none-quick", "illum-clahe-quick", "illum-lightaug-quick"} <= records
    assert {"04_corrections", "04_lighting_shifts", "04_correction_comparison",
            "04_lighting_robustness"} <= figures  # fmt: skip
    table = Path(os.environ["FER_RESULTS"]) / "lighting-robustness-quick.csv"
    assert len(table.read_text().splitlines()) == 1 + 8 * 5 * 2  # 8 models, 5 shifts, 0 and 0.5


def test_run_all_script_parses_and_documents_its_options() -> None:
    """bash parses a script only as far as it runs: ``--tests`` exits before the notebook loop,
    so a quoting slip there would pass CI and break every notebook run. Parse all of it."""
    script = ROOT / "run_all.sh"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    usage = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert all(f"--{option}" in usage.stdout for option in ("profile", "only", "data", "tests"))


def test_readme_links_every_executed_copy() -> None:
    """The README's notebook table links exactly the executed copies that exist."""
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(notebooks/executed/(\d\d_\w+\.ipynb)\)", readme))
    assert linked == {p.name for p in EXECUTED}
