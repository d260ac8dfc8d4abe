"""Image branch: domain-folder loader, leave-one-domain-out splits, digit domains,
image models, and an end-to-end run through the shared trainer."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kws_okd.augment.image  # noqa: F401  (registration, independent of the lead's wiring)
import kws_okd.data.images  # noqa: F401
import kws_okd.models.image  # noqa: F401
from kws_okd.augment import build_augmentation
from kws_okd.data.digits import DigitsSpec, build_digits
from kws_okd.data.images import ImageDataset, prepare, scan_domains
from kws_okd.data.manifest import read_manifest
from kws_okd.data.registry import load_dataset
from kws_okd.distill import build_objective
from kws_okd.errors import ConfigError, DataError
from kws_okd.models import build_model, count_macs, count_params

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "image"
DOMAINS = ("photo", "sketch", "cartoon")
CLASSES = ("cat", "dog", "fish")


def make_domain_folder(root, per_class=6, size=12):
    """Each domain a distinct tint, each class a distinct bar position, so domain and
    class can be read back from pixels."""
    for di, d in enumerate(DOMAINS):
        for ci, c in enumerate(CLASSES):
            (root / d / c).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                img = np.full((size, size, 3), 40 * di, dtype=np.uint8)
                img[:, 3 * ci:3 * ci + 3] = 255
                img[0, 0] = k  # unique files
                ext = ".jpg" if k % 2 else ".png"
                Image.fromarray(img).save(root / d / c / f"{d}_{c}_{k}{ext}")
    (root / "_previews").mkdir(exist_ok=True)          # not a domain
    (root / "photo" / "cat" / "notes.txt").write_text("ignored")
    return root


@pytest.fixture
def folder(tmp_path):
    return make_domain_folder(tmp_path / "pacs_like")


def test_scan_reads_the_domain_folder_layout(folder):
    tree = scan_domains(folder)
    assert sorted(tree) == sorted(DOMAINS)
    assert all(sorted(tree[d]) == sorted(CLASSES) for d in DOMAINS)
    assert all(len(files) == 6 for d in tree.values() for files in d.values())
    with pytest.raises(DataError, match="does not exist"):
        scan_domains(folder / "nope")
    with pytest.raises(DataError, match="at least two domain folders"):
        scan_domains(folder / "_previews")


@pytest.mark.parametrize("heldout", DOMAINS)
def test_leave_one_domain_out_never_leaks_the_heldout_domain(folder, tmp_path, heldout):
    out = tmp_path / f"m_{heldout}"
    info = prepare(folder, out, ood_domains=[heldout], valid_fraction=0.2, test_fraction=0.2,
                   image_size=16)
    proto = json.loads((out / "protocol.json").read_text())
    assert proto["modality"] == "image" and proto["image_size"] == 16
    assert proto["eval_sets"] == {"test_id": "id", f"test_ood_{heldout}": "ood"}
    assert (out / "classes.txt").read_text().split() == sorted(CLASSES)
    rows = {s: read_manifest(out / f"{s}.csv") for s in ("train", "valid", "test_id", f"test_ood_{heldout}")}
    for s in ("train", "valid", "test_id"):
        assert heldout not in {r["domain"] for r in rows[s]}, s
        assert all(f"/{heldout}/" not in r["wav"] for r in rows[s])
    assert {r["domain"] for r in rows[f"test_ood_{heldout}"]} == {heldout}
    assert len(rows[f"test_ood_{heldout}"]) == 18            # the whole held-out domain
    ids = [{r["ID"] for r in rows[s]} for s in ("train", "valid", "test_id")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == 36                            # every training-domain image once
    # Validation draws from every training domain and class (stratified).
    assert {(r["domain"], r["word"]) for r in rows["valid"]} == \
        {(d, c) for d in DOMAINS if d != heldout for c in CLASSES}
    assert info["sets"]["train"] == len(rows["train"])
    r = rows["train"][0]
    assert r["label"] == sorted(CLASSES).index(r["word"])


def test_prepare_errors_name_the_domain(folder, tmp_path):
    with pytest.raises(DataError, match="'winter'.*not found"):
        prepare(folder, tmp_path / "m", ood_domains=["winter"])
    with pytest.raises(ConfigError, match="heldout"):
        prepare(folder, tmp_path / "m", ood_domains=[])
    with pytest.raises(ConfigError, match="also held out"):
        prepare(folder, tmp_path / "m", ood_domains=["photo"], train_domains=["photo", "sketch"])


def test_image_dataset_loads_normalised_tensors(folder, tmp_path):
    out = tmp_path / "m"
    prepare(folder, out, ood_domains=["sketch"], image_size=16)
    ds = load_dataset(out / "train.csv")
    assert isinstance(ds, ImageDataset)
    assert ds.inputs.shape == (len(ds), 3, 16, 16) and ds.inputs.dtype == torch.float32
    assert ds.inputs.min() >= -1.0 and ds.inputs.max() <= 1.0
    x, y, i = ds[0]
    assert x.shape == (3, 16, 16) and int(y) == ds.rows[i]["label"]
    assert set(ds.domains) == {"photo", "cartoon"}
    # The bar sits in the column band of the class: pixels carry the label.
    ood = load_dataset(out / "test_ood_sketch.csv", progress=False)
    bright = ood.inputs[:, 0].mean(1).argmax(-1) * 12 // 16 // 3
    assert (bright == ood.labels).float().mean() > 0.9
    bad = folder / "photo" / "dog" / "broken.png"
    bad.write_bytes(b"not an image")
    prepare(folder, tmp_path / "m2", ood_domains=["photo"])
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load_dataset(tmp_path / "m2" / "test_ood_photo.csv")


def test_digit_domains_are_deterministic_cached_and_disjoint(tmp_path):
    spec = DigitsSpec(seed=3, image_size=20, domains=("clean", "mnistm", "degraded", "jitter",
                                                      "thick", "inverted"), per_domain=30)
    a = build_digits(tmp_path / "a", spec)
    b = build_digits(tmp_path / "b", spec)
    for d in spec.domains:
        files = sorted((a / d).rglob("*.png"))
        assert len(files) == 30
        assert all(np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(b / f.relative_to(a))))
                   for f in files[:5])
        assert np.asarray(Image.open(files[0])).shape == (20, 20, 3)
        assert (a / "_previews" / f"{d}.png").stat().st_size > 500
    # Each domain renders its own digits: no instance id appears in two domains.
    ids = [{f.stem.split("_")[1] for f in (a / d).rglob("*.png")} for d in spec.domains]
    assert sum(map(len, ids)) == len(set().union(*ids))
    # Domains differ visibly: mean colour differs between clean and inverted.
    mean = {d: np.mean([np.asarray(Image.open(f), dtype=float).mean() for f in (a / d).rglob("*.png")])
            for d in ("clean", "inverted")}
    assert mean["inverted"] > mean["clean"] + 50
    # Cached: unchanged settings touch nothing; a changed setting rebuilds in place.
    stamp = (a / "settings.json").stat().st_mtime_ns
    build_digits(tmp_path / "a", spec)
    assert (a / "settings.json").stat().st_mtime_ns == stamp
    spec.per_domain = 20
    build_digits(tmp_path / "a", spec)
    assert len(list((a / "clean").rglob("*.png"))) == 20
    assert not (tmp_path / "a.partial").exists() and not (tmp_path / "a.old").exists()
    with pytest.raises(ConfigError, match="unknown digit domain"):
        build_digits(tmp_path / "c", DigitsSpec(domains=("clean", "fog")))


@pytest.mark.parametrize("name,kw", [("image_resnet", {"widths": [8, 16], "blocks": [1, 1]}),
                                     ("mobilenetv3_small", {"width": 0.25}),
                                     ("small_cnn", {})])
def test_image_models_shapes_and_budgets(name, kw):
    m = build_model(name, 7, frontend={"name": "none"}, **kw)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 7)
    assert m(torch.randn(1, 3, 48, 40)).shape == (1, 7)  # global pooling: any size
    assert count_macs(m, example=x[:1]) > 0 and count_params(m) > 0
    with pytest.raises(ConfigError, match="frontend"):
        build_model(name, 7, frontend={"name": "logmel"})


def test_mobilenet_has_inverted_residuals_se_and_hardswish():
    m = build_model("mobilenetv3_small", 10)
    kinds = {type(x).__name__ for x in m.modules()}
    assert {"InvertedResidual", "SqueezeExcite", "Hardswish"} <= kinds
    assert count_params(m) < count_params(build_model("image_resnet", 10))


@pytest.mark.parametrize("method", ["erm", "kd", "okd"])
def test_a_few_steps_lower_the_loss_with_an_image_student(method):
    torch.manual_seed(0)
    x = torch.randn(32, 3, 16, 16)
    y = torch.arange(32) % 4
    x[torch.arange(32), y % 3, :, :] += 1.5  # a learnable colour cue
    student = build_model("small_cnn", 4, widths=[8, 16])
    teacher = build_model("image_resnet", 4, widths=[8, 16], blocks=[1, 1]).eval()
    objective = build_objective(method)
    augment = build_augmentation({"name": "fusion"})
    opt = torch.optim.Adam(student.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        torch.manual_seed(1)  # the same x_ood each step: measure fit, not noise
        loss, _, _ = objective(student, teacher, x, y, augment)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_end_to_end_train_and_evaluate_per_domain(tmp_path):
    from kws_okd.evaluate.report import evaluate
    from kws_okd.train.config import load_recipe
    from kws_okd.train.run import train
    ov = ["data.domains=[clean,inverted,jitter]", "data.per_domain=40", "data.image_size=16",
          "data.heldout=jitter", f"data.root={tmp_path}/digits", f"data.manifest_dir={tmp_path}/manifests",
          f"results_dir={tmp_path}/results", "epochs=1", "batch_size=32", "progress=false",
          "teacher.widths=[8,16]", "teacher.blocks=[1,1]"]
    t_pt = train(load_recipe("teacher", ov, RECIPES))
    s_pt = train(load_recipe("student", ov + ["distill=okd", "student=small_cnn", "student.widths=[8,16]"],
                             RECIPES))
    assert t_pt.exists() and s_pt.exists() and "small_cnn-okd/seed0" in str(s_pt)
    summary = json.loads((s_pt.parent / "train_summary.json").read_text())
    assert summary["method"] == "okd" and summary["macs"] > 0
    assert summary["selection"].startswith("best validation accuracy")
    rep = evaluate({"teacher": t_pt, "okd": s_pt}, tmp_path / "manifests", tmp_path / "report",
                   teacher="teacher", plots=False)
    assert rep["sets"]["test_ood_jitter"]["tag"] == "ood" and rep["sets"]["test_id"]["tag"] == "id"
    okd = rep["models"]["okd"]
    assert set(okd["sets"]["test_id"]["by_domain"]) == {"clean", "inverted"}
    assert set(okd["sets"]["test_ood_jitter"]["by_domain"]) == {"jitter"}
    assert okd["sets"]["test_ood_jitter"]["n"] == 40
    assert okd["gap_ood"] == pytest.approx(rep["models"]["teacher"]["ood_acc"] - okd["ood_acc"])


def test_lodo_summary_tables(tmp_path):
    from kws_okd.image.lodo import average, render, summarize_domain

    def model(idacc, oodacc, gid=None, good=None):
        return dict(id_acc=idacc, ood_acc=oodacc, gap_id=gid, gap_ood=good, params=10, macs=100,
                    valid_acc=0.5)
    per = {}
    for d, shift in (("a", 0.0), ("b", 0.1)):
        rep = {"models": {"teacher": model(0.9, 0.6 - shift),
                          "kd/seed0": model(0.8, 0.4 - shift, 0.1, 0.2),
                          "okd/seed0": model(0.8, 0.5 - shift, 0.1, 0.1)}}
        per[d] = summarize_domain(rep, ["kd", "okd"], [0])
    avg = average(per, ["kd", "okd"])
    assert avg["okd"]["ood_acc"]["mean"] == pytest.approx(0.45)
    assert avg["kd"]["gap_ood"]["mean"] == pytest.approx(0.2)
    md = render(dict(student="s", seeds=[0], epochs=1, overrides=[], domains=per, average=avg,
                     selection="best training-domain validation accuracy"))
    assert "## Held out: a" in md and "## Average over held-out domains" in md
    assert "| okd | 80.0 ± 0.0 | 45.0 ± 5.0 | 10.0 ± 0.0 | 10.0 ± 0.0 |" in md  # ± over domains
    assert "| okd | 80.0 | 40.0 | 10.0 | 10.0 |" in md  # one seed: no ±


def test_distillation_core_has_no_modality_imports():
    core = Path(kws_okd.data.images.__file__).resolve().parents[1] / "distill"
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        bad = [n for n in names if n.split(".")[0] in ("torchaudio", "speechbrain", "soundfile", "PIL",
                                                        "librosa", "torchvision")
               or n.startswith(("kws_okd.audio", "kws_okd.data", "kws_okd.augment", "kws_okd.models"))]
        assert not bad, f"{path}: imports {bad}"
