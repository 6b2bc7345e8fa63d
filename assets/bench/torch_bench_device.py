"""PyTorch reference figures for covid-resnet's benchmarks, on the same machine.

A copy of ../shared/reference/torch_bench.py with a --device option (cpu or cuda) for the
GPU benchmark (issue 8): on CUDA each timed step ends with torch.cuda.synchronize().

Same model as the paper (torchvision ResNet body + fastai head), same shapes. Prints one
line per measurement that starts with RESULT, as `key=value` pairs, so that a benchmark can
put our figure and PyTorch's side by side and print the ratio.

  python3 torch_bench.py train --arch resnet50 --batch 32 --size 224 --threads 2
  python3 torch_bench.py infer --arch resnet50 --batch 1 --size 224 --threads 2
  python3 torch_bench.py load --data ../data/covidx-v1 --size 224 --workers 1

Needs: pip install torch torchvision pillow (CPU is enough).
"""
import argparse, os, random, statistics, time

import torch, torch.nn as nn, torchvision


class ConcatPool(nn.Module):
    def forward(self, x):
        return torch.cat([torch.amax(x, dim=(2, 3)), torch.mean(x, dim=(2, 3))], 1)


def paper_model(arch):
    m = getattr(torchvision.models, arch)(weights=None)
    feats = m.fc.in_features
    body = nn.Sequential(*list(m.children())[:-2])
    head = nn.Sequential(ConcatPool(), nn.BatchNorm1d(2 * feats), nn.Dropout(0.25),
                         nn.Linear(2 * feats, 512), nn.ReLU(), nn.BatchNorm1d(512),
                         nn.Dropout(0.5), nn.Linear(512, 4))
    return nn.Sequential(body, head)


DEV = "cpu"


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter(); fn(); sync(); out.append(time.perf_counter() - t0)
    return statistics.median(out)


def train(a):
    model = paper_model(a.arch).train().to(DEV)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5)
    x = torch.randn(a.batch, 3, a.size, a.size, device=DEV)
    y = (torch.arange(a.batch) % 4).to(DEV)
    lossf = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        lossf(model(x), y).backward()
        opt.step()
    s = timed(step, a.warmup, a.iters)
    print(f"RESULT kind=train device={DEV} arch={a.arch} batch={a.batch} size={a.size} threads={torch.get_num_threads()} "
          f"median_step_s={s:.4f} img_per_s={a.batch / s:.3f}")


def infer(a):
    model = paper_model(a.arch).eval().to(DEV)
    x = torch.randn(a.batch, 3, a.size, a.size, device=DEV)

    def fwd():
        with torch.inference_mode():
            model(x).softmax(1).tolist()
    s = timed(fwd, a.warmup, a.iters)
    print(f"RESULT kind=infer device={DEV} arch={a.arch} batch={a.batch} size={a.size} threads={torch.get_num_threads()} "
          f"median_s={s:.5f} img_per_s={a.batch / s:.3f}")


def load(a):
    """fastai-like training pipeline: decode, rescale, flip, rotate, lighting, normalise, batch."""
    from PIL import Image
    import torchvision.transforms.v2 as T
    names = [l.split()[1] for l in open(os.path.join(a.data, "train_COVIDx_v1.txt")) if l.strip()]
    random.Random(0).shuffle(names)
    names = names[: a.images]
    tf = T.Compose([T.Resize((a.size, a.size), antialias=True), T.RandomVerticalFlip(),
                    T.RandomApply([T.RandomRotation(15)], p=0.75),
                    T.RandomApply([T.ColorJitter(brightness=0.2, contrast=0.2)], p=0.75),
                    T.ToImage(), T.ToDtype(torch.float32, scale=True),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class DS(torch.utils.data.Dataset):
        def __len__(self): return len(names)
        def __getitem__(self, i):
            return tf(Image.open(os.path.join(a.data, "train", names[i])).convert("RGB")), 0
    dl = torch.utils.data.DataLoader(DS(), batch_size=32, num_workers=a.workers, shuffle=False)
    t0 = time.perf_counter()
    n = sum(b[0].shape[0] for b in dl)
    s = time.perf_counter() - t0
    print(f"RESULT kind=load size={a.size} workers={a.workers} images={n} secs={s:.3f} img_per_s={n / s:.1f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "infer", "load"])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--data", default="../data/covidx-v1")
    p.add_argument("--images", type=int, default=640)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = p.parse_args()
    DEV = a.device
    torch.set_num_threads(a.threads)
    {"train": train, "infer": infer, "load": load}[a.mode](a)
