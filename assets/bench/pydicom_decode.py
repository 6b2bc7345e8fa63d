"""pydicom's side of `covid-resnet bench decode`: times file -> pixels the way a pydicom user
does it (dcmread, pixel_array through the pylibjpeg plug-ins, the modality LUT and the VOI LUT
or window), median of --iters after --warmup, one RESULT line.

Needs pydicom, numpy, pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-libjpeg."""
import argparse, statistics, time
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

p = argparse.ArgumentParser()
p.add_argument('file')
p.add_argument('--iters', type=int, default=3)
p.add_argument('--warmup', type=int, default=1)
a = p.parse_args()


def decode():
    ds = pydicom.dcmread(a.file)
    arr = ds.pixel_array
    if ds.get('NumberOfFrames', 1) not in (None, '', 1, '1'):
        arr = arr[0]
    if str(ds.PhotometricInterpretation).startswith('MONOCHROME'):
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    return arr


for _ in range(a.warmup):
    decode()
times = []
for _ in range(a.iters):
    t = time.perf_counter()
    arr = decode()
    times.append(time.perf_counter() - t)
print(f'RESULT impl=pydicom-{pydicom.__version__} kind=decode file={a.file} '
      f'width={arr.shape[1]} height={arr.shape[0]} median_s={statistics.median(times):.4f}')
