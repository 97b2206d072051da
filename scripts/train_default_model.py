"""Train the shipped default nuclei model (reproducible: fixed seed, settings in the file).

    python scripts/train_default_model.py --iterations 3000 --output src/napari_unet/models/default.safetensors

Data: the ``train`` splits of BBBC039 and DSB2018 (../shared/data, CC0), masks used as
dense ground truth; ``val`` picks the checkpoint (foreground IoU every
``--validation-interval`` iterations) and the post-processing (threshold, smallest
cell) by AP@0.5. ``test`` is never touched here (see evaluate_default_model.py).
Grey brightfield DSB images (16 of 663, dark nuclei on bright background) are left out:
the model is for fluorescence and, via RGB inversion, colour (H&E/brightfield) images.
SIGINT/SIGTERM stop training early and still save the best model so far.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nuclei_data import grey, load, load_packed  # noqa: E402

from napari_unet.inference.segment import model_percentiles  # noqa: E402
from napari_unet.method.augmentation import AugmentationConfig  # noqa: E402
from napari_unet.method.images import percentile_normalization  # noqa: E402
from napari_unet.method.instances import boundary_watershed, probabilities_to_labels  # noqa: E402
from napari_unet.method.network import UNetConfig  # noqa: E402
from napari_unet.method.tiling import predict_tiled  # noqa: E402
from napari_unet.metrics import average_precision  # noqa: E402
from napari_unet.models.files import save_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training.loop import TrainingConfig, train  # noqa: E402


def _probabilities(model, image):
    """Background and interior (three classes) or cell (two classes) probabilities."""
    plane = grey(image)
    classes = (0, 1) if model.config.n_classes == 3 else (1,)
    normalization = percentile_normalization(plane, model_percentiles(model))
    return predict_tiled(
        plane, model, normalization=normalization, precision="float32", output_classes=classes
    )


def labels_from(model, probabilities, threshold, min_size, seed_threshold=0.5):
    if model.config.n_classes == 3:
        return boundary_watershed(
            probabilities[0], probabilities[1], threshold, min_size, seed_threshold
        )
    return probabilities_to_labels(
        probabilities[0], threshold, min_size, 2 * model.metadata.get("gap", 1)
    )


def choose_postprocessing(model, val_items) -> tuple[float, dict]:
    """(val AP@0.5, post-processing settings) with the best mean AP@0.5 on ``val_items``."""
    import itertools

    probabilities = [_probabilities(model, i.image) for i in val_items]
    if model.config.n_classes == 3:
        grid = itertools.product((0.5, 0.6, 0.7), (16, 32, 64), (0.5, 0.7, 0.85))
    else:
        grid = itertools.product((0.4, 0.5, 0.6, 0.7, 0.8), (8, 16, 32, 48, 64), (0.5,))
    best = None
    for threshold, min_size, seed in grid:
        ap = float(
            np.mean(
                [
                    average_precision(i.masks, labels_from(model, pb, threshold, min_size, seed))
                    for i, pb in zip(val_items, probabilities, strict=True)
                ]
            )
        )
        print(
            f"  threshold {threshold} min_size {min_size} seed {seed}: AP@0.5 {ap:.4f}", flush=True
        )
        if best is None or ap > best[0]:
            settings = {"threshold": threshold, "min_size": min_size}
            if model.config.n_classes == 3:
                settings["seed_threshold"] = seed
            best = (ap, settings)
    return best


def postprocess_only(path: Path, output: Path) -> None:
    """Re-choose threshold and smallest cell of a trained model on the val splits."""
    from napari_unet.models.files import load_model

    model = load_model(path)
    datasets = sorted(model.metadata.get("data", {}).get("train", {})) or ["bbbc039", "dsb2018"]
    val_items = [i for d in datasets for i in load(d, "val") if i.kind != "grey brightfield"]
    best = choose_postprocessing(model, val_items)
    model.metadata.update(
        postprocessing=best[1],
        validation={"ap50": best[0], "n_images": len(val_items)},
    )
    save_model(model, output, dtype=torch.float16)
    print(f"saved {output}; val AP@0.5 {best[0]:.4f} at {best[1]}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--tile", type=int, default=284, help="input tile (valid for depth 5: 252, 284, 316, …)"
    )
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--validation-interval", type=int, default=250)
    p.add_argument("--n-validation", type=int, default=16, help="val images scored during training")
    p.add_argument(
        "--limit", type=int, default=None, help="images per dataset and split (smoke tests)"
    )
    p.add_argument("--init", default=None, help="model file to continue from (warm restart)")
    p.add_argument("--seed", type=int, default=2015)
    p.add_argument("--n-classes", type=int, default=3, help="2 (paper) or 3 (with cell boundary)")
    p.add_argument("--data-workers", type=int, default=0, help="batch-preparing processes (GPU)")
    p.add_argument(
        "--packed",
        type=Path,
        nargs="*",
        default=None,
        help="packed data files instead of ../shared/data",
    )
    p.add_argument("--minutes", type=float, default=None, help="time budget (the schedule fits it)")
    p.add_argument(
        "--skip-postprocessing",
        action="store_true",
        help="keep post-processing for --postprocess-only",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--output", type=Path, default=Path("src/napari_unet/models/default.safetensors")
    )
    p.add_argument("--log", type=Path, default=Path("runs/default_model_log.jsonl"))
    p.add_argument(
        "--postprocess-only",
        type=Path,
        default=None,
        help="only re-choose the post-processing of this model on val, write it to --output",
    )
    args = p.parse_args()
    if args.postprocess_only:
        postprocess_only(args.postprocess_only, args.output)
        return
    torch.manual_seed(args.seed)

    t0 = time.time()
    if args.packed:
        train_items = [i for f in args.packed for i in load_packed(f, "train")]
        val_items = [i for f in args.packed for i in load_packed(f, "val")]
    else:
        train_items = [
            i
            for d in ("bbbc039", "dsb2018")
            for i in load(d, "train", args.limit)
            if i.kind != "grey brightfield"
        ]
        val_items = [
            i
            for d in ("bbbc039", "dsb2018")
            for i in load(d, "val", args.limit)
            if i.kind != "grey brightfield"
        ]
    rng = np.random.default_rng(args.seed)
    val_scored = [
        val_items[i]
        for i in sorted(
            rng.choice(len(val_items), min(args.n_validation, len(val_items)), replace=False)
        )
    ]
    print(
        f"{len(train_items)} training images, {len(val_items)} validation images "
        f"(loaded in {time.time() - t0:.0f} s)",
        flush=True,
    )

    config = TrainingConfig(
        n_iterations=args.iterations,
        max_seconds=None if args.minutes is None else args.minutes * 60,
        n_classes=args.n_classes,
        data_workers=args.data_workers,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        tile_shape=(args.tile, args.tile),
        augmentation=AugmentationConfig(scale_range=(0.6, 1.7)),
        validation_interval=args.validation_interval,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Validation pairs: dense masks as ground truth; grey planes so RGB inversion applies.
    init = None
    if args.init:
        from napari_unet.models.files import load_model

        init = load_model(args.init)
    generator = train(
        [i.image for i in train_items],
        [i.masks for i in train_items],
        config=config,
        device=args.device,
        dense=True,
        stop=stop,
        seed=args.seed,
        model=init,
        validation=[(grey(i.image), i.masks) for i in val_scored],
        model_config=UNetConfig(
            n_classes=args.n_classes,
            depth=args.depth,
            base_channels=args.base_channels,
            batch_norm=True,
        ),
    )
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "w") as log:

        def report(pr):
            log.write(json.dumps(pr.__dict__) + "\n")
            log.flush()
            if pr.iteration % 50 == 0 or pr.validation_score is not None:
                print(
                    f"it {pr.iteration}/{pr.n_iterations} loss {pr.loss:.4f} best {pr.best_loss:.4f} "
                    f"val {pr.validation_score} {pr.seconds:.0f} s",
                    flush=True,
                )

        result = run_to_completion(generator, report)
    model = result.model
    print(f"best iteration {result.best_iteration}; choosing post-processing on val", flush=True)

    if args.skip_postprocessing or not val_items:
        best = (None, {"threshold": 0.5, "min_size": 16})
    else:
        best = choose_postprocessing(model, val_items)
    earlier = (
        [] if init is None else init.metadata.get("training_stages", [init.metadata["training"]])
    )
    earlier_scripts = [] if init is None else init.metadata.get("script", [])
    if isinstance(earlier_scripts, str):
        earlier_scripts = [earlier_scripts]
    model.metadata.update(
        training_stages=[*earlier, model.metadata["training"]],
        name="default",
        description=(
            "napari-unet default model: U-Net (background / cell interior / cell boundary) "
            "trained on the train splits of BBBC039 (U2OS Hoechst nuclei), DSB2018 stage1 "
            "(nuclei; fluorescence + colour), both CC0, and Usiigaci (phase-contrast cells, MIT)"
            if any(i.dataset == "usiigaci" for i in train_items)
            else "napari-unet default nuclei model: U-Net trained on the train splits of "
            "BBBC039 (U2OS Hoechst) and DSB2018 stage1 (fluorescence + colour), CC0 data"
        ),
        postprocessing=best[1],
        validation={"ap50": best[0], "n_images": len(val_items)},
        data={
            "train": {
                d: sum(i.dataset == d for i in train_items)
                for d in sorted({i.dataset for i in train_items})
            },
            "excluded": "DSB2018 grey brightfield images",
        },
        script=[*earlier_scripts, "scripts/train_default_model.py " + " ".join(sys.argv[1:])],
    )
    save_model(model, args.output, dtype=torch.float16)
    print(
        f"saved {args.output} ({args.output.stat().st_size / 1e6:.1f} MB); val AP@0.5 {best[0]}; "
        f"total {time.time() - t0:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
