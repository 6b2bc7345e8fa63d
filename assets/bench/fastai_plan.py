"""fastai's run of a covid-resnet plan file, for timing the whole plan against ours.

    python fastai_plan.py --data ../shared/data/covidx-v1 \
        --plan assets/bench/paper-scaled-r18.plan.toml --precision f32|bf16

What it runs, as `covid-resnet train` does with the same plan: ResNet-18 from random weights
(no ImageNet weights can be fetched here) with fastai's head, batch 32, seed 42, images
squashed to each stage's size, ImageNet normalisation, the paper's augmentation (flips,
rotation up to 15 degrees, lighting 0.2, fastai's probabilities), Adam (beta2 0.99, eps 1e-5,
decoupled weight decay 1e-2), one `fit_one_cycle` per step, `head` steps frozen (BatchNorm
stays trainable), `auto` steps at the LR finder's valley s as slice(s/100, s), validating on
the test split after every epoch as the paper's fastai code does. `--precision bf16` runs
the forward and loss under PyTorch's CPU autocast to bfloat16 (fastai's own `to_bf16()` asks
for CUDA autocast, which PyTorch turns off on a CPU, so it trains in float32 there). Needs
fastai 2.8 and torchvision.

Prints one line per step with its wall time, then `TOTAL seconds=... accuracy=...`.
"""

import argparse
import time
import tomllib
from functools import partial
from pathlib import Path

import torch
from fastai.vision.all import (
    Adam,
    Callback,
    CategoryBlock,
    ColReader,
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Normalize,
    Resize,
    ResizeMethod,
    accuracy,
    aug_transforms,
    imagenet_stats,
    set_seed,
    valley,
    vision_learner,
)
import pandas as pd
from torchvision.models import resnet18


class CpuBf16(Callback):
    """PyTorch's autocast to bfloat16 on the CPU around the forward and the loss, as fastai's
    `MixedPrecision` does on a GPU (its `to_bf16()` asks for CUDA autocast, which PyTorch
    disables on a CPU: the run would be float32)."""

    order = 10

    def before_batch(self):
        self.ac = torch.autocast("cpu", dtype=torch.bfloat16)
        self.ac.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.ac.__exit__(None, None, None)

    def after_cancel_batch(self):
        self.ac.__exit__(None, None, None)


def rows(data: Path, split: str, folder: str) -> list[tuple[str, str]]:
    out = []
    for line in (data / split).read_text().splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        name, label = parts[1], parts[2]
        path = data / folder / name
        if not path.exists():  # a .png original is stored as <stem>.jpg
            path = path.with_suffix(".jpg")
        out.append((str(path), label))
    return out


def loaders(df: pd.DataFrame, valid_idx: list[int], size: int, bs: int):
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_x=ColReader("path"),
        get_y=ColReader("label"),
        splitter=IndexSplitter(valid_idx),
        item_tfms=Resize(size, method=ResizeMethod.Squish),
        batch_tfms=[
            *aug_transforms(
                do_flip=True,
                flip_vert=True,
                max_rotate=15.0,
                max_zoom=1.0,
                max_lighting=0.2,
                max_warp=0.0,
                p_affine=0.75,
                p_lighting=0.75,
            ),
            Normalize.from_stats(*imagenet_stats),
        ],
    )
    return block.dataloaders(df, bs=bs, num_workers=2, device=torch.device("cpu"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    set_seed(a.seed, reproducible=True)
    plan = tomllib.loads(a.plan.read_text())
    train = rows(a.data, "train_COVIDx_v1.txt", "train")
    test = rows(a.data, "test_COVIDx_v1.txt", "test")
    df = pd.DataFrame(train + test, columns=["path", "label"])
    valid_idx = list(range(len(train), len(df)))

    t0 = time.perf_counter()
    stages = plan["stage"]
    dls = loaders(df, valid_idx, stages[0]["size_px"], a.batch_size)
    opt = partial(Adam, mom=0.9, sqr_mom=0.99, eps=1e-5)
    learn = vision_learner(
        dls, resnet18, pretrained=False, metrics=accuracy, opt_func=opt, wd=1e-2
    )
    if a.precision == "bf16":
        learn.add_cb(CpuBf16())
    for si, stage in enumerate(stages):
        if si > 0:
            learn.dls = loaders(df, valid_idx, stage["size_px"], a.batch_size)
        for step in stage["step"]:
            ts = time.perf_counter()
            if step["train"] == "head":
                learn.freeze()
            else:
                learn.unfreeze()
            lr = str(step["lr"])
            with learn.no_bar(), learn.no_logging():
                if lr == "auto":
                    s = learn.lr_find(suggest_funcs=(valley,), show_plot=False).valley
                    lr_max = slice(s / 100, s)
                elif ".." in lr:
                    lo, hi = (float(v) for v in lr.split(".."))
                    lr_max = slice(lo, hi)
                else:
                    lr_max = float(lr)
                learn.fit_one_cycle(step["epochs"], lr_max)
            _, loss, acc = learn.recorder.values[-1]
            print(
                f"STEP stage={si + 1} size={stage['size_px']} train={step['train']} "
                f"lr={lr_max} epochs={step['epochs']} seconds={time.perf_counter() - ts:.1f} "
                f"valid_loss={loss:.4f} accuracy={acc:.4f}",
                flush=True,
            )
    total = time.perf_counter() - t0
    with learn.no_bar():
        loss, acc = learn.validate()
    print(f"TOTAL precision={a.precision} seconds={total:.1f} accuracy={acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
