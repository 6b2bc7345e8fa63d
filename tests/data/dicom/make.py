"""Builds the DICOM test corpus in this folder with real encoders, and pydicom's pixels for it.

Sources are written by pydicom; every compressed or re-encoded file is made by DCMTK
(dcmconv, dcmcjpeg, dcmcjpls, dcmcrle) or GDCM (gdcmconv) from them. For each file,
`expected.json` holds what pydicom 3 (with pylibjpeg, pylibjpeg-libjpeg and
pylibjpeg-openjpeg) makes of it, and `ref/<name>.f64` its pixels as float64 little endian:
monochrome files the first frame after the modality LUT (`apply_modality_lut`), colour files
the grey value 0.2126 R + 0.7152 G + 0.0722 B of pydicom's RGB scaled to [0, 1] (the weights
of the program's colour-to-grey path). The largest difference from the encoder's source image
is recorded too (0 for lossless codecs).

Needs: python3 with pydicom numpy pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg; Debian's
dcmtk and libgdcm-tools. Run from anywhere: python3 tests/data/dicom/make.py
"""
import json, os, shutil, subprocess, sys
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_color_lut, convert_color_space, pack_bits
from pydicom.uid import ExplicitVRLittleEndian

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 48, 32  # non-square, even width (4:2:2), multiples of 8 (JPEG blocks), >= 32 (J2K levels)
yy, xx = np.mgrid[0:H, 0:W]
rng = np.random.default_rng(19)


def base(rows=H, cols=W, sop='1.2.840.10008.5.1.4.1.1.1.1'):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = '1.2.826.0.1.3680043.8.498.' + str(rng.integers(1 << 40))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = 'DX'
    ds.Rows, ds.Columns = rows, cols
    return ds


def mono(ds, arr, bits_alloc, bits_stored, signed=False, photometric='MONOCHROME2'):
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_alloc, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {8: 'u1', 16: 'u2', 32: 'u4'}[bits_alloc]
    if signed:
        dtype = dtype.replace('u', 'i')
    ds.PixelData = arr.astype('<' + dtype).tobytes()
    return ds


def colour(ds, arr, photometric='RGB', planar=0):
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = planar
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    a = arr.astype('u1')
    ds.PixelData = (a.transpose(2, 0, 1) if planar else a).tobytes()
    return ds


def save(ds, name):
    ds.save_as(os.path.join(HERE, name), enforce_file_format=True)


def run(*cmd):
    subprocess.run(cmd, check=True, cwd=HERE, capture_output=True)


src12 = ((np.sin(xx / 5.0) + np.cos(yy / 4.0) + 2) * 900 + rng.integers(0, 200, (H, W))).astype(np.int64)
src8 = (src12 >> 4).astype(np.int64)
rgb = np.stack([
    (xx * 8) % 256, (yy * 10) % 256, ((xx + yy) * 5 + 40) % 256
], axis=-1).astype(np.int64)
rgb = np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255)

sources = {}  # name -> (array the encoder was given, kind)
files = []    # (name, source name, how it was made)


def add(name, source, how):
    files.append((name, source, how))


for f in os.listdir(HERE):
    if f.endswith('.dcm'):
        os.remove(os.path.join(HERE, f))
shutil.rmtree(os.path.join(HERE, 'ref'), ignore_errors=True)
os.makedirs(os.path.join(HERE, 'ref'))

# -- monochrome, 16 bits allocated, 12 stored --
save(mono(base(), src12, 16, 12), 'mono16.dcm')
sources['mono16'] = src12
add('mono16.dcm', 'mono16', 'pydicom, explicit VR little endian')
for name, args, how in [
    ('implicit.dcm', ['dcmconv', '+ti'], 'dcmconv +ti'),
    ('big_endian.dcm', ['dcmconv', '+tb'], 'dcmconv +tb'),
    ('deflated_dcmtk.dcm', ['dcmconv', '+td'], 'dcmconv +td'),
    ('bare_implicit.dcm', ['dcmconv', '-F', '+ti'], 'dcmconv -F +ti (no File Meta header)'),
    ('bare_explicit.dcm', ['dcmconv', '-F', '+te'], 'dcmconv -F +te (no File Meta header)'),
    ('jpeg_lossless_57.dcm', ['dcmcjpeg', '+el'], 'dcmcjpeg +el'),
    ('jpeg_lossless_sv1_70.dcm', ['dcmcjpeg', '+e1'], 'dcmcjpeg +e1'),
    ('jpeg_extended12_51.dcm', ['dcmcjpeg', '+ee'], 'dcmcjpeg +ee (12-bit)'),
    ('rle.dcm', ['dcmcrle'], 'dcmcrle'),
    ('jls_lossless_dcmtk.dcm', ['dcmcjpls', '+el'], 'dcmcjpls +el'),
    ('jls_near2_dcmtk.dcm', ['dcmcjpls', '+en', '+md', '2'], 'dcmcjpls +en +md 2'),
    ('deflated_gdcm.dcm', ['gdcmconv', '--deflated'], 'gdcmconv --deflated'),
    ('jls_gdcm.dcm', ['gdcmconv', '--jpegls'], 'gdcmconv --jpegls'),
    ('j2k_lossless_gdcm.dcm', ['gdcmconv', '--j2k'], 'gdcmconv --j2k'),
    ('j2k_lossy_gdcm.dcm', ['gdcmconv', '--j2k', '--lossy', '-q', '80'], 'gdcmconv --j2k --lossy -q 80'),
]:
    run(*args, 'mono16.dcm', name)
    add(name, 'mono16', how)

