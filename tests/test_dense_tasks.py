"""Segmentation and detection tasks: the scene generator, the VOC/COCO readers and their bad
input, transforms that move masks and boxes with the image, metric values on hand-made
predictions, and the CLI end to end (fit, test, export, segment/detect, exact resume)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_pl.data.coco import AnnotationError, CocoDetection, detection_transform
from resnet_pl.data.scenes import SceneConfig, generate
from resnet_pl.data.voc import MaskError, VOCSegmentation, read_mask, segmentation_transform

TINY = SceneConfig(size=32, min_items=1, max_items=3, min_scale=12, max_scale=20, seed=0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory, fashion_mnist_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    generate(root, n_train=8, n_val=4, n_test=4, cfg=TINY, data_dir=fashion_mnist_dir)
    return root


def _copy(scenes: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "scenes"
    shutil.copytree(scenes, dest)
    return dest


# ---- the generator ---------------------------------------------------------------------------
def test_scenes_are_deterministic_and_labels_agree(
    scenes: Path, tmp_path: Path, fashion_mnist_dir: Path
) -> None:
    again = tmp_path / "again"
    generate(again, n_train=8, n_val=4, n_test=4, cfg=TINY, data_dir=fashion_mnist_dir)
    for sub in ("JPEGImages/train_00003.png", "SegmentationClass/val_00001.png",
                "annotations/instances_test.json"):  # fmt: skip
        assert (scenes / sub).read_bytes() == (again / sub).read_bytes()
    coco = json.loads((scenes / "annotations/instances_train.json").read_text())
    assert len(coco["categories"]) == 10 and coco["annotations"]
    for image in coco["images"]:
        mask = read_mask(scenes / "SegmentationClass" / image["file_name"])
        pixels = np.asarray(Image.open(scenes / "JPEGImages" / image["file_name"]))
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert anns, "every scene holds at least one item"
        # Visible instances partition the mask: per class, areas add up to its pixel count.
        for c in range(1, 11):
            area = sum(a["area"] for a in anns if a["category_id"] == c)
            assert area == int((mask == c).sum())
        for a in anns:
            x, y, w, h = a["bbox"]
            inside = mask[y : y + h, x : x + w] == a["category_id"]
            # The box is tight: its first/last rows and columns touch the item.
            assert inside[0].any() and inside[-1].any()
            assert inside[:, 0].any() and inside[:, -1].any()
        # Labelled pixels come from real items (not empty canvas), background stays black.
        assert (pixels[mask == 0] == 0).all()
        assert pixels[mask > 0].mean() > 20


# ---- VOC reader and bad input -------------------------------------------------------------------
def test_voc_reads_indices_and_refuses_bad_masks(scenes: Path, tmp_path: Path) -> None:
    ds = VOCSegmentation(scenes, "train", num_classes=11)
    x, m = ds[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert m.dtype == torch.int64
    assert torch.equal(m, torch.from_numpy(read_mask(scenes / "SegmentationClass/train_00000.png")))

    root = _copy(scenes, tmp_path)
    mask_dir = root / "SegmentationClass"
    # a mask of the wrong size
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(mask_dir / "train_00001.png")
    with pytest.raises(MaskError, match=r"train_00001\.png: mask is 16x16 but its image is 32x32"):
        VOCSegmentation(root, "train", num_classes=11)
    # values outside the classes (255 is the ignore index and allowed)
    bad = np.zeros((32, 32), np.uint8)
    bad[0, 0], bad[1, 1] = 12, 255
    Image.fromarray(bad, "L").save(mask_dir / "train_00001.png")
    with pytest.raises(MaskError, match=r"train_00001\.png: mask values \[12\] are outside"):
        VOCSegmentation(root, "train", num_classes=11)
    # a colour mask is refused, never converted
    Image.new("RGB", (32, 32), (128, 0, 0)).save(mask_dir / "train_00001.png")
    with pytest.raises(MaskError, match="RGB mask"):
        VOCSegmentation(root, "train", num_classes=11)
    # an image without annotation
    (mask_dir / "train_00001.png").unlink()
    with pytest.raises(MaskError, match="image has no annotation"):
        VOCSegmentation(root, "train", num_classes=11)
    # skip mode: left out, counted, one warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = VOCSegmentation(root, "train", num_classes=11, bad_files="skip")
    assert len(ds) == 7 and sum(ds.skipped.values()) == 1
    assert any("skipped 1 bad image/mask" in str(w.message) for w in caught)


# ---- COCO reader and bad input ------------------------------------------------------------------
def _write_coco(root: Path, data: dict) -> Path:
    path = root / "bad.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_bad_input_crowd_and_empty_images(scenes: Path, tmp_path: Path) -> None:
    ann = json.loads((scenes / "annotations/instances_train.json").read_text())
    images = scenes / "JPEGImages"

    def variant(change) -> Path:  # type: ignore[no-untyped-def]
        data = json.loads(json.dumps(ann))
        change(data)
        return _write_coco(tmp_path, data)

    missing = variant(lambda d: d["images"].append(
        {"id": 999, "file_name": "nope.png", "width": 32, "height": 32}))  # fmt: skip
    with pytest.raises(AnnotationError, match=r"bad\.json: image nope\.png \(id 999\) is not in"):
        CocoDetection(images, missing)
    with pytest.warns(UserWarning, match="skipped 1 missing image"):
        assert len(CocoDetection(images, missing, bad_files="skip")) == 8

    outside = variant(lambda d: d["annotations"][0].update(bbox=[20, 20, 30, 5]))
    with pytest.raises(AnnotationError, match="lies outside the 32x32 image"):
        CocoDetection(images, outside)
    zero = variant(lambda d: d["annotations"][0].update(bbox=[2, 2, 0, 5]))
    with pytest.raises(AnnotationError, match="zero area"):
        CocoDetection(images, zero)
    with pytest.warns(UserWarning, match="1 zero-area box"):
        ds = CocoDetection(images, zero, bad_files="skip")
    assert sum(len(s[2]) for s in ds.samples) == len(ann["annotations"]) - 1

    def empty_and_crowd(d: dict) -> None:
        first = d["images"][0]["id"]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != first]
        d["annotations"][0]["iscrowd"] = 1

    path = variant(empty_and_crowd)
    ds = CocoDetection(images, path)
    assert len(ds) == 8 and ds.empty_images == 1
    _, target = ds[0]  # the empty image: a valid, empty target
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert sum(int(ds[i][1]["iscrowd"].sum()) for i in range(len(ds))) == 1
    with pytest.warns(UserWarning, match="1 image without annotations"):
        assert len(CocoDetection(images, path, empty_images="skip")) == 7


# ---- transforms move masks and boxes with the image --------------------------------------------
def test_augmentations_move_masks_and_boxes_with_the_image(scenes: Path) -> None:
    plain = VOCSegmentation(scenes, "train", num_classes=11)
    aug = VOCSegmentation(scenes, "train", num_classes=11,
                          transform=segmentation_transform(True, crop_padding=6))  # fmt: skip
    coco_plain = CocoDetection(scenes / "JPEGImages", scenes / "annotations/instances_train.json")
    coco_aug = CocoDetection(scenes / "JPEGImages", scenes / "annotations/instances_train.json",
                             transform=detection_transform(True, crop_padding=6))  # fmt: skip
    moved = 0
    for seed in range(6):
        torch.manual_seed(seed)
        x, m = aug[1]
        x0, m0 = plain[1]
        # Item pixels land only on labelled pixels (the canvas outside the silhouettes is
        # black), so a mask moved differently from its image would show here; nothing is
        # interpolated: the mask's values are still the original classes.
        background = x0.min()
        assert not ((x[0] > background) & (m == 0)).any()
        assert (x[0][m > 0] > background).float().mean() > 0.8
        assert set(m.unique().tolist()) <= set(m0.unique().tolist())
        moved += int(not torch.equal(m, m0))
        torch.manual_seed(seed)
        img, target = coco_aug[1]
        for box in target["boxes"]:
            x0b, y0b, x1b, y1b = (round(float(v)) for v in box)
            # every box still frames pixels of its item
            assert (img[0, y0b:y1b, x0b:x1b] > 0).any()
        assert len(target["boxes"]) <= len(coco_plain[1][1]["boxes"])
    assert moved >= 3  # the augmentation really changed the geometry


def test_flip_maps_mask_and_box_exactly(scenes: Path) -> None:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    ds = CocoDetection(scenes / "JPEGImages", scenes / "annotations/instances_train.json")
    image, target = ds[0]
    flip = v2.RandomHorizontalFlip(p=1.0)
    img_t = tv_tensors.Image((image * 255).round().to(torch.uint8))
    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(32, 32))
    mask = tv_tensors.Mask(
        torch.from_numpy(read_mask(scenes / "SegmentationClass/train_00000.png"))
    )
    f_img, f_boxes, f_mask = flip(img_t, boxes, mask)
    assert torch.equal(f_img, img_t.flip(-1)) and torch.equal(f_mask, mask.flip(-1))
    expected = target["boxes"].clone()
    expected[:, [0, 2]] = 32 - target["boxes"][:, [2, 0]]
    assert torch.equal(f_boxes.as_subclass(torch.Tensor), expected)


# ---- metric values on hand-made predictions -----------------------------------------------------
def test_segmentation_metrics_on_hand_made_predictions() -> None:
    from resnet_pl.lightning.segmentation import SegmentationTask

    task = SegmentationTask(arch="resnet8", num_classes=3, head="fcn", output_stride=4)
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 2, 2]]])
    pred = torch.tensor([[[0, 0, 1, 0], [0, 0, 1, 1], [2, 1, 0, 1], [2, 2, 2, 2]]])
    task.val_metrics.update(pred, target)
    task.val_iou_class.update(pred, target)
    out = task.val_metrics.compute()
    # 14 labelled pixels (2 ignored), 12 right
    assert out["val_pixel_acc"].item() == pytest.approx(12 / 14)
    # IoU: class 0: 4 / (4 + 1 fp) ; class 1: 3 / (4 + 1 fp) ; class 2: 5 / 6 (1 fn)
    per_class = task.val_iou_class.compute()
    assert per_class.tolist() == pytest.approx([4 / 5, 3 / 5, 5 / 6])
    assert out["val_miou"].item() == pytest.approx((4 / 5 + 3 / 5 + 5 / 6) / 3)


def test_detection_map_on_hand_made_predictions() -> None:
    from resnet_pl.lightning.detection import DetectionTask

    task = DetectionTask(arch="resnet8", num_classes=2, fpn_channels=16, image_size=32)
    gt = {"boxes": torch.tensor([[2.0, 2.0, 12.0, 12.0], [16.0, 16.0, 30.0, 30.0]]),
          "labels": torch.tensor([1, 1]), "iscrowd": torch.tensor([0, 0])}  # fmt: skip
    perfect = {"boxes": gt["boxes"].clone(), "scores": torch.tensor([0.9, 0.8]),
               "labels": gt["labels"].clone()}  # fmt: skip
    task.val_map.update([perfect], [gt])
    assert task.val_map.compute()["map"].item() == pytest.approx(1.0)
    task.val_map.reset()
    # One of two objects found (and one false positive scored below it): recall 0.5 at
    # precision 1, so COCO's 101-point AP is 51/101.
    half = {"boxes": torch.tensor([[2.0, 2.0, 12.0, 12.0], [0.0, 20.0, 8.0, 28.0]]),
            "scores": torch.tensor([0.9, 0.3]), "labels": torch.tensor([1, 1])}  # fmt: skip
    task.val_map.update([half], [gt])
    values = task.val_map.compute()
    assert values["map_50"].item() == pytest.approx(51 / 101, abs=1e-4)
    assert values["mar_100"].item() == pytest.approx(0.5)


# ---- CLI end to end -----------------------------------------------------------------------------
def test_cli_takes_dense_tasks_only_when_named() -> None:
    from resnet_pl.cli.lightning import names_dense_task

    configs = Path(__file__).resolve().parent.parent / "configs"
    for name in ("scenes_segmentation", "scenes_detection"):
        assert names_dense_task(["fit", "--config", str(configs / f"{name}.yaml")])
    assert not names_dense_task(["fit", "--config", str(configs / "fashion_mnist_fast.yaml")])
    assert names_dense_task(["fit", "--model", "SegmentationTask"])
    assert names_dense_task(["fit", "--model=resnet_pl.lightning.detection.DetectionTask"])
    assert not names_dense_task(["fit", "--model", "DistillationClassifier"])
    assert not names_dense_task(["fit", "--model.arch", "resnet20"])


def _tiny_config(tmp_path: Path, scenes: Path, task: str) -> Path:
    import yaml

    source = Path(__file__).resolve().parent.parent / "configs" / f"scenes_{task}.yaml"
    cfg = yaml.safe_load(source.read_text())
    cfg["trainer"].update(max_epochs=1, limit_val_batches=1, log_every_n_steps=1)
    cfg["data"]["init_args"].update(root=str(scenes), batch_size=4)
    init = cfg["model"]["init_args"]
    if task == "segmentation":
        init.update(head="fcn")
    else:
        init.update(fpn_channels=16, image_size=32)
    cfg["run_root"] = str(tmp_path / "runs")
    path = tmp_path / f"{task}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(argv: list[str]) -> int:
    from resnet_pl.cli import main

    return main(argv)


def test_cli_segmentation_fit_test_export_segment(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _tiny_config(tmp_path, scenes, "segmentation")
    assert _run(["fit", "--config", str(config), "--trainer.max_steps", "2"]) == 0
    ckpt = next((tmp_path / "runs/scenes_segmentation/version_0/checkpoints").glob("best-*.ckpt"))
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["num_classes"] == 11 and hp["class_names"][0] == "background"
    assert hp["mean"] == [0.286] and hp["arch"] == "resnet20.fashion_mnist"
    assert _run(["test", "--config", str(config), "--ckpt_path", str(ckpt),
                 "--trainer.limit_test_batches", "1"]) == 0  # fmt: skip
    onnx_path = tmp_path / "seg.onnx"
    assert _run(["export", str(ckpt), "-o", str(onnx_path), "--verify_data",
                 str(scenes / "JPEGImages"), "--verify_samples", "8"]) == 0  # fmt: skip
    assert "verified" in capsys.readouterr().out
    import onnxruntime as ort

    from resnet_pl.deploy.dense import load_dense_checkpoint, predict_files

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    image = scenes / "JPEGImages/test_00000.png"
    dense = load_dense_checkpoint(ckpt)
    from resnet_pl.data.transforms import normalize

    x = normalize(torch.from_numpy(np.array(Image.open(image)))[None], dense.mean, dense.std)
    onnx_mask = session.run(None, {session.get_inputs()[0].name: x[None].numpy()})[0].argmax(1)[0]
    torch_mask = predict_files(dense, [image])[0]["mask"]
    assert (onnx_mask == torch_mask).mean() > 0.999
    out = tmp_path / "pred"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert _run(["segment", str(image), str(bad), "--model", str(ckpt), "-o", str(out),
                 "--overlay"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    mask = read_mask(out / "masks/test_00000.png")
    assert mask.shape == (32, 32) and np.array_equal(mask, torch_mask)
    assert (out / "overlays/test_00000.png").is_file()


def test_cli_detection_fit_detect_and_export_refusal(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _tiny_config(tmp_path, scenes, "detection")
    assert _run(["fit", "--config", str(config), "--trainer.max_steps", "2"]) == 0
    ckpt = next((tmp_path / "runs/scenes_detection/version_0/checkpoints").glob("best-*.ckpt"))
    out = tmp_path / "det"
    assert _run(["detect", str(scenes / "JPEGImages/test_00000.png"), "--model", str(ckpt),
                 "-o", str(out)]) == 0  # fmt: skip
    payload = json.loads((out / "detections.json").read_text())
    assert payload["class_names"][0] == "T-shirt/top" and len(payload["images"]) == 1
    assert _run(["export", str(ckpt), "-o", str(tmp_path / "det.onnx")]) == 2
    err = capsys.readouterr().err
    refusals = [line for line in err.splitlines() if "error: detection checkpoints" in line]
    assert len(refusals) == 1 and "not exported to ONNX" in refusals[0]
    assert _run(["segment", str(scenes / "JPEGImages/test_00000.png"), "--model", str(ckpt)]) == 2
    assert "use resnet-pl detect" in capsys.readouterr().err


@pytest.mark.slow
def test_segmentation_resume_is_exact(scenes: Path, tmp_path: Path) -> None:
    """Killed mid-epoch (step 3 of 3 epochs x 2 steps) and resumed from its step checkpoint,
    a run ends with the same weights as an uninterrupted one: optimizer state, random state and
    the loader's position are restored. (A constant learning rate: a cosine schedule's length
    depends on max_steps, which the first leg uses to stop.)"""
    config = _tiny_config(tmp_path, scenes, "segmentation")
    common = ["--config", str(config), "--checkpoint_every_n_steps", "3",
              "--trainer.max_epochs", "3", "--model.init_args.scheduler", "none"]  # fmt: skip
    assert _run(["fit", *common, "--run_name", "straight"]) == 0
    assert _run(["fit", *common, "--run_name", "resumed", "--trainer.max_steps", "3"]) == 0
    runs = tmp_path / "runs"
    step_ckpt = runs / "resumed/version_0/checkpoints/last_step.ckpt"
    state = torch.load(step_ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 3  # mid-epoch: epoch 1, after its first batch
    assert _run(["fit", *common, "--run_name", "resumed", "--ckpt_path", str(step_ckpt)]) == 0

    def weights(name: str) -> dict[str, torch.Tensor]:
        ckpt = runs / name / "version_0/checkpoints/last.ckpt"
        return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]

    a, b = weights("straight"), weights("resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
