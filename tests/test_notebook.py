"""notebooks/colab_tpu.ipynb: stored clean, and its cells run in order on the CPU with a seconds-long GRPO run.

Without nbclient, the code cells run in one namespace as a kernel would, skipping those tagged
`colab-only`; the overrides go in right after the cell tagged `parameters` (papermill's convention).
"""

import json
import os

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt

from r1jax.metrics import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "colab_tpu.ipynb")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _notebook() -> dict:
    with open(NOTEBOOK, encoding="utf-8") as f:
        return json.load(f)


def _source(cell) -> str:
    return "".join(cell["source"])


def _tags(cell) -> list[str]:
    return cell["metadata"].get("tags", [])


def run_notebook(overrides: dict, *, until: str | None = None) -> dict:
    """The namespace after the code cells, or after the first cell whose source contains `until`."""
    namespace = {"__name__": "__main__"}
    for index, cell in enumerate(_notebook()["cells"]):
        if cell["cell_type"] != "code" or "colab-only" in _tags(cell):
            continue
        exec(compile(_source(cell), f"{NOTEBOOK}[cell {index}]", "exec"), namespace)
        if "parameters" in _tags(cell):
            namespace.update(overrides)
        if until is not None and until in _source(cell):
            break
    return namespace


def test_the_notebook_is_stored_clean_and_only_colab_cells_use_ipython_syntax():
    notebook = _notebook()
    assert notebook["nbformat"] == 4
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    # The settings come first, so that the overrides reach every later cell.
    assert "parameters" in _tags(code[0]) and sum("parameters" in _tags(cell) for cell in code) == 1
    for cell in code:
        ipython_only = any(line.lstrip().startswith(("!", "%")) for line in _source(cell).splitlines())
        uses_colab = "google.colab" in _source(cell)
        assert not (ipython_only or uses_colab) or "colab-only" in _tags(cell), _source(cell)


def test_the_notebook_trains_and_plots_the_reward_curve(tmp_path):
    matplotlib.use("Agg")  # plt.show() must not look for a display
    workdir = tmp_path / "run"
    # The smoke variant without its pretraining stage: two GRPO steps of a random tiny model.
    namespace = run_notebook(dict(R1JAX_DIR=REPO, CONFIG="countdown_tiny.py:smoke", STEPS=2, PRETRAIN_STEPS=0,
                                  WORKDIR=str(workdir)))
    plt.close("all")
    assert namespace["summary"]["steps"] == 2
    assert namespace["config"].pretrain.steps == 0

    records = read_metrics(str(workdir))
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all("reward/total" in r for r in records[1:]) and "eval/accuracy" in records[0]

    png = namespace["reward_curve_png"]
    assert png == str(workdir / "reward_curve.png")
    with open(png, "rb") as f:
        assert f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (700, 400)  # figsize (7, 4) at 100 dpi


def test_a_checkpoint_runs_fsdp_over_the_devices_present(tmp_path):
    from r1jax import hf
    from r1jax import model as model_lib

    checkpoint = tmp_path / "hf_model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(hf.config_to_hf(model_lib.MODEL_CONFIGS["qwen2.5-0.5b"])))
    namespace = run_notebook(dict(R1JAX_DIR=REPO, CONFIG="tinyzero_qwen25_3b.py", MODEL_CHECKPOINT=str(checkpoint)),
                             until="validate(")
    config = namespace["config"]
    # TinyZero's 'gpu8' layout (fsdp 4 x tensor 2) is replaced by FSDP over the 8 fake devices.
    assert (config.mesh.data, config.mesh.fsdp, config.mesh.tensor) == (1, -1, 1)
    assert config.model.checkpoint == str(checkpoint) and config.steps == 20  # the CPU's step count