# -- other monochrome depths and interpretations --
save(mono(base(), src8, 8, 8), 'mono8.dcm')
sources['mono8'] = src8
add('mono8.dcm', 'mono8', 'pydicom, 8 bits')
for name, args, how in [
    ('jpeg_baseline_50.dcm', ['dcmcjpeg', '+eb', '+q', '95'], 'dcmcjpeg +eb +q 95'),
    ('jpeg_extended8_51.dcm', ['dcmcjpeg', '+ee', '+q', '95'], 'dcmcjpeg +ee +q 95 (8-bit)'),
]:
    run(*args, 'mono8.dcm', name)
    add(name, 'mono8', how)

save(mono(base(), src12, 16, 12, photometric='MONOCHROME1'), 'monochrome1.dcm')
add('monochrome1.dcm', 'mono16', 'pydicom, MONOCHROME1')

ct = (src12 - 1024).astype(np.int64)  # signed, rescaled
d = mono(base(), ct, 16, 16, signed=True)
d.RescaleSlope, d.RescaleIntercept = '0.5', '-1024'
d.WindowCenter, d.WindowWidth = '-600', '1500'
save(d, 'signed16_rescale_window.dcm')
sources['signed16'] = ct * 0.5 - 1024
add('signed16_rescale_window.dcm', 'signed16', 'pydicom, signed 16 bits, rescale, window')
run('gdcmconv', '--j2k', 'signed16_rescale_window.dcm', 'signed16_j2k.dcm')
add('signed16_j2k.dcm', 'signed16', 'gdcmconv --j2k (signed)')

