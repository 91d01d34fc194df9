# Reads a DICOM SEG with pydicom (independent of DCMTK and of the writer) and prints what the
# pipeline tests compare: segments and, per frame, the segment, the referenced source frame and
# the bounding box of the set pixels.
# SPDX-License-Identifier: GPL-3.0-or-later
import json
import sys

import numpy as np
import pydicom

ds = pydicom.dcmread(sys.argv[1])
pixels = ds.pixel_array
if pixels.ndim == 2:
    pixels = pixels[np.newaxis]
out = {"rows": int(ds.Rows), "columns": int(ds.Columns), "segments": [], "frames": []}
for s in ds.SegmentSequence:
    segment_type = s.SegmentedPropertyTypeCodeSequence[0]
    modifiers = getattr(segment_type, "SegmentedPropertyTypeModifierCodeSequence", [])
    out["segments"].append({
        "number": int(s.SegmentNumber),
        "label": str(s.SegmentLabel),
        "tracking_uid": str(getattr(s, "TrackingUID", "")),
        "category": str(s.SegmentedPropertyCategoryCodeSequence[0].CodeValue),
        "type": str(segment_type.CodeValue),
        "type_modifiers": [str(m.CodeValue) for m in modifiers],
    })
for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
    source = item.DerivationImageSequence[0].SourceImageSequence[0]
    frame = pixels[i]
    ys, xs = np.nonzero(frame)
    out["frames"].append({
        "segment": int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
        "sop": str(source.ReferencedSOPInstanceUID),
        "source_frame": int(getattr(source, "ReferencedFrameNumber", 1)),
        "pixels": int(frame.astype(bool).sum()),
        "bbox": [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] if len(ys) else [],
    })
print(json.dumps(out))
