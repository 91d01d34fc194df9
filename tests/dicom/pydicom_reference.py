# Reference pixel values from pydicom (an independent DICOM reader) for the decoder tests.
#   pydicom_reference.py OUT_DIR CASE...   with CASE = name=path[:stored|:rgb]
# For each case writes OUT_DIR/name.bin (int32 little endian, frames x rows x columns x samples)
# and OUT_DIR/name.txt ("frames rows columns samples"). "stored" gives pixel_array as stored;
# "rgb" converts YCbCr to RGB with pydicom's own convert_color_space (PS3.3 C.7.6.3.1.2).
# A path ending in "@gdcmconv" is first decompressed with GDCM's gdcmconv --raw (for the
# 12-bit JPEG that pydicom cannot decode without extra plugins).
# SPDX-License-Identifier: GPL-3.0-or-later
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import convert_color_space

warnings.simplefilter("ignore")
out_dir = sys.argv[1]
for case in sys.argv[2:]:
    name, rest = case.split("=", 1)
    mode = "stored"
    if rest.endswith(":stored") or rest.endswith(":rgb"):
        rest, mode = rest.rsplit(":", 1)
    path = rest
    tmp = None
    if path.endswith("@gdcmconv"):
        path = path[: -len("@gdcmconv")]
        tmp = tempfile.NamedTemporaryFile(suffix=".dcm", delete=False)
        tmp.close()
        subprocess.run(["gdcmconv", "--raw", path, tmp.name], check=True)
        path = tmp.name
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.SamplesPerPixel)
    if frames == 1:
        arr = arr[np.newaxis, ...]
    if samples == 1:
        arr = arr[..., np.newaxis]
    if mode == "rgb" and ds.PhotometricInterpretation.startswith("YBR"):
        arr = convert_color_space(arr.astype(np.uint8), ds.PhotometricInterpretation, "RGB", per_frame=True)
    arr = np.ascontiguousarray(arr.astype("<i4"))
    arr.tofile(os.path.join(out_dir, name + ".bin"))
    with open(os.path.join(out_dir, name + ".txt"), "w") as f:
        f.write(f"{arr.shape[0]} {arr.shape[1]} {arr.shape[2]} {arr.shape[3]}\n")
    if tmp:
        os.unlink(tmp.name)