bits1 = ((xx // 4 + yy // 3) % 2).astype(np.int64)
d = base()
d.SamplesPerPixel, d.PhotometricInterpretation = 1, 'MONOCHROME2'
d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 1, 1, 0, 0
d.PixelData = pack_bits(bits1.astype('u1'))
save(d, 'bits1.dcm')
sources['bits1'] = bits1
add('bits1.dcm', 'bits1', 'pydicom, 1 bit (pack_bits)')

u32 = (src12 * 100003 + 7).astype(np.int64)  # uses the high bits
d = mono(base(), u32, 32, 32)
d.RescaleSlope, d.RescaleIntercept = '0.001', '-5'
save(d, 'bits32u.dcm')
sources['bits32u'] = u32 * 0.001 - 5
add('bits32u.dcm', 'bits32u', 'pydicom, 32 bits unsigned, rescale')
run('dcmcrle', 'bits32u.dcm', 'bits32u_rle.dcm')
add('bits32u_rle.dcm', 'bits32u', 'dcmcrle (32 bits)')
s32 = ((src12 - 2000) * 70001).astype(np.int64)
d = mono(base(), s32, 32, 32, signed=True)
d.RescaleSlope, d.RescaleIntercept = '2', '0.5'
save(d, 'bits32s.dcm')
sources['bits32s'] = s32 * 2 + 0.5
add('bits32s.dcm', 'bits32s', 'pydicom, 32 bits signed, rescale')

frames = np.stack([src12, 4095 - src12, src12 // 2])
d = mono(base(), frames, 16, 12)
d.NumberOfFrames = 3
save(d, 'multiframe.dcm')
add('multiframe.dcm', 'mono16', 'pydicom, 3 frames')
run('gdcmconv', '--j2k', 'multiframe.dcm', 'multiframe_j2k.dcm')
add('multiframe_j2k.dcm', 'mono16', 'gdcmconv --j2k, 3 frames')
run('dcmcjpeg', '+ee', 'multiframe.dcm', 'multiframe_jpeg12_51.dcm')
add('multiframe_jpeg12_51.dcm', 'mono16', 'dcmcjpeg +ee (12-bit), 3 frames')

# -- colour --
save(colour(base(), rgb), 'rgb.dcm')
sources['rgb'] = rgb
add('rgb.dcm', 'rgb', 'pydicom, RGB')
save(colour(base(), rgb, planar=1), 'rgb_planar.dcm')
add('rgb_planar.dcm', 'rgb', 'pydicom, RGB, planar configuration 1')
ybr = convert_color_space(rgb.astype('u1'), 'RGB', 'YBR_FULL')
save(colour(base(), ybr, 'YBR_FULL'), 'ybr_full.dcm')
add('ybr_full.dcm', 'rgb', 'pydicom convert_color_space to YBR_FULL')
# Uncompressed 4:2:2: Y1 Y2 Cb Cr for each horizontal pair (Cb, Cr of the pair averaged).
y = ybr[..., 0].astype(np.int64)
cb = ybr[..., 1].astype(np.int64).reshape(H, W // 2, 2).mean(axis=2).round().astype(np.int64)
cr = ybr[..., 2].astype(np.int64).reshape(H, W // 2, 2).mean(axis=2).round().astype(np.int64)
packed = np.stack([y[:, 0::2], y[:, 1::2], cb, cr], axis=-1).astype('u1')
d = colour(base(), ybr, 'YBR_FULL_422')
d.PixelData = packed.tobytes()
save(d, 'ybr_full_422.dcm')
add('ybr_full_422.dcm', 'rgb', 'pydicom, uncompressed YBR_FULL_422 (2 bytes a pixel)')
for name, src_file, args, how in [
    ('rgb_jpeg_baseline.dcm', 'rgb.dcm', ['dcmcjpeg', '+eb', '+q', '95'], 'dcmcjpeg +eb +q 95 (YBR_FULL_422)'),
    ('rgb_j2k_gdcm.dcm', 'rgb.dcm', ['gdcmconv', '--j2k'], 'gdcmconv --j2k (RGB, no colour transform)'),
    ('rgb_rle.dcm', 'rgb.dcm', ['dcmcrle'], 'dcmcrle'),
    ('ybr_full_rle.dcm', 'ybr_full.dcm', ['dcmcrle'], 'dcmcrle of YBR_FULL'),
    ('rgb_jls.dcm', 'rgb.dcm', ['dcmcjpls', '+el'], 'dcmcjpls +el'),
]:
    run(*args, src_file, name)
    add(name, 'rgb', how)

# JPEG 2000 with the colour transforms (YBR_RCT lossless, YBR_ICT lossy): OpenJPEG through
# pydicom's encoder (GDCM writes RGB without them).
from pydicom.uid import JPEG2000Lossless, JPEG2000
for name, syntax, kw, how in [
    ('rgb_j2k_rct.dcm', JPEG2000Lossless, {}, 'OpenJPEG via pydicom compress (YBR_RCT)'),
    ('rgb_j2k_ict.dcm', JPEG2000, {'j2k_psnr': [40]}, 'OpenJPEG via pydicom compress, PSNR 40 (YBR_ICT)'),
]:
    d = pydicom.dcmread(os.path.join(HERE, 'rgb.dcm'))
    # RGB samples labelled with the transform's name: the encoder then applies it.
    d.PhotometricInterpretation = how[-8:-1]
    d.compress(syntax, encoding_plugin='pylibjpeg', **kw)
    frame = next(pydicom.encaps.generate_frames(d.PixelData, number_of_frames=1))
    cod = frame.find(b'\xff\x52')
    assert frame[cod + 8] == 1, 'the codestream uses the colour transform'
    save(d, name)
    add(name, 'rgb', how)

# PALETTE COLOR: 256 entries of 16 bits.
idx = ((xx * 8 + yy * 3) % 256).astype(np.int64)
d = base()
d.SamplesPerPixel, d.PhotometricInterpretation = 1, 'PALETTE COLOR'
d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 8, 8, 7, 0
ramp = np.arange(256)
lut = {'Red': ramp * 257, 'Green': (255 - ramp) * 257, 'Blue': ((ramp * 3) % 256) * 257}
for c, v in lut.items():
    setattr(d, f'{c}PaletteColorLookupTableDescriptor', [256, 0, 16])
    setattr(d, f'{c}PaletteColorLookupTableData', v.astype('<u2').tobytes())
d.PixelData = idx.astype('u1').tobytes()
save(d, 'palette.dcm')
add('palette.dcm', None, 'pydicom, PALETTE COLOR, 16-bit tables')

# -- a private sequence that an explicit VR file keeps as UN of undefined length --
# (PS3.5 6.2.2: its value is an implicit VR little endian sequence.) pydicom writes the
# private SQ; its bytes are then relabelled UN as a converter that did not know the tag would.
d = mono(base(), src12, 16, 12)
block = d.private_block(0x0009, 'COVID-RESNET TEST', create=True)
inner = Dataset()
inner.add_new(0x00080100, 'SH', 'ABC')
block.add_new(0x01, 'SQ', [inner])
d[0x00091001].is_undefined_length = True
save(d, 'un_sequence.dcm')
raw = open(os.path.join(HERE, 'un_sequence.dcm'), 'rb').read()
tag = bytes([0x09, 0x00, 0x01, 0x10]) + b'SQ\0\0\xff\xff\xff\xff'
assert raw.count(tag) == 1
raw = raw.replace(tag, bytes([0x09, 0x00, 0x01, 0x10]) + b'UN\0\0\xff\xff\xff\xff')
# Items inside are already implicit VR? No: pydicom wrote them explicit; rewrite the item's
# one element (0008,0100) SH "ABC\0"... as implicit: tag, 4-byte length, value.
exp = bytes([0x08, 0x00, 0x00, 0x01]) + b'SH' + (4).to_bytes(2, 'little') + b'ABC '
imp = bytes([0x08, 0x00, 0x00, 0x01]) + (4).to_bytes(4, 'little') + b'ABC '
assert raw.count(exp) == 1
raw = raw.replace(exp, imp)
open(os.path.join(HERE, 'un_sequence.dcm'), 'wb').write(raw)
add('un_sequence.dcm', 'mono16', 'pydicom, private sequence relabelled UN, undefined length')

# -- files without an image --
sr = base(sop='1.2.840.10008.5.1.4.1.1.88.11')  # Basic Text SR Storage
for k in ('Rows', 'Columns'):
    delattr(sr, k)
sr.Modality = 'SR'
sr.ValueType, sr.ContinuityOfContent = 'CONTAINER', 'SEPARATE'
save(sr, 'no_image_sr.dcm')
add('no_image_sr.dcm', None, 'pydicom, Basic Text SR Storage')
plan = base(sop='1.2.840.10008.5.1.4.1.1.481.5')  # RT Plan Storage
for k in ('Rows', 'Columns'):
    delattr(plan, k)
plan.Modality = 'RTPLAN'
save(plan, 'no_image_rtplan.dcm')
add('no_image_rtplan.dcm', None, 'pydicom, RT Plan Storage')

# -- what pydicom makes of each --
LUMA = np.array([0.2126, 0.7152, 0.0722])
out = []
for name, source, how in files:
    ds = pydicom.dcmread(os.path.join(HERE, name), force=True)
    ts = str(ds.file_meta.TransferSyntaxUID) if 'TransferSyntaxUID' in ds.file_meta else ''
    if not ts:  # bare data set: how pydicom guessed it
        ts = '1.2.840.10008.1.2' if ds.original_encoding[0] else '1.2.840.10008.1.2.1'
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
    entry = {'file': name, 'made_by': how, 'transfer_syntax': ts}
    if 'PixelData' not in ds:
        entry['pydicom'] = 'no pixel data'
        entry['sop_class'] = str(ds.SOPClassUID)
        out.append(entry)
        continue
    entry['photometric'] = str(ds.PhotometricInterpretation)
    entry['bits_allocated'] = int(ds.BitsAllocated)
    entry['frames'] = int(getattr(ds, 'NumberOfFrames', 1) or 1)
    arr = ds.pixel_array
    if entry['frames'] > 1:
        arr = arr[0]
    if entry['photometric'] == 'PALETTE COLOR':
        rgbp = apply_color_lut(arr, ds).astype(np.float64) / 65535.0
        ref = rgbp @ LUMA
        entry['kind'] = 'colour'
    elif int(ds.SamplesPerPixel) == 3:
        ref = (arr.astype(np.float64) / 255.0) @ LUMA
        entry['kind'] = 'colour'
        src = sources[source].astype(np.float64) / 255.0 @ LUMA
        entry['max_diff_from_source'] = float(np.abs(ref - src).max())
    else:
        ref = apply_modality_lut(arr, ds).astype(np.float64)
        entry['kind'] = 'mono'
        src = sources[source].astype(np.float64)
        entry['max_diff_from_source'] = float(np.abs(ref - src).max())
    entry['pydicom'] = 'pixels'
    ref.astype('<f8').tofile(os.path.join(HERE, 'ref', name.replace('.dcm', '.f64')))
    out.append(entry)
json.dump(out, open(os.path.join(HERE, 'expected.json'), 'w'), indent=1)
for e in out:
    print(e['file'], e['transfer_syntax'], e.get('photometric', '-'), e.get('max_diff_from_source', e['pydicom']))
