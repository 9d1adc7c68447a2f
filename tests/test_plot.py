"""skd-flair plot RUN_DIR: a run's loss.tsv and kd_loss.tsv as one PNG, and one-line errors."""
import json

import pytest
from PIL import Image

from skd_flair.cli import main
from skd_flair.training.plot import plot_run, read_tsv

LOSS = ["EPOCH\tTIMESTAMP\tLEARNING_RATE\tTRAIN_LOSS\tDEV_LOSS\tDEV_PRECISION\tDEV_RECALL\tDEV_F1\tDEV_ACCURACY"]
KD = ["EPOCH\tLAMBDA\tGOLD_LOSS\tKD_LOSS\tKL_PER_TOKEN\tTEACHER_ENTROPY\tARGMAX_AGREEMENT\tGRAD_NORM_KD\tGRAD_NORM_GOLD"]


def make_run(folder, epochs=12, kd=True):
    folder.mkdir(parents=True, exist_ok=True)
    loss = list(LOSS)
    for e in range(1, epochs + 1):
        lr = 0.1 if e < 8 else 0.05
        loss.append(f"{e}\t12:00:{e:02d}\t{lr:.4f}\t{2 / e:.4f}\t{1.5 / e + 0.2:.4f}\t0.5\t0.5\t{1 - 1 / (e + 1):.4f}\t0.4")
        if e == 5:  # a resumed run logs epoch 5 again, and its header once more
            loss += [loss[-1].replace("\t12:00:05\t", "\t12:10:05\t"), LOSS[0]]
    (folder / "loss.tsv").write_text("\n".join(loss) + "\n")
    if kd:
        rows = list(KD) + [f"{e}\t{1 - e / 100:.6f}\t{2 / e:.6f}\t{2.1 / e:.6f}\t{1.8 / e:.6f}\t0.175\t{0.4 + e / 40:.6f}"
                           f"\t{3 / e:.6f}\t{1 / e:.6f}" for e in range(1, epochs + 1)]
        (folder / "kd_loss.tsv").write_text("\n".join(rows) + "\n")
    (folder / "results.json").write_text(json.dumps({"test_score": 0.5849, "stopped_early": None}))
    return folder


def test_read_tsv_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    columns = read_tsv(make_run(tmp_path / "run") / "loss.tsv")
    assert columns["EPOCH"] == list(range(1, 13))
    assert columns["LEARNING_RATE"][0] == 0.1 and columns["LEARNING_RATE"][-1] == 0.05
    assert all(v != v for v in columns["TIMESTAMP"])  # not numbers: NaN, never drawn


def test_plot_writes_a_png_of_both_logs(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    out = tmp_path / "pictures" / "run.png"
    assert main(["plot", str(run), "-o", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"] == str(out) and printed["epochs"] == 12
    assert printed["scores"] == ["DEV_F1", "DEV_ACCURACY"] and "GRAD_NORM_KD" in printed["kd"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 30_000 < out.stat().st_size < 2_000_000
    with Image.open(out) as image:
        width, height = image.size
        assert (width, height) == (1320, 924)  # two rows: Flair's log above, the KD diagnostics below
        assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 20  # something was drawn, not a blank canvas


def test_a_run_without_kd_gets_one_row_and_the_default_name(tmp_path):
    run = make_run(tmp_path / "plain", kd=False)
    result = plot_run(run)
    assert result["output"] == str(run / "training.png") and result["kd"] == []
    with Image.open(run / "training.png") as image:
        assert image.size == (1320, 462)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "has no loss.tsv"),
    (lambda d: (d.mkdir(), (d / "loss.tsv").write_text(LOSS[0] + "\n")), "holds no finished epoch"),
])
def test_a_folder_without_a_training_log_is_one_line(tmp_path, capsys, setup, message):
    folder = tmp_path / "not-a-run"
    setup(folder)
    assert main(["plot", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(folder) in err, err
    assert not (folder / "training.png").exists()
