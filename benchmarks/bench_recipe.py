"""A/B runs of fine-tuning recipes at a fixed number of iterations (issue 21).

    PYTHONPATH=src python benchmarks/bench_recipe.py --dataset usiigaci --protocol cells10 \
        --variants start,base,base+lr=3e-4,adabn,dec,base+scale=0.5 --iterations 150

Variants (``name+key=value+…``): ``start`` (the shipped model), ``base`` (every default),
``adabn`` (batch-norm statistics re-estimated on the painted images, then frozen; Li et al.
2016), ``dec`` (only the expansive path trains: ``TrainingConfig(trained_layers="expansive")``), with ``lr=``, ``bs=``, ``tile=`` and
``scale=`` (images and painting resized by that factor for training and prediction,
labels scaled back by nearest neighbour). Scored with SEG and AP@0.5 on ``--split``; one
JSON line per variant, with the load average.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.transform import rescale, resize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_finetune import painted_cells, painted_full, score  # noqa: E402
from nuclei_data import grey, load  # noqa: E402

from napari_unet.inference.segment import iter_segment  # noqa: E402
from napari_unet.method.images import DEFAULT_PERCENTILES, normalize, percentile_normalization  # noqa: E402
from napari_unet.models.files import load_model  # noqa: E402
from napari_unet.runtime.progress import run_to_completion  # noqa: E402
from napari_unet.training import TrainingConfig, train  # noqa: E402


def freeze_bn_after_adapt(model, images, n=16, tile=284, seed=0):
    """AdaBN: re-estimate BN statistics on the images, then keep BN in eval mode."""
    rng = np.random.default_rng(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    planes = []
    for im in images:
        im = np.asarray(grey(im), np.float32)  # the plane the network sees
        lo, hi = percentile_normalization(im, DEFAULT_PERCENTILES)
        planes.append(normalize(im, lo, hi))
    with torch.no_grad():
        for _ in range(n):
            p = planes[rng.integers(len(planes))]
            t = min(tile, p.shape[0], p.shape[1])
            t = model.valid_input_shape((t, t))[0]
            if t > min(p.shape):
                p = np.pad(
                    p, ((0, max(0, t - p.shape[0])), (0, max(0, t - p.shape[1]))), mode="reflect"
                )
            y = rng.integers(0, p.shape[0] - t + 1)
            x = rng.integers(0, p.shape[1] - t + 1)
            model(torch.from_numpy(np.ascontiguousarray(p[y : y + t, x : x + t]))[None, None])
    for bn in bns:
        bn.momentum = 0.1
        bn.train = (lambda self: lambda mode=True: torch.nn.Module.train(self, False))(bn)
        bn.eval()
    return model


def rescaled(image, scale: float) -> np.ndarray:
    """An image (grey or RGB) resized by ``scale``, anti-aliased."""
    image = np.asarray(image, np.float32)
    channel_axis = -1 if image.ndim == 3 else None
    return rescale(image, scale, order=1, channel_axis=channel_axis, anti_aliasing=True)


def labels_at_scale(item, model, scale: float) -> np.ndarray:
    """Segment ``item.image`` resized by ``scale``; labels back at full size (nearest)."""
    if scale == 1.0:
        return run_to_completion(iter_segment(item.image, model)).labels
    labels = run_to_completion(iter_segment(rescaled(item.image, scale), model)).labels
    return resize(
        labels, item.masks.shape, order=0, preserve_range=True, anti_aliasing=False
    ).astype(np.int32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="usiigaci")
    p.add_argument("--protocol", default="cells10")
    p.add_argument("--variants", default="base")
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="runs/bench_recipe.jsonl")
    args = p.parse_args()
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    train_items = load(args.dataset, "train")
    scored = load(args.dataset, args.split, limit=args.limit)
    if args.protocol == "full2":
        picks = sorted(rng.choice(len(train_items), 2, replace=False))
        images = [train_items[i].image for i in picks]
        anns = [painted_full(train_items[i].masks) for i in picks]
    else:
        n = int(args.protocol.removeprefix("cells"))
        pick = int(rng.integers(len(train_items)))
        images = [train_items[pick].image]
        anns = [painted_cells(train_items[pick].masks, n, rng)]
    base = load_model("default")

    def evaluate(model, scale=1.0):
        return score(scored, lambda item: labels_at_scale(item, model, scale))

    for variant in args.variants.split(","):
        t0 = time.time()
        opts = dict(v.split("=") for v in variant.split("+")[1:]) if "+" in variant else {}
        name = variant.split("+")[0]
        cfg = {}
        if "lr" in opts:
            cfg["learning_rate"] = float(opts["lr"])
        if "bs" in opts:
            cfg["batch_size"] = int(opts["bs"])
        if "tile" in opts:
            cfg["tile_shape"] = (int(opts["tile"]),) * 2
        if "dec" in name:
            cfg["trained_layers"] = "expansive"
        scale = float(opts.get("scale", 1.0))
        if name == "start":
            s = evaluate(base, scale)
            rec = dict(variant=variant, seg=s[0], ap=s[1])
        else:
            model = copy.deepcopy(base)
            tr_images, tr_anns = images, anns
            if scale != 1.0:
                tr_images = [rescaled(i, scale) for i in images]
                tr_anns = [
                    resize(
                        a, tr_images[k].shape[:2], order=0, preserve_range=True, anti_aliasing=False
                    ).astype(np.int32)
                    for k, a in enumerate(anns)
                ]
            if "adabn" in name:
                freeze_bn_after_adapt(model, tr_images)
            # hold_out=0: every painted cell trains, as in round 2 (the recipes are compared
            # on the same network output, without the never-worse rule)
            config = TrainingConfig(
                max_seconds=None, n_iterations=args.iterations, hold_out=0, **cfg
            )
            res = run_to_completion(
                train(tr_images, tr_anns, model=model, config=config, seed=args.seed)
            )
            tt = time.time() - t0
            s = evaluate(res.model, scale)
            rec = dict(
                variant=variant,
                seg=s[0],
                ap=s[1],
                train_s=round(tt, 1),
                it=len(res.history),
                tile=res.model.metadata["training"]["tile_shape"],
                object_size=res.model.metadata["object_size"],
                post=res.model.metadata["postprocessing"],
            )
        rec.update(
            dataset=args.dataset,
            protocol=args.protocol,
            iterations=args.iterations,
            seed=args.seed,
            split=args.split,
            total_s=round(time.time() - t0, 1),
            load=round(os.getloadavg()[0], 2),
        )
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
